"""Plan and apply the writes that bring replicas to the resolved state.

For every divergent key the stored records are read from each side and resolved with
the same rule the sync engine uses (:mod:`mcrepl.orchestrator.resolver`): the newer
version wins, concurrent versions go to the dataset's resolver, tombstones count as
versions so deletes are never resurrected. The reference (the primary) is the authority
for keys that only one side holds and for native records that carry no version yet.
Writes go through ``apply_batch``, so they are conditional and idempotent: a write that
meanwhile lost to a newer one is a no-op, and repairing twice plans nothing the second time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Mapping

from mcrepl.adapters.base import (ApplyOutcome, KeySchema, Record, RecordKey, ReplicaAdapter, ReplicaTarget,
                                  meta_if_valid, tombstone_of)
from mcrepl.orchestrator.hlc import HybridLogicalClock
from mcrepl.orchestrator.resolver import resolve
from mcrepl.orchestrator.sync.merge import MergeFunction

from .report import VerifyReport


@dataclass(frozen=True)
class RepairAction:
    """Write ``record`` to ``replica`` because of ``reason``."""

    replica: str
    record: Record
    reason: str

    def to_dict(self) -> dict[str, object]:
        meta = self.record.meta
        return {"replica": self.replica, "key": self.record.key.id, "reason": self.reason,
                "version": meta.version.token if meta else None, "tombstone": self.record.tombstone}


@dataclass
class RepairPlan:
    """Every write a repair would make, grouped by replica when applied."""

    dataset: str
    actions: list[RepairAction] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"dataset": self.dataset, "writes": len(self.actions),
                "actions": [a.to_dict() for a in self.actions]}


@dataclass
class RepairResult:
    """Outcome counts per replica after applying a plan."""

    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"outcomes": self.outcomes}


def plan_repair(report: VerifyReport, adapters: Mapping[str, ReplicaAdapter], schema: KeySchema, *,
                blob_dataset: bool, merge: MergeFunction | None = None,
                clock: HybridLogicalClock | None = None) -> RepairPlan:
    """The writes that make every compared replica hold the resolved record of each divergent key."""
    clock = clock or HybridLogicalClock(report.reference)
    plan = RepairPlan(report.dataset)
    keys = sorted({d.key_id for p in report.pairs for d in p.divergences})
    reasons = _reasons(report)
    for key_id in keys:
        key = schema.parse_id(key_id)
        stored = {name: adapter.read(key) for name, adapter in adapters.items()}
        winner = _resolve_key(report.reference, stored, schema, key, clock, blob_dataset, merge,
                              adapters[report.reference].target)
        if winner is None:
            continue
        for name, current in stored.items():
            if not _holds(current, winner):
                plan.actions.append(RepairAction(name, winner, reasons.get(key_id, "divergent")))
    return plan


def _reasons(report: VerifyReport) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in report.pairs:
        for d in pair.divergences:
            out.setdefault(d.key_id, f"{d.kind.value} on {d.other}")
    return out


def _holds(current: Record | None, winner: Record) -> bool:
    """Whether a replica already holds what the winner says (absent counts as deleted)."""
    if winner.tombstone:
        return current is None or current.tombstone
    if current is None or current.tombstone:
        return False
    meta = meta_if_valid(current)
    have = meta.comparable_hash if meta else current.digest_hash(False)
    return have == winner.meta.comparable_hash  # type: ignore[union-attr]


def _resolve_key(reference: str, stored: Mapping[str, Record | None], schema: KeySchema, key: RecordKey,
                 clock: HybridLogicalClock, blob_dataset: bool, merge: MergeFunction | None,
                 target: ReplicaTarget) -> Record | None:
    """The record every replica should hold for ``key``."""
    for rec in stored.values():
        if rec is not None and rec.meta is not None:
            clock.observe(rec.meta.version)
    ref = stored.get(reference)
    versioned = [r for r in stored.values() if r is not None and meta_if_valid(r) is not None]
    if ref is not None and meta_if_valid(ref) is None:
        # a native record on the primary: the primary is the authority; give it a version
        # newer than anything seen so every replica takes it
        return Record(ref.key, ref.body).stamped(clock.tick())
    if ref is None:
        if all(r is None or r.tombstone for r in stored.values()):
            return None
        # only other replicas hold the key (replicated or written there natively): the
        # primary does not, so it was deleted there; the tombstone outranks every version seen
        return tombstone_of(schema, key, clock.tick(), blob_dataset=blob_dataset)
    winner = ref
    for other in versioned:
        if other is not ref:
            winner = resolve(winner, other, merge=merge, target=target, next_version=clock.tick).winner
    return winner


def apply_repair(plan: RepairPlan, adapters: Mapping[str, ReplicaAdapter], batch_size: int = 200,
                 on_progress: Callable[[int], None] | None = None) -> RepairResult:
    """Apply ``plan``; each write is conditional, so a concurrent newer write is never undone."""
    by_replica: dict[str, list[Record]] = defaultdict(list)
    for action in plan.actions:
        by_replica[action.replica].append(action.record)
    result = RepairResult()
    for replica, records in by_replica.items():
        counts = result.outcomes.setdefault(replica, {o.value: 0 for o in ApplyOutcome})
        for i in range(0, len(records), batch_size):
            batch = records[i:i + batch_size]
            for r in adapters[replica].apply_batch(batch):
                counts[r.outcome.value] += 1
            if on_progress:
                on_progress(len(batch))
    return result

