"""Which of two versions of a record wins: one rule for sync, repair and failback.

Versions in succession (one vector dominates) are not conflicts: the newer wins. For
concurrent versions the dataset's resolver decides: last-writer-wins by version (HLC,
then origin as the deterministic tie-break), or the merge function named in the config,
applied exactly as the sync engine applies it (:mod:`mcrepl.orchestrator.sync.merge`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mcrepl.adapters.base import Record, ReplicaTarget, Version, vectors_concurrent
from mcrepl.orchestrator.sync.merge import MergeFunction, merged_record


@dataclass(frozen=True)
class Resolution:
    """The winning record and whether the two versions were concurrent (a conflict)."""

    winner: Record
    conflict: bool
    merged: bool = False


def resolve(a: Record, b: Record, *, merge: MergeFunction | None = None, target: ReplicaTarget | None = None,
            next_version: Callable[[], Version] | None = None) -> Resolution:
    """Resolve two stamped versions of one key.

    With ``merge`` set and concurrent live versions, the merge function builds a new body
    stamped with ``next_version()`` and a vector that has seen both, so it dominates both.
    """
    assert a.meta is not None and b.meta is not None, "resolve needs stamped records"
    concurrent = vectors_concurrent(a.meta.vector, b.meta.vector)
    newer, older = (a, b) if a.meta.version >= b.meta.version else (b, a)
    if not concurrent or merge is None or a.tombstone or b.tombstone:
        return Resolution(newer, concurrent)
    if next_version is None or target is None:
        raise ValueError("a merge needs the dataset's target and next_version to stamp the merged record")
    assert newer.meta is not None  # newer is a or b, both checked above
    merged = merged_record(merge, target, older, newer, next_version(), newer.meta.epoch)
    return Resolution(merged, True, merged=True)
