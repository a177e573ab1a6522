"""Sample data: deterministic, about 1 KB, canonical, and varied where policies look."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from mcrepl.adapters.base import KeyAttribute, KeySchema
from mcrepl.adapters.base.values import normalize
from mcrepl.orchestrator.sample import sample_records

SCHEMA = KeySchema(KeyAttribute("customer_id"))


def test_same_arguments_give_the_same_records_and_seed_changes_bodies_not_keys() -> None:
    first = sample_records(SCHEMA, 20, seed=7)
    assert sample_records(SCHEMA, 20, seed=7) == first
    other = sample_records(SCHEMA, 20, seed=8)
    assert [r.key for r in other] == [r.key for r in first]
    assert all(a.body != b.body for a, b in zip(first, other))


def test_documents_are_about_one_kilobyte_and_already_canonical() -> None:
    for record in sample_records(SCHEMA, 50, seed=1):
        size = len(json.dumps(record.body, default=str))
        assert 900 <= size <= 1100, size
        assert normalize(record.body) == record.body
        assert record.meta is None


def test_documents_carry_every_value_shape_and_the_policy_countries() -> None:
    records = sample_records(SCHEMA, 200, seed=3)
    body = records[0].body
    assert isinstance(body["balance"], (Decimal, int)) and isinstance(body["age"], int)
    assert isinstance(body["created_at"], datetime) and body["created_at"].tzinfo == UTC
    assert isinstance(body["address"]["geo"], dict) and isinstance(body["orders"], list)
    countries = Counter(r.body["country"] for r in records)
    assert {"DE", "FR", "US"} <= set(countries)


def test_numeric_and_composite_keys_and_start_offsets() -> None:
    schema = KeySchema(KeyAttribute("tenant", "N"), KeyAttribute("sk"))
    records = sample_records(schema, 5, seed=0, start=10)
    assert [r.key.parts[0] for r in records] == [11, 12, 13, 14, 15]
    assert len({r.key for r in records}) == 5


def test_blob_records_hold_the_document_as_json() -> None:
    blobs = sample_records(KeySchema(KeyAttribute("name")), 3, seed=2, kind="blob")
    assert [b.key.id for b in blobs] == [f"customers/c-{i:08d}.json" for i in range(3)]
    assert json.loads(blobs[0].body)["customer_id"] == "c-00000000"
