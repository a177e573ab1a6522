"""Key-level comparison of two replicas inside the ranges that differ."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .merkle import DigestIndex, KeyRow


class DivergenceKind(str, enum.Enum):
    """How two replicas disagree about one key."""

    MISSING = "missing"                  # live on the reference, absent on the other
    EXTRA = "extra"                      # live on the other, absent on the reference
    CONTENT = "content"                  # both live, same (or unknown) version, different bodies
    STALE = "stale"                      # both live, different versions and bodies
    RESURRECTED = "resurrected"          # deleted on one side (newer tombstone), live on the other
    TOMBSTONE_STALE = "tombstone-stale"  # a tombstone older than the other side's live record
    WITHHELD_PRESENT = "withheld-present"  # live where the residency policy keeps the record out


@dataclass(frozen=True)
class Divergence:
    """One key that differs between ``reference`` and ``other``.

    ``newer`` names the replica holding the newer version when both versions are known.
    """

    key_id: str
    kind: DivergenceKind
    reference: str
    other: str
    reference_version: str | None
    other_version: str | None
    newer: str | None

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key_id, "kind": self.kind.value, "reference": self.reference,
                "other": self.other, "reference_version": self.reference_version,
                "other_version": self.other_version, "newer": self.newer}


def _newer(ref: KeyRow, other: KeyRow, ref_name: str, other_name: str) -> str | None:
    if ref.version is None or other.version is None or ref.version == other.version:
        return None
    return ref_name if ref.version > other.version else other_name


def classify(ref: KeyRow | None, other: KeyRow | None, ref_name: str, other_name: str) -> Divergence | None:
    """The divergence between two rows for one key, or ``None`` when they agree."""
    if ref is None and other is None:
        return None
    key = (ref or other).key_id  # type: ignore[union-attr]
    rv, ov = (ref.version if ref else None), (other.version if other else None)

    def div(kind: DivergenceKind, newer: str | None = None) -> Divergence:
        return Divergence(key, kind, ref_name, other_name, rv, ov, newer)

    ref_live = ref is not None and not ref.tombstone
    other_live = other is not None and not other.tombstone
    if not ref_live and not other_live:
        return None                                        # deleted (or purged) on both sides
    if ref_live and other is None:
        return div(DivergenceKind.MISSING, ref_name)
    if other_live and ref is None:
        return div(DivergenceKind.EXTRA, other_name)
    assert ref is not None and other is not None
    if ref_live and other_live:
        if ref.content_hash == other.content_hash:
            return None
        newer = _newer(ref, other, ref_name, other_name)
        return div(DivergenceKind.STALE if newer else DivergenceKind.CONTENT, newer)
    # one tombstone, one live record
    newer = _newer(ref, other, ref_name, other_name)
    tomb_side = ref_name if ref.tombstone else other_name
    if newer is None or newer == tomb_side:
        return div(DivergenceKind.RESURRECTED, newer or tomb_side)
    return div(DivergenceKind.TOMBSTONE_STALE, newer)


def diff(index: DigestIndex, ref_name: str, other_name: str) -> tuple[list[Divergence], int]:
    """Every divergence between two replicas in ``index`` and the range digests compared."""
    buckets, compared = index.differing_buckets(ref_name, other_name)
    if not buckets:
        return [], compared
    ref_rows = {r.key_id: r for r in index.rows(ref_name, buckets)}
    other_rows = {r.key_id: r for r in index.rows(other_name, buckets)}
    found = []
    for key in sorted(ref_rows.keys() | other_rows.keys()):
        d = classify(ref_rows.get(key), other_rows.get(key), ref_name, other_name)
        if d is not None:
            found.append(d)
    return found, compared
