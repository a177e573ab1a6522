"""Heartbeats: lag measured end to end, from a write at the primary to its arrival at each replica.

A :class:`HeartbeatWriter` writes the dataset's heartbeat record (mcrepl's reserved key,
:mod:`mcrepl.adapters.base.reserved`) to the primary every ``sync.heartbeat`` through the
adapter's :class:`~mcrepl.adapters.base.roles.Heartbeats` role — a plain write, as an
application's, carrying the time it was written. Follow mode writes it from its own
thread; ``sync --schedule`` from a scheduler job beside the passes (so the lag it shows
includes the wait for the next pass: that is the scheduled mode's RPO). It travels the
same way as every change — captured, logged, routed, applied by each lane — and when a
lane's batch holding it has been acknowledged by the replica, :class:`HeartbeatArrivals`
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

from mcrepl.adapters.base import ApplyOutcome, ReplicaTarget
from mcrepl.adapters.base.reserved import heartbeat_capable, is_reserved, written_ms_of
from mcrepl.adapters.base.roles import Heartbeats
from mcrepl.orchestrator.clock import Clock
from mcrepl.orchestrator.state import LogEntry, StateStore

from .writer import Written

log = logging.getLogger("mcrepl.sync.heartbeat")


def heartbeats_possible(target: ReplicaTarget) -> bool:
    """Whether ``target``'s dataset can hold the heartbeat (a blob dataset, or a string partition key)."""
    return target.kind == "blob" or heartbeat_capable(target.key_schema)


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
        self.enabled = heartbeats_possible(target)
        if not self.enabled:
            log.warning("dataset %s has a partition key that is not a string: no heartbeats (lag is the lanes' "
                        "lag only)", target.dataset)

    def usable(self, adapter: Any) -> bool:
        """Whether the primary's adapter plays the :class:`Heartbeats` role; if not, heartbeats stay
        off, with a warning (a third-party adapter may not write them)."""
        if self.enabled and not isinstance(adapter, Heartbeats):
            log.warning("the %s adapter does not write heartbeats (no write_heartbeat): no heartbeats for %s",
                        self.target.provider, self.target.dataset)
            self.enabled = False
        return self.enabled

    def beat(self, adapter: Any) -> int | None:
        """Write one heartbeat; its write time in ms, or ``None`` when fenced or disabled."""
        if not self.usable(adapter):
            return None
        pointer = self.state.current_primary(self.target.dataset)
        if pointer is not None and (pointer.location != self.target.replica or pointer.epoch != self.epoch):
            return None
        written_ms = int(self.clock.time() * 1000)
        adapter.write_heartbeat(written_ms)
        self.state.heartbeats.sent(self.target.dataset, self.target.replica, written_ms, self.every_s)
        return written_ms


def scheduled_beat(engine: Any, name: str) -> int | None:
    """One heartbeat of a scheduled dataset at its current primary (``sync --schedule``'s heartbeat job).

    The pointer is read afresh each time, so after a promotion the next heartbeat goes to
    the new primary; its write time in ms, or ``None`` when the dataset gets none.
    """
    every = engine.config.datasets[name].sync.heartbeat
    if every is None:
        return None
    pointer = engine.pointer(name)
    primary, _ = engine._targets(name, pointer)
    writer = HeartbeatWriter(primary, engine.state, pointer.epoch, engine.clock, every.total_seconds())
    return writer.beat(engine.adapter(primary)) if writer.enabled else None


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
