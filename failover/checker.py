"""The checker: wait for convergence, then judge the history against the final state.

Definitions (also in docs/failover.md):

* an operation is **reflected** in a record when the record's version vector has seen
  it: ``vector[op.origin] >= op.version``. Every write is a read-modify-write that
  extends the vector it read, so a later write that saw an op keeps it in its vector.
* **lost**: an acknowledged insert/update not reflected in the final state (the final
  primary's record never saw it: it vanished, or lost a conflict to a write that never saw
  it), an acknowledged delete overruled by a newer write that never saw it, and an
  acknowledged write whose version lost a last-writer-wins settlement (the conflict log
  names it: the settled record has seen it, but its content was discarded).
  **resurrected**: an acknowledged delete not reflected while the key holds an *older*
  live version (the delete vanished and an old value came back).
* **RPO** (per promotion): acknowledged writes to the old primary not reflected on the new
  primary at the moment of promotion — as a count and as seconds (from the oldest such
  acknowledgement to the fault). **recovered**: those that are reflected in the end.
* **RTO**: from the first fault to the first acknowledged write on the promoted primary.
* **unexpected**: final records whose content no acknowledged or possibly-landed write
  made: a refused write that landed anyway, or data from nowhere. (A conflict settlement
  or a reconciliation re-stamps a written body under a new version: its content is a write's.
  A delete mcrepl made to undo writes no one was told had landed is a rollback, not
  unexpected; if it has seen an acknowledged write with no acknowledged delete after it,
  that write is **lost**.)
  Writes that timed out (outcome unknown) and landed are counted as ``indeterminate_landed``.
* **convergence**: from the end of the method (faults healed) to the first clean verify.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mcrepl.adapters.base import Record, ReplicaAdapter, meta_if_valid
from mcrepl.orchestrator.verify import VerifyReport, compare_adapters

from .history import Op


def reflected(op: Op, record: Record | None) -> bool:
    """Whether ``record`` has seen ``op`` (see the module docstring)."""
    if record is None or op.version is None or op.origin is None:
        return False
    meta = meta_if_valid(record)
    return meta is not None and meta.vector.get(op.origin, "") >= op.version


@dataclass
class RpoSnapshot:
    """What the new primary lacked at one promotion."""

    promoted: str
    at: float
    fault_at: float | None
    missing: list[int] = field(default_factory=list)     # op ids
    seconds: float = 0.0


def rpo_snapshot(ops: list[Op], new_primary: str, new_primary_records: Mapping[str, Record | None],
                 at: float, fault_at: float | None) -> RpoSnapshot:
    """Acknowledged writes to other locations, before ``at``, that ``new_primary`` has not seen."""
    snap = RpoSnapshot(new_primary, at, fault_at)
    oldest: float | None = None
    for op in ops:
        if op.status != "ok" or op.target == new_primary or (op.finished or op.started) > at:
            continue
        if not reflected(op, new_primary_records.get(op.key)) and not _delete_holds(op, new_primary_records.get(op.key)):
            snap.missing.append(op.id)
            acked = op.finished or op.started
            oldest = acked if oldest is None else min(oldest, acked)
    if oldest is not None:
        snap.seconds = max(0.0, (fault_at or at) - oldest)
    return snap


def _older_than(record: Record, op: Op) -> bool:
    meta = meta_if_valid(record)
    return meta is None or op.version is None or meta.version.token < op.version


def _delete_holds(op: Op, record: Record | None) -> bool:
    """An unreflected delete whose key is absent or deleted anyway loses nothing."""
    return op.kind == "delete" and (record is None or record.tombstone)


@dataclass
class Convergence:
    """The last verify report and when (if ever) the replicas agreed."""

    report: VerifyReport | None
    converged_at: float | None
    attempts: int


def wait_converged(dataset: str, adapters: Callable[[], Mapping[str, ReplicaAdapter]], deadline_s: float,
                   interval_s: float = 0.5) -> Convergence:
    """Verify repeatedly (primary first) until clean or ``deadline_s`` has passed."""
    end = time.monotonic() + deadline_s
    report, attempts = None, 0
    while True:
        attempts += 1
        try:
            report = compare_adapters(dataset, adapters())
        except Exception:  # noqa: BLE001 - a store still recovering: try again until the deadline
            report = None
        if report is not None and report.clean:
            return Convergence(report, time.time(), attempts)
        if time.monotonic() >= end:
            return Convergence(report, None, attempts)
        time.sleep(interval_s)


@dataclass
class Findings:
    """Everything the report states about the data, from the history and the final state."""

    attempted: int = 0
    acknowledged: int = 0
    failed: int = 0
    timeouts: int = 0
    fenced: int = 0
    lost: int = 0
    recovered: int = 0
    resurrected: int = 0
    unexpected: int = 0
    indeterminate_landed: int = 0
    rpo_count: int | None = None
    rpo_seconds: float | None = None
    rto_seconds: float | None = None
    convergence_seconds: float | None = None
    divergent: int = 0
    lost_keys: list[str] = field(default_factory=list)
    resurrected_keys: list[str] = field(default_factory=list)
    #: when each lost or resurrected write was made, and each unexpected write's version time
    #: (unix seconds): the report's timeline draws them in red where they happened
    lost_at: list[float] = field(default_factory=list)
    unexpected_at: list[float] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    divergences: list[dict[str, Any]] = field(default_factory=list)
    #: what the final primary held for each named key (lost, resurrected, unexpected): version,
    #: tombstone and vector, never the value — so a report shows *why* a write counts as lost
    final_of_named: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def analyse(ops: list[Op], final: Mapping[str, Record | None], snapshots: list[RpoSnapshot],
            rto_from: float | None, convergence: Convergence, healed_at: float | None,
            sample: int = 50, conflict_losers: set[str] = frozenset()) -> Findings:  # type: ignore[assignment]
    """Compute the findings (see the module docstring for every definition).

    ``conflict_losers`` are the version tokens whose content a last-writer-wins settlement
    discarded (from the conflict log).
    """
    f = Findings(attempted=len(ops))
    for op in ops:
        f.acknowledged += op.status == "ok"
        f.failed += op.status in ("failed", "attempted")
        f.timeouts += op.status == "timeout"
        f.fenced += op.status == "fenced"
        if op.status != "ok":
            continue
        record = final.get(op.key)
        if op.version in conflict_losers:
            f.lost += 1
            f.lost_keys.append(op.key)
            f.lost_at.append(op.started)
            continue
        if reflected(op, record):
            continue
        if op.kind == "delete":
            if record is None or record.tombstone:
                continue
            if _older_than(record, op):
                f.resurrected += 1                  # the delete vanished: an older value is back
                f.resurrected_keys.append(op.key)
            else:
                f.lost += 1                         # a newer write that never saw the delete won
                f.lost_keys.append(op.key)
        else:
            f.lost += 1
            f.lost_keys.append(op.key)
        f.lost_at.append(op.started)
    _final_versions(f, ops, final)
    if snapshots:
        first = snapshots[0]
        f.rpo_count, f.rpo_seconds = len(first.missing), round(first.seconds, 3)
        by_id = {op.id: op for op in ops}
        f.recovered = sum(1 for i in first.missing if reflected(by_id[i], final.get(by_id[i].key))
                          or _delete_holds(by_id[i], final.get(by_id[i].key)))
        promoted_acks = [op.finished for op in ops if op.status == "ok" and op.target == first.promoted
                         and op.finished is not None and op.started >= first.at]
        if rto_from is not None and promoted_acks:
            f.rto_seconds = round(min(promoted_acks) - rto_from, 3)
    if convergence.converged_at is not None and healed_at is not None:
        f.convergence_seconds = round(max(0.0, convergence.converged_at - healed_at), 3)
    if convergence.report is not None:
        f.divergent = convergence.report.divergent
        f.divergences = [d.to_dict() for p in convergence.report.pairs for d in p.divergences][:sample]
    elif convergence.converged_at is None:
        f.divergent = -1                                   # never got a verify answer
    f.lost_keys, f.resurrected_keys = sorted(set(f.lost_keys))[:sample], sorted(set(f.resurrected_keys))[:sample]
    named = sorted({*f.lost_keys, *f.resurrected_keys, *f.unexpected_keys})[:sample]
    f.final_of_named = {key: _version_of(final.get(key)) for key in named}
    return f


def _judge_rollback(f: Findings, ops: list[Op], tombstone: Record) -> None:
    """A delete no operation made: the rollback of writes that were never acknowledged, or a loss.

    mcrepl undoes a write a fenced location took that no one was told had landed (a request
    that timed out across the fault) by deleting it under a version of its own. Absence is
    then the key's acknowledged state, not data from nowhere. Each acknowledged insert or
    update the delete has seen with no acknowledged delete after it is a lost write (the
    vector has seen it, so the reflected test above could not tell).
    """
    deletes = [op.version for op in ops if op.status == "ok" and op.kind == "delete" and op.version
               and reflected(op, tombstone)]
    for op in ops:
        if op.status == "ok" and op.kind != "delete" and reflected(op, tombstone) and \
                not any(d > (op.version or "") for d in deletes):
            f.lost += 1
            f.lost_keys.append(op.key)
            f.lost_at.append(op.started)


def _version_of(record: Record | None) -> dict[str, Any] | None:
    """A record's replication facts without its content (``None``: the key is absent)."""
    if record is None:
        return None
    meta = meta_if_valid(record)
    if meta is None:
        return {"tombstone": record.tombstone, "version": None, "note": "no valid mcrepl metadata"}
    return {"tombstone": record.tombstone, "version": meta.version.token, "epoch": meta.epoch,
            "vector": dict(meta.vector)}


def _final_versions(f: Findings, ops: list[Op], final: Mapping[str, Record | None]) -> None:
    """Classify every final record by the operation that wrote its content."""
    status_of = {op.version: op.status for op in ops if op.version}
    content_of: dict[tuple[str, str], str] = {}
    for op in ops:
        if op.value_hash and op.status is not None:
            best = content_of.get((op.key, op.value_hash))
            content_of[(op.key, op.value_hash)] = "ok" if "ok" in (best, op.status) else op.status
    for key, record in final.items():
        meta = meta_if_valid(record) if record is not None else None
        if meta is None:
            if record is not None:
                f.unexpected += 1
                f.unexpected_keys.append(key)
            continue
        status = status_of.get(meta.version.token) or content_of.get((key, meta.comparable_hash))
        if status == "ok":
            continue
        if status is None and record is not None and record.tombstone:
            _judge_rollback(f, [op for op in ops if op.key == key], record)
            continue
        if status in ("timeout", "attempted"):
            f.indeterminate_landed += 1
        else:
            f.unexpected += 1
            f.unexpected_keys.append(key)
            f.unexpected_at.append(meta.version.wall_ms / 1000)
