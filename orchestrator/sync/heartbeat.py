"""Heartbeats: lag measured end to end, from a write at the primary to its arrival at each replica.

In follow mode a :class:`HeartbeatWriter` writes the dataset's heartbeat record (mcrepl's
reserved key, :mod:`mcrepl.adapters.base.reserved`) to the primary every
``sync.heartbeat`` as an application would, carrying the time it was written. It travels
the same way as every change — captured, logged, routed, applied by each lane — and when
a lane's batch holding it has been acknowledged by the replica, :class:`HeartbeatArrivals`
times it: ``arrival − written`` is the replication lag of that replica at that moment,
whatever the applications are doing (pt-heartbeat and Debezium's heartbeats do the same).
Both ends are timed by this process's clock, so no two hosts' clocks are compared.

Each arrival is observed in the ``mcrepl_replication_lag_seconds`` histogram and kept in
the state file, where ``status`` reads p50/p99 over the last minutes as the RPO estimate.
Heartbeats are not user data: they are left out of the lanes' counters and the change
metrics here, and out of verify and anti-entropy by the comparison itself.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from mcrepl.adapters.base import ApplyOutcome, Record, ReplicaAdapter, ReplicaTarget, blob, document
from mcrepl.adapters.base.reserved import HEARTBEAT_ID, heartbeat_capable, heartbeat_key, is_reserved
from mcrepl.orchestrator.clock import Clock
from mcrepl.orchestrator.state import LogEntry, StateStore
from mcrepl.testing.seeding import NativeWriter, native_writer

from .writer import Written

log = logging.getLogger("mcrepl.sync.heartbeat")
WRITTEN_FIELD = "heartbeat_written_ms"
"""The body field that carries the heartbeat's write time (ms since the epoch, this host's clock)."""


def heartbeat_record(target: ReplicaTarget, written_ms: int) -> Record:
    """The heartbeat of ``target``'s dataset written at ``written_ms`` (unstamped: a native write)."""
    if target.kind == "blob":
        return blob(HEARTBEAT_ID, f'{{"{WRITTEN_FIELD}": {written_ms}}}'.encode())
    schema = target.key_schema
    body: dict[str, object] = dict(schema.key_body(heartbeat_key(schema)))
    body[WRITTEN_FIELD] = written_ms
    return document(schema, body)


def written_ms_of(record: Record) -> int | None:
    """The write time a heartbeat record carries (``None`` for anything else or a tombstone)."""
    if not is_reserved(record.key.id) or record.tombstone:
        return None
    body = record.body
    if isinstance(body, bytes):
        import json
        try:
            body = json.loads(body)
        except ValueError:
            return None
    value = body.get(WRITTEN_FIELD) if isinstance(body, dict) else None
    try:
        return int(value) if value is not None else None   # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class HeartbeatWriter:
    """Writes one dataset's heartbeat to its primary; fenced by the primary pointer.

    A heartbeat is written only while the durable pointer still names ``target`` under
    ``epoch``: a heartbeat at a demoted primary would be a late write there.
    """

    def __init__(self, target: ReplicaTarget, state: StateStore, epoch: int, clock: Clock, every_s: float) -> None:
        self.target = target
        self.state = state
        self.epoch = epoch
        self.clock = clock
        self.every_s = every_s
        self.enabled = heartbeat_capable(target.key_schema) or target.kind == "blob"
        if not self.enabled:
            log.warning("dataset %s has a non-string partition key: no heartbeats (lag is the lanes' lag only)",
                        target.dataset)

    def usable(self, adapter: ReplicaAdapter) -> bool:
        """Whether the primary's adapter can write as an application does (the heartbeat is such a
        write, so capture stamps it like any other); if not, heartbeats stay off, with a warning."""
        if self.enabled and not isinstance(adapter, NativeWriter):
            log.warning("the %s adapter cannot write as an application would: no heartbeats for %s",
                        self.target.provider, self.target.dataset)
            self.enabled = False
        return self.enabled

    def beat(self, adapter: ReplicaAdapter) -> int | None:
        """Write one heartbeat; its write time in ms, or ``None`` when fenced or disabled."""
        if not self.usable(adapter):
            return None
        pointer = self.state.current_primary(self.target.dataset)
        if pointer is not None and (pointer.location != self.target.replica or pointer.epoch != self.epoch):
            return None
        written_ms = int(self.clock.time() * 1000)
        native_writer(adapter).write_native([heartbeat_record(self.target, written_ms)])
        self.state.heartbeats.sent(self.target.dataset, self.target.replica, written_ms, self.every_s)
        return written_ms


class HeartbeatArrivals:
    """Times heartbeats as lanes deliver them (a lane calls :meth:`observe` after each commit)."""

    def __init__(self, state: StateStore, clock: Clock, metrics: Any = None) -> None:
        self.state = state
        self.clock = clock
        self.metrics = metrics

    def observe(self, target: ReplicaTarget, entries: Sequence[LogEntry], written: Sequence[Written]) -> None:
        """Record the arrival of every heartbeat of a committed batch the replica now holds."""
        arrived_ms = int(self.clock.time() * 1000)
        rows = []
        for entry, w in zip(entries, written):
            if w.result is None or w.result.outcome not in (ApplyOutcome.APPLIED, ApplyOutcome.REPLAYED):
                continue
            written_ms = written_ms_of(entry.record)
            if written_ms is None:
                continue
            rows.append((written_ms, arrived_ms))
            if self.metrics is not None:
                self.metrics.replication_lag(target.dataset, target.replica, max(0, arrived_ms - written_ms) / 1000)
        self.state.heartbeats.arrived(target.dataset, target.replica, rows)


def uncount(entries: Sequence[LogEntry], written: Sequence[Written], counts: dict[str, int]) -> None:
    """Take heartbeats out of a batch's outcome counts: they are not user changes."""
    for entry, w in zip(entries, written):
        if is_reserved(entry.record.key.id) and counts.get(w.outcome, 0) > 0:
            counts[w.outcome] -= 1
