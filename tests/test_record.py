"""Keys, versions, vectors and metadata validity."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from mcrepl.adapters.base import (KeyAttribute, KeySchema, Record, RecordError, RecordKey, ReplicationMeta,
                                  Version, document, meta_if_valid, vectors_concurrent)


@given(st.lists(st.tuples(st.integers(0, 10**14), st.integers(0, 10**7),
                          st.sampled_from(["a:x", "b:y", "dynamodb:eu-west-1"])), min_size=2, max_size=20))
def test_token_order_equals_version_order(readings: list) -> None:
    versions = [Version(*r) for r in readings]
    assert sorted(versions) == sorted(versions, key=lambda v: v.token)
    assert all(Version.parse(v.token) == v for v in versions)


@given(st.lists(st.text(min_size=1), min_size=1, max_size=3))
def test_key_ids_are_reversible(parts: list) -> None:
    schema = KeySchema(KeyAttribute("a"), KeyAttribute("b") if len(parts) > 1 else None)
    key = RecordKey(tuple(parts[:2]))
    assert schema.parse_id(key.id) == key


def test_numeric_and_binary_keys_are_reversible() -> None:
    schema = KeySchema(KeyAttribute("n", "N"), KeyAttribute("b", "B"))
    key = RecordKey((Decimal("1.5"), b"\x00|"))
    assert schema.parse_id(key.id) == key


def test_missing_or_mistyped_key_names_the_field() -> None:
    schema = KeySchema(KeyAttribute("id", "N"))
    with pytest.raises(RecordError) as info:
        document(schema, {"other": 1})
    assert (info.value.rule, info.value.field) == ("missing-key", "id")
    with pytest.raises(RecordError) as info:
        document(schema, {"id": "seven"})
    assert (info.value.rule, info.value.field) == ("bad-key-type", "id")


def test_metadata_survives_dict_round_trip() -> None:
    meta = ReplicationMeta(Version(5, 1, "o"), "h" * 64, False, {"o": Version(5, 1, "o").token}, 3, "p" * 64)
    assert ReplicationMeta.from_dict(meta.to_dict()) == meta
    assert meta.comparable_hash == "p" * 64


def test_in_place_edit_invalidates_metadata() -> None:
    schema = KeySchema(KeyAttribute("id"))
    rec = document(schema, {"id": "k", "n": 1}).stamped(Version(1, 0, "o"))
    assert meta_if_valid(rec) == rec.meta
    edited = Record(rec.key, {**rec.body, "n": 2}, rec.meta)
    assert meta_if_valid(edited) is None


def test_vectors_tell_succession_from_conflict() -> None:
    a = {"p": "1"}
    assert not vectors_concurrent({"p": "2"}, a)
    assert vectors_concurrent({"s": "1"}, a)
    assert not vectors_concurrent({"p": "1", "s": "1"}, a)
