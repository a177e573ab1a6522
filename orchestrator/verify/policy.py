"""Policy-aware comparison: a record the residency policy keeps out of a location is not missing there.

Range digests compare what the stores hold; the policy decides what they *should* hold.
For every divergence where the reference holds a live record, the record is read once and
routed: if the policy keeps it out of the other location, an absence (or a tombstone)
there is exactly right — counted as *withheld*, not reported — while a live copy there is
a record that must not be there (``withheld-present``), which repair retracts.
Field-encrypted copies compare by the plaintext's hash (``plain_hash``), so ciphertext is
never reported as a content difference.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from mcrepl.adapters.base import Record, ReplicaAdapter
from mcrepl.policies.routing import PassThroughRouter, RecordRouter, allowed_at

from .compare import Divergence, DivergenceKind
from .report import VerifyReport

#: divergences where the reference holds a live record the other location lacks or differs on
_REFERENCE_LIVE = {DivergenceKind.MISSING, DivergenceKind.STALE, DivergenceKind.CONTENT,
                   DivergenceKind.RESURRECTED, DivergenceKind.TOMBSTONE_STALE}


def apply_policy(report: VerifyReport, adapters: Mapping[str, ReplicaAdapter], router: RecordRouter) -> int:
    """Rewrite ``report``'s divergences by the policy; returns how many were withheld as expected."""
    if isinstance(router, PassThroughRouter):
        return 0
    reference = adapters[report.reference]
    cache: dict[str, Record | None] = {}
    withheld = 0
    for pair in report.pairs:
        kept: list[Divergence] = []
        for d in pair.divergences:
            if d.kind not in _REFERENCE_LIVE:
                kept.append(d)
                continue
            if d.key_id not in cache:
                key = reference.target.key_schema.parse_id(d.key_id)
                cache[d.key_id] = reference.read(key)
            record = cache[d.key_id]
            if record is None or record.tombstone or pair.other in allowed_at(router, report.dataset, record,
                                                                              [pair.other]):
                kept.append(d)
                continue
            # the reference is live here, so in a tombstone/live divergence the tombstone is the other's
            if d.kind in (DivergenceKind.MISSING, DivergenceKind.RESURRECTED, DivergenceKind.TOMBSTONE_STALE):
                withheld += 1
                continue
            kept.append(replace(d, kind=DivergenceKind.WITHHELD_PRESENT))
        pair.divergences = kept
    report.withheld = withheld
    return withheld

