"""One replica lane: read a batch from the log, route it, apply it, commit the offset.

The offset is committed only after :meth:`ReplicaAdapter.apply_batch` returned, i.e.
after the replica acknowledged every write, and in the same transaction as the batch's
counters, quarantine rows and conflict rows. A crash before the commit re-applies the
batch on restart; conditional apply turns those into counted no-ops (``replayed``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from mcrepl.adapters.base import (ApplyOutcome, ApplyResult, McreplError, Record, ReplicaAdapter,
                                  ReplicaTarget)
from mcrepl.orchestrator.hlc import HybridLogicalClock
from mcrepl.orchestrator.observability.sync_spans import LANE_BATCH_SPAN, traced
from mcrepl.orchestrator.state import ConflictRow, LogEntry, StateStore
from mcrepl.policies.routing import RecordRouter

from .merge import MergeFunction, merged_record
from .status import lane_lag

log = logging.getLogger("mcrepl.sync.lane")
#: lane counter name → outcome label of ``mcrepl_changes_total`` (every rejected record is quarantined)
_METRIC_OUTCOME = {"conflicts": "conflict", "rejected": "quarantined"}


@dataclass
class BatchOutcome:
    """What one applied batch did; ``new_offset`` is the committed log position."""

    new_offset: int
    counts: dict[str, int] = field(default_factory=dict)
    merged: int = 0


@dataclass
class MergeContext:
    """How the dataset resolves conflicts: ``merge_fn`` is ``None`` for last-writer-wins."""

    merge_fn: MergeFunction | None
    clock: HybridLogicalClock
    epoch: int
    primary: Callable[[], ReplicaAdapter]


class LaneApplier:
    """Applies the log to one replica, one batch per :meth:`apply_next` call."""

    def __init__(self, target: ReplicaTarget, adapter: ReplicaAdapter, state: StateStore,
                 router: RecordRouter, batch_size: int, merge: MergeContext,
                 metrics: Any = None, audit: Any = None) -> None:
        self.target = target
        self.adapter = adapter
        self.state = state
        self.router = router
        self.batch_size = batch_size
        self.merge = merge
        self.metrics = metrics
        self.audit = audit

    @traced(*LANE_BATCH_SPAN)
    def apply_next(self, offset: int) -> BatchOutcome | None:
        """Apply the batch after ``offset``; ``None`` when the lane is at the log head."""
        ds, replica = self.target.dataset, self.target.replica
        entries = self.state.log.read(ds, offset, self.batch_size)
        if not entries:
            return None
        counts = {"applied": 0, "replayed": 0, "stale": 0, "rejected": 0, "withheld": 0, "conflicts": 0}
        sending: list[tuple[LogEntry, Record]] = []
        for entry in entries:
            decision = self.router.route(ds, entry.record, [replica])
            routed = decision.send.get(replica)
            if routed is None:
                counts["withheld"] += 1
            else:
                sending.append((entry, routed))
        results = self.adapter.apply_batch([r for _, r in sending]) if sending else []
        if len(results) != len(sending):
            raise McreplError(f"{replica} answered {len(results)} results for {len(sending)} records "
                              f"of dataset {ds}; the adapter breaks the apply_batch contract")
        conflicts: list[ConflictRow] = []
        to_merge: list[tuple[Record, Record]] = []
        with_errors: list[tuple[str, ApplyResult]] = []
        for (entry, routed), result in zip(sending, results):
            counts[result.outcome.value] += 1
            if result.outcome is ApplyOutcome.REJECTED and result.error is not None:
                with_errors.append((entry.record.meta.version.token, result))  # type: ignore[union-attr]
            if result.conflict_with is not None:
                counts["conflicts"] += 1
                conflicts.append(self._conflict_row(routed, result))
                if self._mergeable(entry.record, result):
                    to_merge.append((result.existing, entry.record))  # type: ignore[arg-type]
        merged = self._merge(to_merge)
        with self.state.transaction():
            for version, result in with_errors:
                assert result.error is not None
                self.state.journal.add_quarantine(ds, replica, version, result.error.located(
                    dataset=ds, key=result.key.id, target=replica))
            for row in conflicts:
                self.state.journal.add_conflict(row)
            self.state.lanes.commit_batch(ds, replica, entries[-1].seq, counts)
        self._observe(entries, counts, merged)
        return BatchOutcome(entries[-1].seq, counts, merged)

    def _conflict_row(self, incoming: Record, result: ApplyResult) -> ConflictRow:
        assert incoming.meta is not None and result.conflict_with is not None
        won = incoming.meta if result.outcome is ApplyOutcome.APPLIED else result.conflict_with
        resolver = "merge" if self.merge.merge_fn is not None else "lww"
        return ConflictRow(self.target.dataset, incoming.key.id, self.target.replica, incoming.meta,
                           result.conflict_with, won.version.token, resolver)

    def _mergeable(self, incoming: Record, result: ApplyResult) -> bool:
        existing = result.existing
        return (self.merge.merge_fn is not None and existing is not None and existing.meta is not None
                and not existing.tombstone and not incoming.tombstone)

    def _merge(self, pairs: list[tuple[Record, Record]]) -> int:
        """Merge each conflicting pair, write the result to the primary, then log it for every lane.

        Primary first: if the process dies between the two steps, capture finds the merged
        record on the primary (our own origin, not in the log yet) and logs it then.
        """
        if not pairs or self.merge.merge_fn is None:
            return 0
        records = []
        for stored, incoming in pairs:
            version = self.merge.clock.tick()
            try:
                records.append(merged_record(self.merge.merge_fn, self.target, stored, incoming, version,
                                             self.merge.epoch))
            except McreplError as exc:
                log.warning("merge of %s in %s failed, last-writer-wins stands: %s",
                            incoming.key.id, self.target.dataset, exc)
        if not records:
            return 0
        self.state.save_clock(self.merge.clock.state)
        self.merge.primary().apply_batch(records)
        self.state.log.append(self.target.dataset, records)
        return len(records)

    def _observe(self, entries: list[LogEntry], counts: dict[str, int], merged: int) -> None:
        ds, replica = self.target.dataset, self.target.replica
        if self.metrics is not None:
            for outcome, n in counts.items():
                if n:
                    self.metrics.changes(ds, replica, _METRIC_OUTCOME.get(outcome, outcome), n)
            self.metrics.lane_progress(ds, replica, *lane_lag(self.state, ds, entries[-1].seq))
        if self.audit is not None:
            self.audit.append("batch", {"dataset": ds, "replica": replica, "first_seq": entries[0].seq,
                                        "last_seq": entries[-1].seq, "merged": merged, **counts})
