"""The simulation's merge resolver: keeps every write's id, and raises for some keys.

A body carries the ids of the writes it holds (``w`` for one, ``ws`` for a merge); the
merged body holds both sides' ids. For keys ending in 3 or 7 the function raises, as a
user's merge function may: the engine must then fall back to last-writer-wins, say so
in the conflict row, and still settle the conflict exactly once.
"""

from __future__ import annotations

from typing import Any


def _ids(body: Any) -> set[int]:
    if not isinstance(body, dict):
        return set()
    if isinstance(body.get("ws"), list):
        return {int(w) for w in body["ws"]}
    return {int(body["w"])} if body.get("w") is not None else set()


def merge_ids(stored: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """Incoming's fields, and the ids of both sides' writes."""
    if str(incoming.get("id", "")).endswith(("3", "7")):
        raise ValueError("this merge function refuses keys ending in 3 or 7")
    ids = sorted(_ids(stored) | _ids(incoming))
    return {**incoming, "w": max(ids), "ws": ids}
