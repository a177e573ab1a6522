"""One lane: read a window of the log, write it to one location, settle conflicts, commit.

The offset is committed only after the location acknowledged every write of the
window, and in the same transaction as the window's counters, quarantine rows, conflict
rows, the records settling those conflicts and the audit entry describing the batch. A
crash before the commit re-applies the window on restart: conditional apply turns the
writes into counted no-ops (``replayed``), and a conflict — which stores never overwrite —
is met again and settled then, exactly once.

A lane writes every entry except those captured from its own location, which holds them
already (or something newer). So the *primary's* lane writes only the settlements and
merges mcrepl made and entries captured from an earlier primary that it has not received
yet (a promotion that could not drain everything first); and it never overwrites a native
change the primary holds and capture has not read yet: that change is newer than anything
in the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mcrepl.adapters.base import ApplyOutcome, Record, ReplicaAdapter, ReplicaTarget, tombstone_of, vector_dominates
from mcrepl.orchestrator.observability.sync_spans import LANE_BATCH_SPAN, traced
from mcrepl.orchestrator.state import ConflictRow, LogEntry, StateStore
from mcrepl.policies.routing import RecordRouter

from .heartbeat import HeartbeatArrivals, uncount
from .late_writes import LATE_WRITES, LateWriteWatch
from .recovery import recover
from .resolution import settle
from .settling import Settling
from .status import lane_lag
from .writer import LocationWriter, Written, counts_of

log = logging.getLogger("mcrepl.sync.lane")
#: lane counter name → outcome label of ``mcrepl_changes_total`` (every rejected record is quarantined)
_METRIC_OUTCOME = {"conflicts": "conflict", "rejected": "quarantined"}

#: the audit entry of deletes the primary's lane found there that its capture never reports (a
#: Cosmos DB change feed shows no deletes), logged as the primary's own
UNREPORTED_DELETES = "unreported-deletes"


@dataclass
class BatchOutcome:
    """What one applied window did; ``new_offset`` is the committed log position."""

    new_offset: int
    counts: dict[str, int] = field(default_factory=dict)
    merged: int = 0


class LaneApplier:
    """Applies the log to one location, one window per :meth:`apply_next` call."""

    def __init__(self, target: ReplicaTarget, adapter: ReplicaAdapter, state: StateStore,
                 router: RecordRouter, batch_size: int, settling: Settling, *, is_primary: bool = False,
                 metrics: Any = None, late_write_watch_s: float = 0.0) -> None:
        self.target = target
        self.adapter = adapter
        self.state = state
        self.batch_size = batch_size
        self.settling = settling
        self.is_primary = is_primary
        self.metrics = metrics
        self.arrivals: HeartbeatArrivals | None = None     # times heartbeats (the engine sets it)
        #: move the audit outbox to the file after every batch (a pass); a follower's lane
        #: flushes when idle or once a second instead (the outbox commits with the batch either way)
        self.flush_audit = True
        ds, location = target.dataset, target.replica
        self.writer = LocationWriter(ds, location, adapter, router, lambda: state.log.origins(ds),
                                     captured=lambda ids: state.log.known_at(ds, location, ids),
                                     delivered=(lambda recs: state.log.note_delivered(ds, location, recs))
                                     if is_primary else None, is_primary=is_primary,
                                     former_primary=bool(state.epochs_of(ds, location)),
                                     heads=lambda ids: state.log.heads(ds, ids),
                                     logged=lambda record: state.log.holds_version(ds, record))
        self.watch = LateWriteWatch(state, target, adapter, settling, batch_size, late_write_watch_s) \
            if self.writer.former_primary else None

    @traced(*LANE_BATCH_SPAN)
    def apply_next(self, offset: int) -> BatchOutcome | None:
        """Apply the window after ``offset``; ``None`` when the lane is at the log head."""
        ds, location = self.target.dataset, self.target.replica
        watch = self.watch if self.watch is not None and self.watch.active else None
        if watch is not None:
            watch.catch_up(offset)                # before writing there again (see .late_writes)
        entries, end = self.state.log.read(ds, offset, self.batch_size, skip_from=location)
        if end <= offset:
            return None
        written = self.writer.write([e.record for e in entries]) if entries else []
        late = [w.late for w in written if w.late is not None]
        if late:
            # logged before the window commits: replayed after a crash, the writer finds them known.
            # At a watched location they are read from its change log, in the order the store took
            # them; the item itself is logged only where that log showed nothing new for the key
            logged = watch.catch_up(offset) if watch is not None else None
            rest = [c for c in late if logged is None or c.record.key.id not in logged]
            if rest:
                recover(self.state, self.target, self.settling, rest, offset, {},
                        audit=UNREPORTED_DELETES if self.is_primary else LATE_WRITES)
        counts = counts_of(written)
        uncount(entries, written, counts)
        self._retract(entries, written, counts)
        conflicts = [(e.record, w) for e, w in zip(entries, written)
                     if w.result is not None and w.result.conflict_with is not None]
        stored = self._stored(conflicts)
        if not entries:                 # a window the primary's lane skips entirely: nothing was written
            self.state.lanes.advance(ds, location, end)
            return BatchOutcome(end, counts)
        with self.state.transaction():
            self.state.check_epoch(ds, self.settling.epoch)
            self._quarantine(entries, written)
            merged = self._settle(conflicts, stored, counts)
            self.state.log.note_taken(ds, location, [(e.record.key.id, e.seq) for e, w in zip(entries, written)
                                                     if w.outcome in ("applied", "replayed")])
            self.state.log.note_unheld(ds, location, [(e.record.key.id, e.seq)
                                                      for e, w in zip(entries, written) if w.deferred])
            self.state.lanes.commit_batch(ds, location, end, counts)
            self.state.audit.add("batch", {"dataset": ds, "replica": location, "first_seq": offset + 1,
                                           "last_seq": end, "merged": merged, **counts})
        if self.flush_audit:
            self.state.audit.flush()
        self._observe(counts, end)
        if self.arrivals is not None:
            self.arrivals.observe(self.target, entries, written)
        return BatchOutcome(end, counts, merged)

    def _retract(self, entries: list[LogEntry], written: list[Written], counts: dict[str, int]) -> None:
        """Tombstone keys this location held but may no longer hold (their residency changed)."""
        location = self.target.replica
        tombstones = []
        for entry, w in zip(entries, written):
            meta = entry.record.meta
            if w.withheld is not None and location in entry.retract and meta is not None:
                tombstones.append(tombstone_of(self.target.key_schema, entry.record.key, meta.version, meta.vector,
                                               blob_dataset=self.target.kind == "blob", epoch=meta.epoch))
        for w in self.writer.write(tombstones) if tombstones else []:
            counts["retracted"] += w.outcome in ("applied", "replayed")

    def settle_found(self, conflicts: list[tuple[Record, Written]], counts: dict[str, int]) -> int:
        """Settle conflicts met outside a log window (a backfill's writes); commits on its own."""
        stored = self._stored(conflicts)
        with self.state.transaction():
            self.state.check_epoch(self.target.dataset, self.settling.epoch)
            return self._settle(conflicts, stored, counts)

    def _stored(self, conflicts: list[tuple[Record, Written]]) -> list[Record | None]:
        """The concurrent record each conflict met at this location (read again when the adapter did
        not return it), in the order of ``conflicts``.

        One per conflict, not per key: two entries of a key in one batch can each meet a different
        version there (the first the location's own, the second a settlement the batch delivered
        in between), and each is settled against the one it met.
        """
        out: list[Record | None] = []
        for record, written in conflicts:
            assert written.result is not None
            if written.result.outcome is not ApplyOutcome.CONFLICT:
                out.append(None)
                continue
            existing = written.result.existing      # the concurrent version as the store answered
            if existing is None or existing.meta is None or (existing.body is None and not existing.tombstone):
                existing = self.adapter.read(record.key)
                if existing is not None and existing.meta is not None and written.result.conflict_with is not None \
                        and existing.meta.version != written.result.conflict_with.version:
                    # a later entry of the same batch replaced it: settle what the store reported
                    existing = Record(record.key, None, written.result.conflict_with)
            out.append(existing)
        found = [(i, r) for i, r in enumerate(out) if r is not None]
        logged = self.state.log.as_logged(self.target.dataset, self.target.replica, [r for _, r in found])
        for (i, _), record in zip(found, logged):
            out[i] = record
        return out

    def _quarantine(self, entries: list[LogEntry], written: list[Written]) -> None:
        ds, location = self.target.dataset, self.target.replica
        for entry, w in zip(entries, written):
            if w.result is not None and w.result.outcome is ApplyOutcome.REJECTED and w.result.error is not None:
                assert entry.record.meta is not None
                self.state.journal.add_quarantine(ds, location, entry.record.meta.version.token,
                                                  w.result.error.located(dataset=ds, key=w.result.key.id,
                                                                         target=location))

    def _settle(self, conflicts: list[tuple[Record, Written]], stored: list[Record | None],
                counts: dict[str, int]) -> int:
        """Log and settle each conflict not settled before; returns how many were merged.

        ``conflicts`` pairs the record sent (a log entry's) with what writing it did. A
        conflict is settled against the log's *latest* version of the key (not the entry
        that met it, which may be old): the settlement has seen both that and what the
        location holds, so it supersedes every logged version and the concurrent one.
        """
        ds, location = self.target.dataset, self.target.replica
        merged = 0
        latest: dict[str, Record] = {}
        settlements: list[Record] = []
        for (incoming, w), record in zip(conflicts, stored):
            assert w.result is not None and w.result.conflict_with is not None and incoming.meta is not None
            key_id, found = incoming.key.id, w.result.conflict_with
            if w.result.outcome is not ApplyOutcome.CONFLICT:
                # the store overwrote a version from an origin the writer did not know of
                self.state.journal.add_conflict(ConflictRow(ds, key_id, location, incoming.meta, found,
                                                            incoming.meta.version.token, "lww"))
                counts["conflicts"] += 1
                continue
            if record is None or record.meta is None:
                continue
            if self.state.journal.pair_logged(ds, key_id, record.meta.version.token, incoming.meta.version.token):
                continue                  # settled where it was first met: that settlement follows in the log
            if key_id not in latest:
                entry = self.state.log.latest(ds, incoming.key)
                latest[key_id] = entry.record if entry is not None else incoming
            newest = latest[key_id]
            assert newest.meta is not None
            if vector_dominates(newest.meta.vector, record.meta.vector) and \
                    vector_dominates(newest.meta.vector, incoming.meta.vector):
                continue                  # the log's latest version has seen both: delivering it settles this
            if vector_dominates(newest.meta.vector, incoming.meta.vector):
                incoming, also = newest, []       # the conflict is with what the key is now, not an old entry
            else:
                also = [newest]
            s = settle(self.target, location, record, incoming, merge=self.settling.merge_fn,
                       tick=self.settling.tick, epoch=self.settling.epoch, decrypt=self.settling.decrypt,
                       also=also, foreign=self._foreign(record))
            if self.state.journal.add_conflict(s.row):
                settlements.append(s.record)
                latest[key_id] = s.record
                counts["conflicts"] += 1
                merged += s.row.resolver == "merge"
        if settlements:
            self.state.save_clock(self.settling.clock.state)
            self.state.log.append(ds, settlements, location=self.settling.primary, epoch=self.settling.epoch)
        return merged

    def _foreign(self, stored: Record) -> bool:
        """Whether ``stored`` is a version the log never held, at a location that only holds copies.

        A replica that was never primary (as far as this state knows) takes no writes of its
        own; a version there that the log has not seen was left by something else (an earlier
        state file, a restore), and the log's version is the one to keep.
        """
        if self.is_primary or self.writer.former_primary or stored.meta is None:
            return False
        ds = self.target.dataset
        if self.state.log.holds_version(ds, stored):
            return False
        head = self.state.log.heads(ds, [stored.key.id]).get(stored.key.id)
        return head is None or not vector_dominates(head.vector, stored.meta.vector)

    def _observe(self, counts: dict[str, int], new_offset: int) -> None:
        if self.metrics is None:
            return
        ds, replica = self.target.dataset, self.target.replica
        for outcome, n in counts.items():
            if n:
                self.metrics.changes(ds, replica, _METRIC_OUTCOME.get(outcome, outcome), n)
        # the lag gauges move at every commit, not only at the end of a long pass
        self.metrics.lane_progress(ds, replica, *lane_lag(self.state, ds, new_offset))
