"""One resolution rule for sync, repair and failback."""

from __future__ import annotations

import pytest

from mcrepl.adapters.base import KeyAttribute, KeySchema, RecordError, ReplicaTarget, Version, tombstone_of
from mcrepl.orchestrator.hlc import HybridLogicalClock
from mcrepl.orchestrator.resolver import resolve
from mcrepl.orchestrator.sync.merge import load_merge_function

from mcrepl.testing.records import stamped

TARGET = ReplicaTarget("memory:x", "memory", "x", "contract", "document", KeySchema(KeyAttribute("pk")), "r")


def union_tags(stored: dict, incoming: dict) -> dict:
    """A merge function as a user would write one: keep both sides' tags."""
    return {**incoming, "tags": sorted(set(stored.get("tags", [])) | set(incoming.get("tags", [])))}


def rename_key(stored: dict, incoming: dict) -> dict:
    return {**incoming, "pk": "other"}


def test_succession_is_not_a_conflict() -> None:
    a = stamped("k", Version(1, 0, "p"), None, n=1)
    b = stamped("k", Version(2, 0, "p"), dict(a.meta.vector), n=2)
    r = resolve(a, b)
    assert r.winner is b and not r.conflict


def test_concurrent_versions_last_writer_wins_with_origin_tie_break() -> None:
    a = stamped("k", Version(5, 0, "aws"), None, n=1)
    b = stamped("k", Version(5, 0, "azure"), None, n=2)
    assert resolve(a, b).winner is b and resolve(b, a).winner is b and resolve(a, b).conflict


def test_merge_function_combines_concurrent_bodies_into_a_dominating_version() -> None:
    clock = HybridLogicalClock("p")
    a = stamped("k", Version(5, 0, "aws"), None, tags=["x"])
    b = stamped("k", Version(6, 0, "azure"), None, tags=["y"])
    r = resolve(a, b, merge=load_merge_function("tests.test_resolver:union_tags", "d"), target=TARGET,
                next_version=clock.tick)
    assert r.merged and r.winner.body["tags"] == ["x", "y"]
    assert r.winner.meta.version > b.meta.version
    assert set(r.winner.meta.vector) >= {"aws", "azure"}


def test_merge_may_not_change_the_key() -> None:
    a, b = stamped("k", Version(5, 0, "aws"), None), stamped("k", Version(6, 0, "azure"), None)
    with pytest.raises(RecordError, match="changed the record key"):
        resolve(a, b, merge=rename_key, target=TARGET, next_version=HybridLogicalClock("p").tick)


def test_a_newer_delete_beats_a_concurrent_update_even_with_a_merge() -> None:
    live = stamped("k", Version(5, 0, "aws"), None, n=1)
    dead = tombstone_of(TARGET.key_schema, live.key, Version(6, 0, "azure"))
    assert resolve(live, dead, merge=union_tags, target=TARGET).winner is dead
