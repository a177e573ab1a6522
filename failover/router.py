"""The write router: sends application writes to the current primary, stamped and fenced.

Each write is a read-modify-write, as an application's would be: the router reads the
key at the primary, moves its hybrid logical clock past what it read, stamps the new
body (or tombstone) with a fresh version, the stored version vector extended by it, and
the epoch it believes in, then applies it conditionally. Every attempt is in the
:class:`~.history.History` before it is sent and its outcome after.

Split-brain guard (``fencing=True``): before sending, the router compares the epoch it
believes in with the durable primary pointer's epoch — the fencing token — and refuses a
write under a stale epoch. A router that follows the pointer refreshes its belief on
every write; a *pinned* router (a writer cut off from the pointer, still believing in
the old primary) is thereby fenced. With ``fencing=False`` the check is skipped.

While ``paused()`` is true (a planned failback switching the primary) writes fail fast
rather than land on a primary about to be demoted.

``ack="replicas"``: the write is acknowledged only once every replica that is not known
to be down holds it too (synchronous replication); if one does not answer, the write is
reported as ``timeout`` (it is on the primary, its durability is unconfirmed).
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping

from mcrepl.adapters.base import AdapterError, ApplyOutcome, KeySchema, Record, ReplicaAdapter
from mcrepl.client.stamping import OpKind, WriterClocks, stamp
from mcrepl.orchestrator.state import StateStore

from .guard import CallTimeout
from .history import History



#: one hybrid logical clock per origin, shared by every router of a drill (the fenced writer's)
Clocks = WriterClocks


class WriteRouter:
    """Routes writes of one dataset; thread-safe."""

    def __init__(self, name: str, dataset: str, default_primary: str, state: StateStore,
                 adapters: Mapping[str, ReplicaAdapter], history: History, schema: KeySchema, clocks: Clocks, *,
                 fencing: bool = True, ack: Literal["primary", "replicas"] = "primary",
                 down: Callable[[], set[str]] = set, pinned: tuple[str, int] | None = None,
                 paused: Callable[[], bool] = lambda: False) -> None:
        self.name = name
        self.dataset = dataset
        self.default_primary = default_primary
        self.state = state
        self.adapters = adapters
        self.history = history
        self.schema = schema
        self.clocks = clocks
        self.fencing = fencing
        self.ack = ack
        self.down = down
        self.pinned = pinned
        self.paused = paused

    def belief(self) -> tuple[str, int]:
        """``(location, epoch)`` this router writes to and stamps with."""
        if self.pinned is not None:
            return self.pinned
        pointer = self.state.primary(self.dataset, self.default_primary)
        return pointer.location, pointer.epoch

    def write(self, kind: OpKind, key: str, body: dict[str, object] | None = None) -> str:
        """Perform one operation; returns its history status (``ok``, ``failed``, ``timeout``, ``fenced``)."""
        location, epoch = self.belief()
        if self.pinned is None and self.paused():
            op = self.history.attempt(self.name, kind, key, None, None, epoch, None, location)
            self.history.finish(op, "failed", "writes paused: planned primary switch in progress")
            return "failed"
        if self.fencing:
            current = self.state.primary(self.dataset, self.default_primary).epoch
            if epoch < current:
                op = self.history.attempt(self.name, kind, key, None, None, epoch, None, location)
                self.history.finish(op, "fenced", f"stale epoch {epoch} < current {current}: writer fenced")
                return "fenced"
        adapter = self.adapters[location]
        try:
            record = self._stamped(adapter, location, epoch, kind, key, body)
        except AdapterError as exc:
            # nothing was sent: the read before the write failed, so the write did not happen
            op = self.history.attempt(self.name, kind, key, None, location, epoch, None, location)
            self.history.finish(op, "failed", f"read before write: {exc}")
            return "failed"
        assert record.meta is not None
        op = self.history.attempt(self.name, kind, key, record.meta.version.token, record.meta.version.origin, epoch,
                                  record.meta.content_hash, location)
        status, error = self._send(adapter, record)
        if status == "ok" and self.ack == "replicas":
            status, error = self._replicate(location, record)
        self.history.finish(op, status, error)
        return status

    def _stamped(self, adapter: ReplicaAdapter, location: str, epoch: int, kind: OpKind, key: str,
                 body: dict[str, object] | None) -> Record:
        # the writer's own origin (location/writer), as mcrepl.client's fenced writer stamps
        return stamp(adapter, self.schema, self.clocks(f"{location}/{self.name}"), kind, key, body, epoch)

    @staticmethod
    def _send(adapter: ReplicaAdapter, record: Record) -> tuple[str, str | None]:
        try:
            result = adapter.apply_batch([record])[0]
        except CallTimeout as exc:
            return "timeout", str(exc)
        except AdapterError as exc:
            return "failed", str(exc)
        if result.outcome in (ApplyOutcome.APPLIED, ApplyOutcome.REPLAYED):
            return "ok", None
        return "failed", f"{result.outcome.value}: {result.error or 'a newer version is stored'}"

    def _replicate(self, primary: str, record: Record) -> tuple[str, str | None]:
        down = self.down()
        for location, adapter in self.adapters.items():
            if location == primary or location in down:
                continue
            status, error = self._send(adapter, record)
            if status == "failed" and error and error.startswith("stale"):
                continue            # the replica already holds a newer version: it has seen this one's key
            if status != "ok":
                return "timeout", f"on {primary}, but replication to {location} not confirmed: {error}"
        return "ok", None
