"""DynamoDB-specific behaviour of the DynamoDB adapter (the shared contract lives in tests/contract/).

Pure wire conversion is checked without a server; everything else runs against both
DynamoDB lanes of the local stack — the moto server and AWS DynamoDB Local — through
boto3, each test in a table of its own that is dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcrepl.adapters.base import (
    AdapterError,
    ApplyOutcome,
    CredentialsError,
    KeyAttribute,
    KeySchema,
    NotFoundError,
    Record,
    RecordError,
    RecordKey,
    ReplicaTarget,
    RetryPolicy,
    ThrottledError,
    UnavailableError,
    Version,
    blob,
    document,
    tombstone_of,
)
from mcrepl.adapters.base.values import WIDE, normalize_number
from mcrepl.adapters.dynamodb import DynamoDBAdapter, streams, wire
from mcrepl.adapters.dynamodb.clients import DynamoDBClients
from mcrepl.adapters.dynamodb.errors import translate
from mcrepl.orchestrator.config import DynamoDBSettings

SCHEMA = KeySchema(KeyAttribute("pk"))
LANES = ["dynamodb", "dynamodb-local"]
_wall = iter(range(1_700_000_000_000, 1_800_000_000_000))


def ver(origin: str = "dynamodb:eu-west-1", wall: int | None = None) -> Version:
    return Version(wall if wall is not None else next(_wall), 0, origin)


def stamped(pk: str, at: Version | None = None, vector: dict[str, str] | None = None, /,
            **fields: Any) -> Record:
    return document(SCHEMA, {"pk": pk, **fields}).stamped(at or ver(), vector)


# --- canonical values, strictly compared ---------------------------------------------------------

def strict(v: Any) -> Any:
    """A form where equal means same value *and* same canonical type (1 ≠ True ≠ Decimal)."""
    if isinstance(v, dict):
        return ("map", {k: strict(x) for k, x in v.items()})
    if isinstance(v, list):
        return ("list", [strict(x) for x in v])
    if isinstance(v, frozenset):
        return ("set", sorted(repr(strict(x)) for x in v))
    return (type(v).__name__, v)


def canonical_numbers() -> st.SearchStrategy:
    """Numbers DynamoDB holds exactly: up to 38 significant digits, magnitudes 1E-130..9.99E+125."""
    ints = st.builds(lambda m, e: m * 10**e, st.integers(-(10**38) + 1, 10**38 - 1), st.integers(0, 87))
    decimals = st.builds(lambda m, e: Decimal(m).scaleb(e, WIDE), st.integers(-(10**38) + 1, 10**38 - 1),
                         st.integers(-168, -1))
    in_range = lambda n: n == 0 or -130 <= Decimal(n).adjusted() <= 125
    return st.one_of(ints, decimals).filter(in_range).map(normalize_number)


keys = st.one_of(st.sampled_from(["$mcrepl", "v", "M", "S"]), st.text(min_size=1, max_size=8))
scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=30), st.binary(max_size=30), canonical_numbers(),
    st.datetimes(timezones=st.just(UTC)),
    st.frozensets(st.text(max_size=8), min_size=1, max_size=4),
    st.frozensets(canonical_numbers(), min_size=1, max_size=4),
    st.frozensets(st.binary(max_size=8), min_size=1, max_size=4),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=15)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_wire_round_trip_is_lossless(value: Any) -> None:
    encoded = wire.encode_value(value, "f")
    assert strict(wire.decode_value(encoded, "f")) == strict(value)


@settings(max_examples=100, deadline=None)
@given(body=st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in ("pk", "_mcrepl")),
                            values, max_size=5),
       tomb=st.booleans(), epoch=st.integers(0, 10**6))
def test_item_round_trip_keeps_body_and_metadata(body: dict, tomb: bool, epoch: int) -> None:
    rec = stamped("k", ver(), {"cosmos:westeurope": ver("cosmos:westeurope").token}, **body)
    if tomb:
        rec = tombstone_of(SCHEMA, rec.key, ver(), dict(rec.meta.vector), epoch=epoch)
    back = wire.decode_item(wire.encode_item(rec, SCHEMA, "document"), SCHEMA, "document")
    assert back.key == rec.key and back.meta == rec.meta
    assert strict(back.body) == strict(rec.body)


def test_tag_lookalike_maps_are_escaped_and_datetimes_tagged() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    lookalike = {"$mcrepl": "datetime", "v": when.isoformat()}
    assert wire.encode_value(when, "t") == {"M": {"$mcrepl": {"S": "datetime"}, "v": {"S": when.isoformat()}}}
    assert wire.encode_value(lookalike, "m")["M"]["$mcrepl"] == {"S": "map"}
    assert wire.decode_value(wire.encode_value(lookalike, "m")) == lookalike
    assert wire.decode_value(wire.encode_value(when, "t")) == when


def test_user_fields_named_like_the_metadata_survive_both_ways() -> None:
    """``_mcrepl`` is ours only when it holds metadata: a user's field of that name is kept,
    in a native item as it is, in an item mcrepl writes inside the ``_mcrepl_fields`` wrapper."""
    body = {"pk": "k", "_mcrepl": "mine", "_mcrepl_fields": {"x": 1}, "n": 2}
    record = document(SCHEMA, body).stamped(ver())
    item = wire.encode_item(record, SCHEMA, "document")
    assert set(item) == {"pk", "n", "_mcrepl", "_mcrepl_fields"} and "M" in item["_mcrepl"]
    decoded = wire.decode_item(item, SCHEMA, "document")
    assert decoded.body == record.body and decoded.meta == record.meta
    native = wire.encode_item(document(SCHEMA, body), SCHEMA, "document", with_meta=False)
    as_read = {**native, "_mcrepl": {"S": "mine"}}          # what an application wrote
    read_back = wire.decode_item(as_read, SCHEMA, "document")
    assert read_back.meta is None and read_back.body["_mcrepl"] == "mine"


@pytest.mark.parametrize("body, rule, field", [
    ({"a": {"b": [1, Decimal("1" * 39)]}}, "number-precision", "a.b[1]"),
    ({"big": 10**126}, "number-range", "big"),
    ({"tiny": Decimal("1E-131")}, "number-range", "tiny"),
    ({"s": frozenset({1, 10**200})}, "number-range", "s{}"),
    ({"tags": {"e": frozenset()}}, "empty-set", "tags.e"),
    ({"m": {"ok": {"": 1}}}, "empty-field-name", "m.ok."),
    ({"pk": "k" * 2049}, "key-too-long", "pk"),
], ids=["precision", "too-big", "too-small", "in-number-set", "empty-set",
        "empty-map-key", "partition-key-over-2kb"])
def test_unrepresentable_values_name_rule_and_field(body: dict, rule: str, field: str) -> None:
    body = {"pk": "k", **body}
    with pytest.raises(RecordError) as err:
        wire.encode_item(document(SCHEMA, body).stamped(ver()), SCHEMA, "document")
    assert (err.value.rule, err.value.field) == (rule, field)


def nested(levels: int) -> Any:
    """A value of ``levels`` nested containers (maps and lists alternating), a scalar inside."""
    v: Any = "x"
    for i in range(levels):
        v = {"n": v} if i % 2 else [v]
    return v


def test_nesting_limit_counts_item_as_level_one() -> None:
    wire.encode_value(nested(31), "deep")                       # levels 2..32
    with pytest.raises(RecordError) as err:
        wire.encode_value({"a": nested(31)}, "deep")
    assert err.value.rule == "nesting-depth" and err.value.field.startswith("deep.a")
    now = datetime.now(UTC)                            # the datetime tag is a map level too
    wire.encode_value(_in_lists(now, 30), "d")
    with pytest.raises(RecordError) as err:
        wire.encode_value(_in_lists(now, 31), "d")
    assert err.value.rule == "nesting-depth" and err.value.field == "d" + "[0]" * 31


def _in_lists(v: Any, levels: int) -> Any:
    for _ in range(levels):
        v = [v]
    return v


def test_item_size_follows_dynamodb_rules() -> None:
    item = {"id": {"S": "a"}, "m": {"M": {"k": {"B": b"x" * 10}}}, "n": {"N": "123.45"},
            "l": {"L": [{"NULL": True}, {"SS": ["ab", "c"]}]}}
    # names 2+1+1+1; values 1 + (3+1+1+10) + (5 digits → 3 + 1 = 4) + (3+1+1+1+3)
    assert wire.item_size(item) == 5 + 1 + 15 + 4 + 9


# --- stores on both lanes ----------------------------------------------------------------------

def make_target(endpoint: str, *, kind: str = "document", schema: KeySchema | None = None,
                name: str | None = None) -> ReplicaTarget:
    schema = schema or (KeySchema(KeyAttribute("name")) if kind == "blob" else SCHEMA)
    options = DynamoDBSettings().model_dump() | {"endpoint": endpoint, "local": True}
    return ReplicaTarget(replica="dynamodb:eu-west-1", provider="dynamodb", region="eu-west-1",
                         dataset="ddbtest", kind=kind, key_schema=schema,  # type: ignore[arg-type]
                         resource=name or f"ddb-{uuid.uuid4().hex[:12]}", options=options)


@pytest.fixture(params=LANES)
def endpoint(request: pytest.FixtureRequest, local_stack: Any) -> str:
    return local_stack.endpoint(request.param)


@pytest.fixture
def open_store(endpoint: str) -> Iterator[Callable[..., DynamoDBAdapter]]:
    opened: list[DynamoDBAdapter] = []

    def _open(**kw: Any) -> DynamoDBAdapter:
        adapter = DynamoDBAdapter(make_target(endpoint, **kw))
        adapter.ensure_ready()
        opened.append(adapter)
        return adapter
    yield _open
    for adapter in opened:
        adapter.drop()
        adapter.close()


@pytest.fixture
def store(open_store: Callable[..., DynamoDBAdapter]) -> DynamoDBAdapter:
    return open_store()


@pytest.fixture
def tx_store(endpoint: str) -> Iterator[DynamoDBAdapter]:
    """A store whose batches go as transactions (``batch_writes: transact``; ``auto`` is single locally)."""
    target = make_target(endpoint)
    adapter = DynamoDBAdapter(dataclasses.replace(target, options={**target.options, "batch_writes": "transact"}))
    adapter.ensure_ready()
    yield adapter
    adapter.drop()
    adapter.close()


def raw_client(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="eu-west-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def drain(store: DynamoDBAdapter, cursor: dict | None, limit: int = 500) -> tuple[list, dict, list]:
    """Every change after ``cursor``, the final cursor, and each page's ``scanned`` flag."""
    changes, scanned = [], []
    while True:
        page = store.capture_changes(cursor, limit)
        changes += page.changes
        scanned.append(page.scanned)
        cursor = json.loads(json.dumps(page.cursor))        # cursors must survive JSON
        if not page.more:
            return changes, cursor, scanned


richer_bodies = st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True).filter(lambda k: k != "pk"),
                                values, max_size=5)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=richer_bodies)
def test_store_round_trip_with_sets_and_extreme_numbers(store: DynamoDBAdapter, body: dict) -> None:
    rec = stamped(f"h-{uuid.uuid4().hex[:8]}", None, None, **body)
    assert store.apply_batch([rec])[0].outcome is ApplyOutcome.APPLIED
    back = store.read(rec.key)
    assert strict(back.body) == strict(rec.body) and back.meta == rec.meta


def test_limits_hold_at_the_service_boundary(store: DynamoDBAdapter) -> None:
    """What the encoder accepts at the exact limits, the service stores; one step over is refused."""
    deepest = stamped("deep", None, None, n=nested(31))
    assert store.apply_batch([deepest])[0].outcome is ApplyOutcome.APPLIED
    probe = stamped("big", ver(), None, pad="")
    room = wire.MAX_ITEM_BYTES - wire.item_size(wire.encode_item(probe, SCHEMA, "document"))
    exact = stamped("big", probe.meta.version, None, pad="x" * room)
    assert wire.item_size(wire.encode_item(exact, SCHEMA, "document")) == wire.MAX_ITEM_BYTES
    result = store.apply_batch([exact])[0]
    assert result.outcome is ApplyOutcome.APPLIED or (
        result.outcome is ApplyOutcome.REJECTED and result.error.rule == "item-too-large"), \
        "a service that counts more strictly must surface its refusal as the same rule"
    over = stamped("over", None, None, pad="x" * (room + 1))
    rejected = store.apply_batch([over])[0]
    assert rejected.outcome is ApplyOutcome.REJECTED
    assert (rejected.error.rule, rejected.error.field, rejected.error.key) == ("item-too-large", "pad", "over")


def test_exact_size_item_is_stored_by_dynamodb_local(local_stack: Any) -> None:
    """AWS's own DynamoDB Local agrees with the size rules to the byte."""
    adapter = DynamoDBAdapter(make_target(local_stack.endpoint("dynamodb-local")))
    adapter.ensure_ready()
    try:
        probe = stamped("big", ver(), None, pad="", m={"k": [1, "ü"]}, n=Decimal("123.456"))
        room = wire.MAX_ITEM_BYTES - wire.item_size(wire.encode_item(probe, SCHEMA, "document"))
        exact = stamped("big", probe.meta.version, None, pad="x" * room, m={"k": [1, "ü"]}, n=Decimal("123.456"))
        assert adapter.apply_batch([exact])[0].outcome is ApplyOutcome.APPLIED
        assert len(adapter.read(exact.key).body["pad"]) == room
    finally:
        adapter.drop()
        adapter.close()


# --- conditional apply ---------------------------------------------------------------------------

def test_apply_refuses_concurrent_versions_inside_the_condition(store: DynamoDBAdapter) -> None:
    """The condition expression checks the vector: a version from an origin the incoming one
    knows of but has not seen (empty token) is a conflict, the item returned names it."""
    a = stamped("k", ver("dynamodb:eu-west-1"), None, side="a")
    b = stamped("k", ver("cosmos:westeurope"), {"dynamodb:eu-west-1": ""}, side="b")   # concurrent with a
    older_concurrent = stamped("k", Version(1, 0, "gcs:europe-west1"), {"dynamodb:eu-west-1": ""}, side="c")
    assert store.apply_batch([a])[0].existing is None
    refused = store.apply_batch([b])[0]
    assert refused.outcome is ApplyOutcome.CONFLICT and refused.conflict_with == a.meta
    assert refused.existing.body == a.body and store.read(a.key).meta == a.meta
    assert store.apply_batch([older_concurrent])[0].outcome is ApplyOutcome.CONFLICT
    successor = stamped("k", ver("cosmos:westeurope"), {**a.meta.vector, **{o: t for o, t in b.meta.vector.items()
                                                                                if t}}, side="d")
    applied = store.apply_batch([successor])[0]
    assert (applied.outcome, applied.conflict_with) == (ApplyOutcome.APPLIED, None)
    assert applied.existing.meta == a.meta
    replay = store.apply_batch([successor])[0]
    assert (replay.outcome, replay.conflict_with) == (ApplyOutcome.REPLAYED, None)


def test_an_origin_the_writer_never_heard_of_is_a_conflict_and_nothing_is_written(store: DynamoDBAdapter) -> None:
    """Without the origin in the incoming vector a condition naming only that vector's origins
    cannot see it; the put's condition also pins the stored vector's size, so the concurrent
    version fails it and is reported, as on every other store (it used to be overwritten and
    reported after the fact: the failback drill lost a delete that way)."""
    a = stamped("k", ver("dynamodb:eu-west-1"), None, side="a")
    b = stamped("k", ver("cosmos:westeurope"), None, side="b")
    store.apply_batch([a])
    result = store.apply_batch([b])[0]
    assert result.outcome is ApplyOutcome.CONFLICT and result.conflict_with == a.meta
    assert store.read(a.key).body["side"] == "a"


def test_native_edit_in_place_counts_as_unversioned(store: DynamoDBAdapter, endpoint: str) -> None:
    """An app that edits an item keeps our stale ``_mcrepl``; the hash mismatch makes it native,
    so even a version older than the stale token replaces it (as ``decide`` says)."""
    newer = stamped("k", ver(wall=5_000), None, n=1)
    store.apply_batch([newer])
    raw_client(endpoint).update_item(TableName=store.target.resource, Key={"pk": {"S": "k"}},
                                     UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": "2"}})
    assert store.read(newer.key).body["n"] == 2
    older = stamped("k", ver(wall=1_000), None, n=3)
    result = store.apply_batch([older])[0]
    assert result.outcome is ApplyOutcome.APPLIED and result.existing.body["n"] == 2
    assert store.read(older.key).meta == older.meta


# --- batches as TransactWriteItems -----------------------------------------------------------------

def count_calls(store: DynamoDBAdapter) -> dict[str, int]:
    """How many of each DynamoDB call the adapter's table client makes from now on."""
    calls: dict[str, int] = {}

    def seen(model: Any, **_: Any) -> None:
        calls[model.name] = calls.get(model.name, 0) + 1
    store.clients.table.meta.events.register("before-call.dynamodb", seen)
    return calls


def test_a_batch_goes_as_transactions_of_at_most_100_puts(tx_store: DynamoDBAdapter) -> None:
    batch = [stamped(f"t{i:03d}", None, None, n=i) for i in range(150)]
    calls = count_calls(tx_store)
    assert {r.outcome for r in tx_store.apply_batch(batch)} == {ApplyOutcome.APPLIED}
    # moto answers 500 now and then when two transactions run at once (it deep-copies the table
    # while the other writes): the retry sends it again
    assert "PutItem" not in calls and calls["TransactWriteItems"] >= 2, "150 fresh records: two transactions"
    calls.clear()
    assert {r.outcome for r in tx_store.apply_batch(batch)} == {ApplyOutcome.REPLAYED}
    assert calls.get("PutItem", 0) == 0, "replays are decided from the cancellation reasons"
    assert [tx_store.read(r.key).meta for r in batch[::37]] == [r.meta for r in batch[::37]]


def test_a_cancelled_transaction_lands_the_puts_whose_conditions_held(tx_store: DynamoDBAdapter) -> None:
    """One stale and one concurrent record cancel the transaction; the next one carries the rest."""
    a = stamped("c", ver("dynamodb:eu-west-1"), None, side="a")
    old, new = stamped("s", ver(), None, n=1), stamped("s", ver(), None, n=2)
    tx_store.apply_batch([a, new])
    b = stamped("c", ver("cosmos:westeurope"), {"dynamodb:eu-west-1": ""}, side="b")
    fresh = [stamped(f"f{i}", None, None, n=i) for i in range(5)]
    calls = count_calls(tx_store)
    results = tx_store.apply_batch([fresh[0], old, *fresh[1:3], b, *fresh[3:]])
    assert [r.outcome for r in results] == [ApplyOutcome.APPLIED, ApplyOutcome.STALE, ApplyOutcome.APPLIED,
                                            ApplyOutcome.APPLIED, ApplyOutcome.CONFLICT,
                                            ApplyOutcome.APPLIED, ApplyOutcome.APPLIED]
    assert results[4].conflict_with == a.meta and results[4].existing.body["side"] == "a"
    assert results[1].existing.meta == new.meta
    assert calls == {"TransactWriteItems": 2}
    assert tx_store.read(a.key).meta == a.meta and tx_store.read(new.key).meta == new.meta


def test_a_batch_over_an_origin_the_writer_never_heard_of_reports_it(tx_store: DynamoDBAdapter) -> None:
    """A stored vector with an origin the incoming one does not list fails the transactional
    condition; the record goes one put, whose condition fails too, and is reported unwritten."""
    a = stamped("k", ver("dynamodb:eu-west-1"), None, side="a")
    tx_store.apply_batch([a])
    b = stamped("k", ver("cosmos:westeurope"), None, side="b")
    other = stamped("o", None, None, side="o")
    calls = count_calls(tx_store)
    refused, landed = tx_store.apply_batch([b, other])
    assert refused.outcome is ApplyOutcome.CONFLICT and refused.conflict_with == a.meta
    assert landed.outcome is ApplyOutcome.APPLIED
    assert calls == {"TransactWriteItems": 2, "PutItem": 1}
    assert tx_store.read(a.key).body["side"] == "a"


def test_a_batch_over_a_native_edit_in_place_matches_one_put(tx_store: DynamoDBAdapter, endpoint: str) -> None:
    newer = stamped("k", ver(wall=5_000), None, n=1)
    tx_store.apply_batch([newer])
    raw_client(endpoint).update_item(TableName=tx_store.target.resource, Key={"pk": {"S": "k"}},
                                     UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": "2"}})
    older = stamped("k", ver(wall=1_000), None, n=3)
    result, other = tx_store.apply_batch([older, stamped("o", None, None, n=4)])
    assert result.outcome is ApplyOutcome.APPLIED and result.existing.body["n"] == 2
    assert other.outcome is ApplyOutcome.APPLIED
    assert tx_store.read(older.key).meta == older.meta


def test_read_many_answers_in_order_with_repeats_and_absences(store: DynamoDBAdapter) -> None:
    held = [stamped(f"r{i:03d}", None, None, n=i) for i in range(130)]
    store.apply_batch(held)
    keys = [held[5].key, RecordKey(("missing",)), *[r.key for r in held], held[5].key]
    calls = count_calls(store)
    found = store.read_many(keys)
    assert calls == {"BatchGetItem": 2}, "131 distinct keys: two calls of at most 100"
    assert found[0] == held[5] and found[1] is None and found[-1] == held[5]
    assert found[2:-1] == held
    assert found == [store.read(k) for k in keys]


@pytest.mark.parametrize("mode", ["single", "auto"])
def test_single_put_mode_sends_no_transaction(endpoint: str, mode: str) -> None:
    """``single``, and ``auto`` on the local stack (moto's rollback would undo concurrent writes)."""
    target = make_target(endpoint)
    target = dataclasses.replace(target, options={**target.options, "batch_writes": mode})
    store = DynamoDBAdapter(target)
    store.ensure_ready()
    try:
        calls = count_calls(store)
        batch = [stamped(f"p{i}", None, None, n=i) for i in range(4)]
        assert {r.outcome for r in store.apply_batch(batch)} == {ApplyOutcome.APPLIED}
        assert calls == {"PutItem": 4}
    finally:
        store.drop()
        store.close()


def test_one_keys_versions_in_a_batch_apply_in_batch_order(store: DynamoDBAdapter) -> None:
    v1, v2, v3 = (stamped("hot", ver(), None, i=i) for i in range(3))
    others = [stamped(f"cold{i}", None, None, i=i) for i in range(10)]
    results = store.apply_batch([v1, *others[:5], v2, *others[5:], v3, v2, v1])
    assert [r.outcome for r in results] == [ApplyOutcome.APPLIED] * 13 + [ApplyOutcome.STALE] * 2
    assert [r.key for r in results] == [r.key for r in [v1, *others[:5], v2, *others[5:], v3, v2, v1]]
    assert store.read(v3.key).meta == v3.meta


def test_racing_writers_on_one_item_converge_to_the_newest(store: DynamoDBAdapter) -> None:
    versions = [stamped("hot", ver(), None, i=i) for i in range(24)]
    racers = [DynamoDBAdapter(store.target) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:                       # four replicas' lanes writing at once
        batches = [versions[i::4][::-1] for i in range(4)]
        results = [r for rs in pool.map(lambda a, b: a.apply_batch(b), racers, batches) for r in rs]
    for racer in racers:
        racer.close()
    assert all(r.outcome in (ApplyOutcome.APPLIED, ApplyOutcome.STALE) for r in results)
    assert store.read(versions[-1].key).meta == versions[-1].meta


# --- capture ---------------------------------------------------------------------------------------

def test_stream_capture_across_saved_cursor_and_restart(store: DynamoDBAdapter, endpoint: str) -> None:
    start = json.loads(json.dumps(store.current_cursor()))
    replicated = stamped("r1", None, None, n=1)
    store.apply_batch([replicated])
    store.write_native([document(SCHEMA, {"pk": f"n{i}", "i": i}) for i in range(5)])
    store.delete_native([RecordKey(("n3",))])
    newer = stamped("r1", ver(), dict(replicated.meta.vector), n=2)
    store.apply_batch([newer])
    seen, cursor = [], start
    for _ in range(30):
        reopened = DynamoDBAdapter(store.target)          # a restart: nothing kept but the cursor
        page = reopened.capture_changes(cursor, limit=2)
        reopened.close()
        assert not page.scanned and len(page.changes) <= 2
        seen += page.changes
        cursor = json.loads(json.dumps(page.cursor))
        if not page.more:
            break
    events = [(c.record.key.id, c.native_delete) for c in seen]
    assert events == [("r1", False)] + [(f"n{i}", False) for i in range(5)] + [("n3", True), ("r1", False)]
    assert seen[0].record.meta == replicated.meta and seen[-1].record.meta == newer.meta
    assert seen[-1].previous == replicated.meta, "the old image's metadata extends the vector"
    assert all(c.observed_ms for c in seen)
    assert seen[6].record.body == {"pk": "n3"} and seen[6].record.meta is None
    assert drain(store, cursor)[0] == []


def test_full_scan_then_stream_from_the_position_taken_before_it(store: DynamoDBAdapter) -> None:
    """Writes before the scan come once (from the scan); writes made while it runs come again
    from the stream, marked as its overlap window; later writes are ordinary stream pages."""
    store.write_native([document(SCHEMA, {"pk": f"s{i}"}) for i in range(7)])
    first = store.capture_changes(None, 3)
    assert first.scanned and not first.overlap and first.cursor["phase"] == "scan"
    store.write_native([document(SCHEMA, {"pk": "s0", "v": 2}), document(SCHEMA, {"pk": "n1"})])
    pages, cursor = [first], json.loads(json.dumps(first.cursor))
    while pages[-1].more:
        pages.append(store.capture_changes(cursor, 3))
        cursor = json.loads(json.dumps(pages[-1].cursor))
    scanned = [c.record.key.id for p in pages if p.scanned for c in p.changes]
    window = [(c.record.key.id, (c.record.body or {}).get("v")) for p in pages if p.overlap for c in p.changes]
    after = [c for p in pages if not p.scanned and not p.overlap for c in p.changes]
    before = {f"s{i}" for i in range(7)}
    assert before <= set(scanned) <= before | {"n1"} and len(scanned) == len(set(scanned))
    assert window == [("s0", 2), ("n1", None)], "exactly the writes made during the scan, in order"
    assert after == [] and cursor["phase"] == "stream" and "overlap_until" not in cursor
    store.write_native([document(SCHEMA, {"pk": "s1", "v": 3})])
    later = store.capture_changes(cursor, 10)
    assert not later.overlap and [c.record.key.id for c in later.changes] == ["s1"]


def test_scan_cursor_with_binary_keys_survives_json(open_store: Callable[..., DynamoDBAdapter]) -> None:
    schema = KeySchema(KeyAttribute("id", "B"), KeyAttribute("seq", "N"))
    store = open_store(schema=schema)
    recs = [document(schema, {"id": bytes([i, 0, 255]), "seq": i * 10**30, "x": i}) for i in range(5)]
    store.write_native(recs)
    changes, _, _ = drain(store, None, limit=2)
    assert {c.record.key for c in changes} == {r.key for r in recs}


@pytest.mark.parametrize("spoil", ["other-stream", "vanished-shard", "malformed"])
def test_unusable_cursor_falls_back_to_full_scan(store: DynamoDBAdapter, spoil: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    store.write_native([document(SCHEMA, {"pk": "a"})])
    cursor = store.current_cursor()
    if spoil == "other-stream":
        cursor["stream"] += "-replaced"
    elif spoil == "vanished-shard":
        cursor["shards"]["shardId-00000000000000000000-deadbeef"] = "000000000000000000042"
    else:
        cursor = {"phase": "stream", "stream": cursor["stream"]}
    with caplog.at_level(logging.WARNING, logger="mcrepl.adapters.dynamodb"):
        page = store.capture_changes(cursor, limit=50)
    assert page.scanned and [c.record.key.id for c in page.changes] == ["a"]
    assert "full table scan" in caplog.text


def test_re_enabled_stream_gets_a_new_arn_and_capture_rescans(store: DynamoDBAdapter, endpoint: str) -> None:
    client = raw_client(endpoint)
    store.write_native([document(SCHEMA, {"pk": "a"})])
    cursor = store.current_cursor()
    client.update_table(TableName=store.target.resource, StreamSpecification={"StreamEnabled": False})
    try:
        client.update_table(TableName=store.target.resource, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    except ClientError as exc:
        pytest.skip(f"this emulator cannot re-enable a stream ({exc.response['Error']['Code']}); "
                    "the forged-ARN case of test_unusable_cursor_falls_back_to_full_scan covers the path")
    page = store.capture_changes(cursor, limit=50)
    assert page.scanned and [c.record.key.id for c in page.changes] == ["a"]


def count_stream_calls(store: DynamoDBAdapter) -> dict[str, int]:
    """How many of each DynamoDB and DynamoDB Streams call the adapter makes from now on."""
    calls: dict[str, int] = {}

    def seen(model: Any, **_: Any) -> None:
        calls[model.name] = calls.get(model.name, 0) + 1
    store.clients.table.meta.events.register("before-call.dynamodb", seen)
    store.clients.streams.meta.events.register("before-call.dynamodbstreams", seen)
    return calls


def test_a_follower_poll_that_finds_records_is_only_get_records(store: DynamoDBAdapter) -> None:
    """The shard list and the iterator a read ended with are remembered: a busy follower's poll
    neither lists the shards, nor asks for an iterator, nor checks the table's stream."""
    store.write_native([document(SCHEMA, {"pk": "before"})])
    cursor = store.current_cursor()
    store.write_native([document(SCHEMA, {"pk": "a"}), document(SCHEMA, {"pk": "b"})])
    calls = count_stream_calls(store)
    page = store.capture_changes(cursor, limit=50)
    assert [c.record.key.id for c in page.changes] == ["a", "b"] and not page.scanned
    assert set(calls) == {"GetRecords"}, calls
    store.write_native([document(SCHEMA, {"pk": "c"})])
    calls.clear()
    page = store.capture_changes(json.loads(json.dumps(page.cursor)), limit=50)
    assert [c.record.key.id for c in page.changes] == ["c"] and set(calls) == {"GetRecords"}, calls


def test_an_idle_poll_still_checks_the_tables_stream(store: DynamoDBAdapter) -> None:
    cursor = store.current_cursor()
    calls = count_stream_calls(store)
    page = store.capture_changes(cursor, limit=50)
    assert page.changes == [] and not page.more
    assert calls.get("DescribeTable") == 1, "an empty page asks which stream the table has now"


def test_a_remembered_iterator_that_expired_is_replaced_not_a_rescan(
        store: DynamoDBAdapter, caplog: pytest.LogCaptureFixture) -> None:
    cursor = store.current_cursor()
    store.write_native([document(SCHEMA, {"pk": "a"})])
    sent: list[str] = []

    def expire_the_first(model: Any, **_: Any) -> None:
        sent.append(model.name)
        if sent == ["GetRecords"]:
            raise ClientError({"Error": {"Code": "ExpiredIteratorException", "Message": "Iterator expired"}},
                              "GetRecords")
    store.clients.streams.meta.events.register("before-call.dynamodbstreams", expire_the_first)
    with caplog.at_level(logging.WARNING, logger="mcrepl.adapters.dynamodb"):
        page = store.capture_changes(cursor, limit=50)
    assert sent[:3] == ["GetRecords", "GetShardIterator", "GetRecords"], \
        f"{sent}: the remembered iterator first, then a fresh one for the same position"
    assert [c.record.key.id for c in page.changes] == ["a"] and not page.scanned
    assert "full table scan" not in caplog.text


def test_a_shard_written_to_while_it_is_read_returns_what_it_read_within_the_chase_bound(
        store: DynamoDBAdapter) -> None:
    """Under steady writes an open shard's tip moves on while it is read; the read returns what
    it has after ``CHASE_S`` (``more``: read on at once) instead of chasing the tip, so the
    records it read are committed, and reach the replicas, without waiting for a quiet moment."""
    cursor = store.current_cursor()
    store.write_native([document(SCHEMA, {"pk": "first"})])
    written = iter(range(10**6))

    def a_write_lands_meanwhile(**_: Any) -> None:
        store.write_native([document(SCHEMA, {"pk": f"w{next(written):06d}"})])
    store.clients.streams.meta.events.register("before-call.dynamodbstreams.GetRecords", a_write_lands_meanwhile)
    started = time.monotonic()
    page = store.capture_changes(cursor, limit=1000)
    took = time.monotonic() - started
    assert page.changes[0].record.key.id == "first" and page.more and not page.scanned
    assert len(page.changes) < 200, f"{len(page.changes)} records in one page: the read chased the tip"
    assert took < 5 * streams.CHASE_S + 2, took


def test_purge_of_tombstones_is_not_captured_as_native_delete(store: DynamoDBAdapter) -> None:
    live = stamped("x", ver(wall=1_000), None, n=1)
    store.apply_batch([live])
    dead = tombstone_of(SCHEMA, live.key, ver(wall=2_000), dict(live.meta.vector))
    store.apply_batch([dead])
    cursor = store.current_cursor()
    assert store.purge_tombstones(older_than_ms=3_000) == 1
    assert store.read(live.key) is None
    store.write_native([document(SCHEMA, {"pk": "y"})])
    store.delete_native([RecordKey(("y",))])
    changes, _, _ = drain(store, cursor)
    assert [(c.record.key.id, c.native_delete) for c in changes] == [("y", False), ("y", True)]


def test_purge_keeps_recent_tombstones_live_records_and_blob_tombstones_purge(
        open_store: Callable[..., DynamoDBAdapter]) -> None:
    blobs = open_store(kind="blob")
    old = tombstone_of(blobs.target.key_schema, RecordKey(("a.bin",)), ver(wall=10), blob_dataset=True)
    recent = tombstone_of(blobs.target.key_schema, RecordKey(("b.bin",)), ver(wall=10**13), blob_dataset=True)
    live = blob("c.bin", b"").stamped(ver(wall=10))
    assert [r.outcome for r in blobs.apply_batch([old, recent, live])] == [ApplyOutcome.APPLIED] * 3
    raw = blobs.clients.table.get_item(TableName=blobs.target.resource, Key={"name": {"S": "b.bin"}})["Item"]
    assert set(raw) == {"name", "_mcrepl"}, "a blob tombstone keeps only its key and metadata"
    assert blobs.read(live.key).body == b"" and blobs.read(recent.key).body is None
    assert blobs.purge_tombstones(older_than_ms=1_000) == 1
    assert blobs.read(old.key) is None and blobs.read(recent.key).tombstone
    assert blobs.read(live.key) is not None


def test_write_native_keeps_last_body_per_key_and_no_metadata(store: DynamoDBAdapter) -> None:
    store.write_native([document(SCHEMA, {"pk": f"w{i % 30}", "i": i}) for i in range(60)])
    assert store.read(RecordKey(("w7",))).body == {"pk": "w7", "i": 37}
    assert all(d.version is None for d in store.list_digests())
    assert len(list(store.list_digests())) == 30


# --- table checks, credentials, error translation ------------------------------------------------

def test_existing_table_without_stream_or_with_other_key_is_refused(endpoint: str) -> None:
    client, name = raw_client(endpoint), f"ddb-{uuid.uuid4().hex[:12]}"
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    try:
        with pytest.raises(AdapterError, match="StreamViewType=NEW_AND_OLD_IMAGES"):
            DynamoDBAdapter(make_target(endpoint, name=name)).ensure_ready()
        other = KeySchema(KeyAttribute("pk", "N"))
        with pytest.raises(AdapterError, match="configured with key"):
            DynamoDBAdapter(make_target(endpoint, name=name, schema=other)).ensure_ready()
    finally:
        client.delete_table(TableName=name)


def test_local_endpoint_never_reads_user_credentials(endpoint: str, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Any) -> None:
    """Dummy keys for the local stack: no profile lookup, no config or credentials file read."""
    unreadable = tmp_path / "config"
    unreadable.write_text("[[[ not an ini file")          # botocore would fail parsing this
    monkeypatch.setenv("AWS_PROFILE", "profile-that-does-not-exist")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(unreadable))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(unreadable))
    adapter = DynamoDBAdapter(make_target(endpoint))
    adapter.ensure_ready()
    adapter.drop()
    adapter.close()


def client_error(code: str, message: str = "msg", status: int = 400, operation: str = "PutItem") -> ClientError:
    """A botocore ClientError exactly as botocore builds it from a service reply."""
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


@pytest.mark.parametrize("code, status, kind, retryable", [
    ("ProvisionedThroughputExceededException", 400, ThrottledError, True),
    ("ThrottlingException", 400, ThrottledError, True),
    ("RequestLimitExceeded", 400, ThrottledError, True),
    ("InternalServerError", 500, UnavailableError, True),
    ("500", 500, UnavailableError, True),                   # moto's bare HTML 500
    ("ServiceUnavailable", 503, UnavailableError, True),
    ("ResourceNotFoundException", 400, NotFoundError, False),
    ("UnrecognizedClientException", 400, CredentialsError, False),
    ("ValidationException", 400, AdapterError, False),
])
def test_client_errors_translate_with_retry_bit(code: str, status: int, kind: type, retryable: bool) -> None:
    err = translate(client_error(code, "The security token AKIAEXAMPLESECRET is invalid", status),
                    replica="dynamodb:eu-west-1", dataset="ddbtest", operation="put_item", key="k1")
    assert type(err) is kind and err.retryable is retryable
    assert (err.provider, err.replica, err.dataset, err.operation, err.key) == \
        ("dynamodb", "dynamodb:eu-west-1", "ddbtest", "put_item", "k1")
    if kind is CredentialsError:
        assert "AKIA" not in str(err), "the service's text never reaches a credentials error"


def test_service_item_refusals_become_record_errors() -> None:
    err = translate(client_error("ValidationException", "Item size has exceeded the maximum allowed size"),
                    replica="dynamodb:eu-west-1", dataset="ddbtest", key="k1")
    assert isinstance(err, RecordError) and (err.rule, err.key, err.dataset) == ("item-too-large", "k1", "ddbtest")


def test_unreachable_endpoint_is_unavailable_and_retried_until_deadline() -> None:
    err = translate(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert isinstance(err, UnavailableError) and err.retryable
    with socket.socket() as s:                                # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clients = DynamoDBClients(make_target(f"http://127.0.0.1:{port}"),
                              RetryPolicy(deadline_s=0.5, initial_s=0.01, max_backoff_s=0.05))
    with pytest.raises(UnavailableError):
        clients.guard("describe_table", lambda: clients.table.describe_table(TableName="t"))
    clients.close()


def test_native_lookalike_map_with_naive_datetime_stays_a_map() -> None:
    """We only ever write aware UTC datetimes; a naive look-alike was written by someone else."""
    from mcrepl.adapters.dynamodb.wire import decode_value
    lookalike = {"M": {"$mcrepl": {"S": "datetime"}, "v": {"S": "2026-01-01T00:00:00"}}}
    assert decode_value(lookalike, "f") == {"$mcrepl": "datetime", "v": "2026-01-01T00:00:00"}
