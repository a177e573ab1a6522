"""Canonical values, tagged JSON and content hashes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given

from mcrepl.adapters.base import RecordError
from mcrepl.adapters.base import tagged_json as tj
from mcrepl.adapters.base.values import content_hash, normalize

from mcrepl.testing.records import bodies


@pytest.mark.parametrize("raw, canonical", [
    (1.50, Decimal("1.5")), (2.0, 2), (Decimal("1.10"), Decimal("1.1")), (Decimal("1E+2"), 100),
    (0.1, Decimal("0.1")), (True, True), (bytearray(b"x"), b"x"),
])
def test_numbers_and_bytes_normalise(raw: object, canonical: object) -> None:
    out = normalize(raw)
    assert out == canonical and type(out) is type(canonical)


@pytest.mark.parametrize("bad, rule", [
    (float("nan"), "non-finite-number"), (float("inf"), "non-finite-number"),
    (Decimal("-Infinity"), "non-finite-number"), (datetime(2026, 1, 1), "naive-datetime"),
    ({1: "x"}, "non-string-field-name"), ({"a", 1}, "mixed-set"), (object(), "unsupported-type"),
])
def test_unrepresentable_values_name_field_and_rule(bad: object, rule: str) -> None:
    with pytest.raises(RecordError) as info:
        normalize({"outer": {"inner": bad}})
    assert info.value.rule == rule
    assert info.value.field.startswith("outer.inner")


def test_datetimes_are_stored_in_utc() -> None:
    local = datetime(2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=5)))
    assert normalize(local) == datetime(2026, 3, 1, 7, tzinfo=timezone.utc)


@given(body=bodies)
def test_tagged_json_round_trips(body: dict) -> None:
    canon = normalize(body)
    assert tj.loads(tj.dumps(canon)) == canon


def test_tagged_json_keeps_json_readable_and_tags_only_what_json_cannot_hold() -> None:
    encoded = tj.to_json(normalize({"n": 5, "f": 0.25, "big": 2**60, "exact": Decimal("0.1000000000000000000001")}))
    assert encoded["n"] == 5 and encoded["f"] == 0.25
    assert encoded["big"] == {"$mcrepl": "num", "v": str(2**60)}
    assert encoded["exact"]["$mcrepl"] == "num"


def test_user_map_that_looks_like_a_tag_is_escaped() -> None:
    body = {"m": {"$mcrepl": "bytes", "v": "AAAA"}}
    assert tj.loads(tj.dumps(body)) == body


def test_json_constants_are_rejected() -> None:
    with pytest.raises(RecordError, match="NaN"):
        tj.loads(b'{"a": NaN}')


def test_content_hash_is_independent_of_number_spelling_and_key_order() -> None:
    a = content_hash("k", normalize({"x": 1.50, "y": [1, 2]}), False)
    b = content_hash("k", normalize({"y": [1, 2.0], "x": Decimal("1.500")}), False)
    assert a == b
    assert a != content_hash("k", normalize({"x": 1.5, "y": [1, 2]}), True)
    assert a != content_hash("k", normalize({"x": "1.5", "y": [1, 2]}), False)


def test_content_hash_of_every_value_kind_is_pinned() -> None:
    """Stores keep these hashes in their metadata: a change to the hash form would make every
    replicated record look edited by an application (its metadata no longer matching)."""
    from datetime import datetime, timezone
    body = normalize({"s": "é", "n": 12, "d": Decimal("1.25"), "big": 2**70, "b": b"\x00\x01",
                      "t": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                      "l": [1, "x", None, True, {"z": 1, "a": [2]}], "set": frozenset({"b", "a"}),
                      "nset": frozenset({3, Decimal("2.5")}), "m": {"$mcrepl": 1}, "f": False, "none": None})
    assert content_hash("k1", body, False) == "eedc5070709231b2663ff16e79c43f007e8a13a9e91b23069e1d9a464963c0e3"
    assert content_hash("k1", None, True) == "77edd707fcde5aa7d95da44c4cd78ffce684fb9904e6c3683bc90e75af142d8f"
    assert content_hash("blob", b"abc", False) == "4289ba02911a704d0f90be9a89220777af92a451f9d69da03d8240aa656e2c90"


def test_tagged_datetime_without_zone_is_refused_on_read() -> None:
    with pytest.raises(RecordError) as info:
        tj.loads(b'{"at": {"$mcrepl": "datetime", "v": "2026-01-01T00:00:00"}}')
    assert (info.value.rule, info.value.field) == ("naive-datetime", "at")
