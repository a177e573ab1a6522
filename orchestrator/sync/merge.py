"""The ``merge`` conflict resolver: a user function combines two concurrent bodies.

``conflict: {resolver: merge, function: "package.module:callable"}`` names a function
``(stored_body, incoming_body) -> body``. The merged record gets a new HLC version and a
vector that has seen both sides, so it dominates both and every replica converges on it.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from mcrepl.adapters.base import ConfigError, Record, ReplicaTarget, Version
from mcrepl.adapters.base.values import normalize

MergeFunction = Callable[[Any, Any], Any]


def load_merge_function(spec: str, dataset: str) -> MergeFunction:
    """Import ``module:callable``; a config error names the dataset and the fix."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"merge function {spec!r} is not 'module:callable'",
                          path=f"datasets.{dataset}.conflict.function",
                          fix="write e.g. myapp.merges:merge_customer")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load merge function {spec!r}: {exc}",
                          path=f"datasets.{dataset}.conflict.function",
                          fix="make the module importable (on PYTHONPATH) and check the name") from None
    if not callable(fn):
        raise ConfigError(f"merge function {spec!r} is not callable",
                          path=f"datasets.{dataset}.conflict.function", fix="point at a function")
    return fn


def union_vector(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, str]:
    """Per origin, the later token of the two vectors: a vector that has seen both."""
    return {o: max(a.get(o, ""), b.get(o, "")) for o in {*a, *b}}


def merged_record(fn: MergeFunction, target: ReplicaTarget, stored: Record, incoming: Record,
                  version: Version, epoch: int) -> Record:
    """The merged record of two concurrent versions, stamped with ``version``.

    Raises :class:`~mcrepl.adapters.base.RecordError` when the merge result is not a
    valid body for the dataset (bad values, key fields changed).
    """
    assert stored.meta is not None and incoming.meta is not None
    body = fn(stored.body, incoming.body)
    if target.kind == "document":
        body = normalize(body)
        key = target.key_schema.key_of(body)  # type: ignore[arg-type]
        if key != incoming.key:
            from mcrepl.adapters.base import RecordError
            raise RecordError("merge-changed-key", "the merge function changed the record key",
                              dataset=target.dataset, key=incoming.key.id)
    vector = union_vector(stored.meta.vector, incoming.meta.vector)
    return Record(incoming.key, body).stamped(version, vector, epoch=epoch)
