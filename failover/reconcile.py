"""Failback reconciliation: the old primary's unreplicated writes, found and resolved.

After a promotion the old primary may hold writes it acknowledged but never replicated
(the RPO). Once it has caught up from the new primary, verify compares the two; for each
divergent key:

* the old primary's record was stamped under a demoted epoch *after* that epoch ended
  (split-brain, :meth:`StateStore.written_after_demotion`) → **refused**: the current
  primary's state is re-asserted with a fresh version so it overwrites the stale write
  everywhere (or a tombstone, if the current primary never had the key);
* otherwise the records are resolved by :func:`mcrepl.orchestrator.resolver.resolve` —
  the newer version wins (HLC order, origin as tie-break) — and the winner is written to
  every location that lacks it: **recovered** when the old primary's write wins,
  **superseded** (reported as lost for an acknowledged write) when the new primary's wins.

Writes are conditional ``apply_batch`` calls, so reconciling twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from mcrepl.adapters.base import KeySchema, Record, ReplicaAdapter, meta_if_valid, tombstone_of
from mcrepl.orchestrator.hlc import HybridLogicalClock
from mcrepl.orchestrator.resolver import resolve
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.verify import compare_adapters


@dataclass
class ReconcileResult:
    """Key ids by outcome, and the versions the reconciliation itself issued."""

    recovered: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    issued_versions: list[str] = field(default_factory=list)
    writes: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"recovered": self.recovered, "superseded": self.superseded, "refused": self.refused,
                "writes": self.writes}


def reconcile_failback(dataset: str, schema: KeySchema, current: str, old: str,
                       adapters: Mapping[str, ReplicaAdapter], state: StateStore, current_epoch: int,
                       clock: HybridLogicalClock, *, fencing: bool = True) -> ReconcileResult:
    """Resolve every key where ``old`` differs from ``current``; write winners to all ``adapters``."""
    result = ReconcileResult()
    report = compare_adapters(dataset, {current: adapters[current], old: adapters[old]})
    keys = sorted({d.key_id for pair in report.pairs for d in pair.divergences})
    for key_id in keys:
        key = schema.parse_id(key_id)
        cur, stale = adapters[current].read(key), adapters[old].read(key)
        winner = _winner(dataset, schema, cur, stale, state, current_epoch, clock, fencing, result, key_id)
        if winner is None:
            continue
        for adapter in adapters.values():
            result.writes += sum(1 for r in adapter.apply_batch([winner]) if r.outcome.value == "applied")
    return result


def _winner(dataset: str, schema: KeySchema, cur: Record | None, stale: Record | None, state: StateStore,
            current_epoch: int, clock: HybridLogicalClock, fencing: bool, result: ReconcileResult,
            key_id: str) -> Record | None:
    cur_meta = meta_if_valid(cur) if cur is not None else None
    stale_meta = meta_if_valid(stale) if stale is not None else None
    for meta in (cur_meta, stale_meta):
        if meta is not None:
            clock.observe(meta.version)
    if stale_meta is None:
        if stale is None:
            return cur                      # only the lane's catch-up is missing: copy the current record
        return _reassert(schema, cur, cur_meta, clock, current_epoch, result, key_id)
    assert stale is not None
    if fencing and state.written_after_demotion(dataset, stale_meta, current_epoch):
        result.refused.append(key_id)
        return _reassert(schema, cur, cur_meta, clock, current_epoch, result, key_id, count=False)
    if cur is None or cur_meta is None:
        result.recovered.append(key_id)
        return stale
    winner = resolve(cur, stale).winner
    assert winner.meta is not None
    (result.recovered if winner.meta.version == stale_meta.version else result.superseded).append(key_id)
    return winner


def _reassert(schema: KeySchema, cur: Record | None, cur_meta: object, clock: HybridLogicalClock,
              epoch: int, result: ReconcileResult, key_id: str, count: bool = True) -> Record:
    """The current primary's state under a fresh version that outranks whatever the old primary holds."""
    version = clock.tick()
    result.issued_versions.append(version.token)
    if count:
        result.superseded.append(key_id)
    vector = dict(cur.meta.vector) if cur is not None and cur.meta is not None else {}
    if cur is None or cur.tombstone or cur_meta is None and cur.body is None:
        return tombstone_of(schema, schema.parse_id(key_id), version, vector, epoch=epoch)
    return Record(cur.key, cur.body).stamped(version, vector, epoch=epoch)
