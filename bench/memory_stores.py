"""In-memory stores for the benches that measure the engine alone, without emulators."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


def memory_factory(namespace: str) -> Callable[[Any], Any]:
    """An adapter factory giving each location one in-memory store, shared by every open of it.

    The engine opens a location more than once (lanes, units, verify); one store per location
    is what makes those opens see the same data, as they would a real table or bucket.
    """
    from mcrepl.adapters.memory import MemoryAdapter
    stores: dict[str, Any] = {}

    def factory(target: Any) -> Any:
        if target.replica not in stores:
            stores[target.replica] = MemoryAdapter(dataclasses.replace(target, provider="memory",
                                                                       options={"namespace": namespace}))
        return stores[target.replica]
    return factory
