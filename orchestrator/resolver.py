"""Which of two versions of a record wins: one rule for sync, repair and failback.

Versions in succession (one vector dominates) are not conflicts: the newer wins. For
concurrent versions the dataset's resolver decides: last-writer-wins by version (HLC,
then origin as the deterministic tie-break), or a merge function named in the config
(``conflict: {resolver: merge, function: "package.module:callable"}``) that receives
both bodies and returns the merged one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from mcrepl.adapters.base import ConfigError, Record, Version, vectors_concurrent

MergeFunction = Callable[[Any, Any], Any]


@lru_cache(maxsize=32)
def load_merge(spec: str) -> MergeFunction:
    """Import ``package.module:callable``, with an error that names the spec and the fix."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"merge function {spec!r} is not 'package.module:callable'",
                          path="datasets.*.conflict.function", fix="write it as package.module:callable")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"merge function {spec!r} cannot be imported ({exc})",
                          path="datasets.*.conflict.function",
                          fix="check the module is importable from where mcrepl runs") from exc
    if not callable(fn):
        raise ConfigError(f"merge function {spec!r} is not callable", path="datasets.*.conflict.function")
    return fn


@dataclass(frozen=True)
class Resolution:
    """The winning record and whether the two versions were concurrent (a conflict)."""

    winner: Record
    conflict: bool
    merged: bool = False


def resolve(a: Record, b: Record, *, merge: str | None = None,
            next_version: Callable[[], Version] | None = None) -> Resolution:
    """Resolve two stamped versions of one key.

    With ``merge`` set and concurrent versions, the merge function builds a new body,
    stamped with ``next_version()`` and the union of both vectors, so it dominates both.
    """
    assert a.meta is not None and b.meta is not None, "resolve needs stamped records"
    concurrent = vectors_concurrent(a.meta.vector, b.meta.vector)
    newer, older = (a, b) if a.meta.version >= b.meta.version else (b, a)
    if not concurrent or merge is None or a.tombstone or b.tombstone:
        return Resolution(newer, concurrent)
    if next_version is None:
        raise ValueError("a merge needs next_version to stamp the merged record")
    body = load_merge(merge)(older.body, newer.body)
    vector = dict(a.meta.vector)
    for origin, token in b.meta.vector.items():
        vector[origin] = max(vector.get(origin, ""), token)
    merged = Record(newer.key, body).stamped(next_version(), vector, epoch=newer.meta.epoch)
    return Resolution(merged, True, merged=True)
