"""Cosmos DB adapter: behaviour specific to Cosmos (the shared contract lives in tests/contract).

Emulator tests run against ``local_stack``'s @vercel/cosmosdb-server (or Microsoft's
emulator via ``MCREPL_TEST_COSMOS_ENDPOINT`` + ``MCREPL_COSMOS_KEY``), each in its own
database and container, dropped afterwards. Raw documents are inspected with the real
azure-cosmos SDK; nothing here fakes the service.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import HttpRequest, RequestsTransportResponse
from azure.cosmos import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosHttpResponseError
from hypothesis import given, settings
from hypothesis import strategies as st
from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import (
    ApplyOutcome,
    ConfigError,
    CredentialsError,
    KeyAttribute,
    KeySchema,
    NotFoundError,
    PreconditionFailed,
    Record,
    RecordError,
    ReplicaAdapter,
    ReplicaTarget,
    ThrottledError,
    UnavailableError,
    Version,
    document,
    tombstone_of,
)
from mcrepl.adapters.cosmos.auth import EMULATOR_KEY, make_client
from mcrepl.adapters.cosmos.errors import translate
from mcrepl.adapters.cosmos.wire import (
    MAX_DOCUMENT_BYTES,
    document_id,
    from_document,
    key_of_document,
    to_document,
)
from mcrepl.orchestrator.config import CosmosSettings

from mcrepl.testing.records import values

SCHEMA = KeySchema(KeyAttribute("pk"))
SECRET = "c2VjcmV0LWFjY291bnQta2V5LWRvLW5vdC1wcmludA=="   # valid base64, must never be echoed


def _version(wall_ms: int, origin: str = "cosmos:westeurope") -> Version:
    return Version(wall_ms, 0, origin)


def _target(endpoint: str, *, kind: str = "document", local: bool = True, **options: Any) -> ReplicaTarget:
    name = f"cz-{uuid.uuid4().hex[:12]}"
    opts = CosmosSettings().model_dump() | {"endpoint": endpoint, "local": local, "database": name}
    schema = KeySchema(KeyAttribute("name")) if kind == "blob" else SCHEMA
    return ReplicaTarget("cosmos:westeurope", "cosmos", "westeurope", "orders", kind,  # type: ignore[arg-type]
                         schema, name, opts | options)


@pytest.fixture
def endpoint(local_stack: Any) -> str:
    return local_stack.endpoint("cosmos")


@pytest.fixture
def open_store(endpoint: str) -> Iterator[Callable[..., ReplicaAdapter]]:
    """Open adapters on fresh containers; every one is dropped after the test."""
    opened: list[ReplicaAdapter] = []

    def _open(target: ReplicaTarget | None = None, **kw: Any) -> ReplicaAdapter:
        adapter = open_adapter(target or _target(endpoint, **kw))
        adapter.ensure_ready()
        opened.append(adapter)
        return adapter

    yield _open
    for adapter in opened:
        try:
            adapter.drop()
        finally:
            adapter.close()


@pytest.fixture
def store(open_store: Callable[..., ReplicaAdapter]) -> ReplicaAdapter:
    return open_store()


@pytest.fixture
def raw_container() -> Iterator[Callable[[ReplicaAdapter], ContainerProxy]]:
    """An adapter's container through a separate, plain SDK client (to inspect raw documents)."""
    clients: list[CosmosClient] = []

    def _open(adapter: ReplicaAdapter) -> ContainerProxy:
        opts = adapter.target.options
        client = CosmosClient(opts["endpoint"], credential=os.environ.get("MCREPL_COSMOS_KEY") or EMULATOR_KEY,
                              connection_verify=False)
        clients.append(client)
        return client.get_database_client(opts["database"]).get_container_client(adapter.target.resource)

    yield _open
    for client in clients:
        client.close()


def drain(adapter: ReplicaAdapter, cursor: dict | None, limit: int = 500) -> tuple[list, dict]:
    changes: list = []
    while True:
        page = adapter.capture_changes(cursor, limit=limit)
        changes += page.changes
        cursor = json.loads(json.dumps(page.cursor))     # as a checkpoint store would keep it
        if not page.more:
            return changes, cursor


# --- wire: pure conversion -------------------------------------------------------------------

awkward_text = st.text(alphabet=st.sampled_from("ab/\\?#%| \t\n\r|é✓"), min_size=1, max_size=12)
reserved_names = st.sampled_from(["id", "ttl", "_ts", "_rid", "_etag", "_self", "_mcrepl",
                                  "_mcrepl_fields", "_private", "$mcrepl"])
field_names = st.one_of(reserved_names, st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True))


@settings(max_examples=150, deadline=None)
@given(pk=awkward_text, body=st.dictionaries(field_names.filter(lambda n: n != "pk"), values, max_size=6),
       tombstone=st.booleans())
def test_wire_round_trip_is_lossless(pk: str, body: dict, tombstone: bool) -> None:
    rec = document(SCHEMA, {"pk": pk, **body}).stamped(_version(1_700_000_000_000), tombstone=tombstone)
    if tombstone:
        rec = Record(rec.key, SCHEMA.key_body(rec.key), rec.meta)
    doc = to_document(rec, "document")
    assert not any(ch in doc["id"] for ch in "/\\?#\t\r\n") and not doc["id"].endswith(" ")
    # what the SDK sends and gets back: JSON text, numbers parsed as doubles, system fields added
    stored = json.loads(json.dumps(doc)) | {"_rid": "r", "_self": "s", "_etag": "e", "_ts": 1, "_attachments": "a"}
    back = from_document(stored, SCHEMA, "document")
    assert (back.key, back.body, back.meta) == (rec.key, rec.body, rec.meta)
    assert key_of_document(stored, SCHEMA) == rec.key


def test_wire_numbers_beyond_a_double_are_tagged_not_rounded() -> None:
    rec = document(SCHEMA, {"pk": "n", "big": 2**53 + 1, "dec": Decimal("123456789012345678901234.567891"),
                            "ok": 2**53, "half": Decimal("0.5")})
    doc = to_document(rec, "document")
    assert doc["big"] == {"$mcrepl": "num", "v": str(2**53 + 1)}
    assert doc["dec"] == {"$mcrepl": "num", "v": "123456789012345678901234.567891"}
    assert doc["ok"] == 2**53 and doc["half"] == 0.5


def test_nan_is_rejected_before_it_reaches_the_wire() -> None:
    with pytest.raises(RecordError) as err:
        document(SCHEMA, {"pk": "n", "x": float("nan")})
    assert err.value.rule == "non-finite-number" and err.value.field == "x"


# --- documents on the emulator ---------------------------------------------------------------

def test_reserved_fields_and_awkward_ids_survive_the_emulator(store: ReplicaAdapter,
                                                               raw_container: Callable) -> None:
    body = {"pk": "a/b\\c?d#e%f|g ", "id": "user-id", "_ts": "user ts", "ttl": 5, "_mcrepl": {"x": 1},
            "n": 2**53 + 1, "d": Decimal("1234567890.12345678901234567890")}
    rec = document(SCHEMA, body).stamped(_version(1_700_000_000_001))
    assert store.apply_batch([rec])[0].outcome is ApplyOutcome.APPLIED
    assert store.read(rec.key) == rec
    raw = next(iter(raw_container(store).query_items(
        "SELECT * FROM c", enable_cross_partition_query=True)))
    assert raw["id"] == "a%2Fb%5Cc%3Fd%23e%2525f%257Cg%20"
    assert raw["_mcrepl_fields"] == {"id": "user-id", "_ts": "user ts", "ttl": 5, "_mcrepl": {"x": 1}}
    assert raw["n"] == {"$mcrepl": "num", "v": "9007199254740993"}
    assert raw["d"] == {"$mcrepl": "num", "v": "1234567890.1234567890123456789"}
    assert raw["_mcrepl"] == rec.meta.to_dict() and "ttl" not in raw and isinstance(raw["_ts"], int)


def test_blob_document_layout(open_store: Callable[..., ReplicaAdapter], raw_container: Callable) -> None:
    store = open_store(kind="blob")
    rec = Record(KeySchema(KeyAttribute("name")).parse_id("dir/file#1.bin"), b"\x00\x01\xff").stamped(
        _version(1_700_000_000_002))
    store.apply_batch([rec])
    raw = next(iter(raw_container(store).query_items("SELECT * FROM c", enable_cross_partition_query=True)))
    assert (raw["id"], raw["name"], raw["data"]) == ("dir%2Ffile%231.bin", "dir/file#1.bin",
                                                     {"$mcrepl": "bytes", "v": "AAH/"})
    assert store.read(rec.key) == rec


def test_item_over_two_megabytes_is_rejected_alone(store: ReplicaAdapter) -> None:
    big = document(SCHEMA, {"pk": "big", "payload": "x" * MAX_DOCUMENT_BYTES}).stamped(_version(1_700_000_000_003))
    near = document(SCHEMA, {"pk": "near", "payload": "y" * (MAX_DOCUMENT_BYTES - 4096)}).stamped(
        _version(1_700_000_000_003))
    results = store.apply_batch([big, near])
    assert results[0].outcome is ApplyOutcome.REJECTED
    err = results[0].error
    assert (err.rule, err.dataset, err.key, err.field, err.target) == (
        "item-too-large", "orders", "big", "payload", "cosmos:westeurope")
    assert "x" * 20 not in str(err)                       # the value itself is never in the error
    assert results[1].outcome is ApplyOutcome.APPLIED and store.read(near.key) == near


# --- conditional apply -------------------------------------------------------------------------

def test_newer_stale_replay_and_conflict(store: ReplicaAdapter) -> None:
    older = document(SCHEMA, {"pk": "k", "v": 1}).stamped(_version(1000, "dynamodb:eu-west-1"))
    newer = document(SCHEMA, {"pk": "k", "v": 2}).stamped(_version(2000, "dynamodb:eu-west-1"),
                                                           dict(older.meta.vector))
    assert store.apply_batch([older])[0].outcome is ApplyOutcome.APPLIED
    result = store.apply_batch([newer])[0]
    assert result.outcome is ApplyOutcome.APPLIED and result.conflict_with is None
    # the adapter wrote `older` itself, so it replaces on the etag it got back without a
    # read: it knows the stored version (all a non-conflicting apply needs), so nothing was read
    assert result.existing is None
    assert store.apply_batch([newer])[0].outcome is ApplyOutcome.REPLAYED
    assert store.apply_batch([older])[0].outcome is ApplyOutcome.STALE
    # a write from another origin that never saw `newer`: concurrent vectors, never overwritten
    rival = document(SCHEMA, {"pk": "k", "v": 3}).stamped(_version(3000, "gcs:europe-west1"))
    result = store.apply_batch([rival])[0]
    assert result.outcome is ApplyOutcome.CONFLICT and result.conflict_with == newer.meta
    assert result.existing is not None and result.existing.body == newer.body
    assert store.read(newer.key) == newer


def test_concurrent_writers_on_one_key_end_with_the_newest(open_store: Callable[..., ReplicaAdapter]) -> None:
    first = open_store()
    writers = [first] + [open_adapter(first.target) for _ in range(3)]   # separate clients
    versions = [document(SCHEMA, {"pk": "hot", "i": i}).stamped(_version(10_000 + i)) for i in range(24)]
    barrier = threading.Barrier(len(writers))

    def write(n: int) -> None:
        barrier.wait()
        mine = versions[n::len(writers)]
        for rec in reversed(mine) if n % 2 else mine:
            writers[n].apply_batch([rec, rec])          # the same record twice in one batch, too

    try:
        with ThreadPoolExecutor(len(writers)) as pool:
            for future in [pool.submit(write, n) for n in range(len(writers))]:
                future.result()                         # re-raises any writer's error
    finally:
        for w in writers[1:]:
            w.close()
    assert first.read(versions[-1].key) == versions[-1]



def test_remembered_etag_goes_stale_when_another_writer_wins(open_store: Callable[..., ReplicaAdapter]) -> None:
    """Our adapter remembers the etag of its own write; another client then writes a newer
    version. Our next write is conditioned on the old etag, gets 412, reads, and decides
    again: an older version ends STALE, a newer one lands, and the newest always wins."""
    ours = open_store()
    other = open_adapter(ours.target)                     # a separate client, its own memory
    v1, v2, v3, v4 = (document(SCHEMA, {"pk": "k", "v": i}).stamped(_version(1000 * i)) for i in (1, 2, 3, 4))
    try:
        assert ours.apply_batch([v1])[0].outcome is ApplyOutcome.APPLIED
        assert other.apply_batch([v3])[0].outcome is ApplyOutcome.APPLIED
        stale = ours.apply_batch([v2])[0]
        assert stale.outcome is ApplyOutcome.STALE and stale.existing == v3
        assert ours.read(v1.key) == v3
        assert ours.apply_batch([v4])[0].outcome is ApplyOutcome.APPLIED
        assert other.read(v1.key) == v4
    finally:
        other.close()


def count_reads(store: ReplicaAdapter, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many id queries (a batch's prefetch, a single read) the adapter sends from now on."""
    calls = {"query": 0, "load": 0}
    query, load = store._query, store._load  # type: ignore[attr-defined]

    def counted_query(*args: Any, **kw: Any) -> Any:
        calls["query"] += 1
        return query(*args, **kw)

    def counted_load(*args: Any, **kw: Any) -> Any:
        calls["load"] += 1
        return load(*args, **kw)
    monkeypatch.setattr(store, "_query", counted_query)
    monkeypatch.setattr(store, "_load", counted_load)
    return calls


def test_a_first_load_creates_without_asking_for_ids(store: ReplicaAdapter,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Into an empty container each record is one create-only write: no id query per batch."""
    calls = count_reads(store, monkeypatch)
    batch = [document(SCHEMA, {"pk": f"f{i}", "n": i}).stamped(_version(1_700_000_000_000 + i)) for i in range(20)]
    assert {r.outcome for r in store.apply_batch(batch)} == {ApplyOutcome.APPLIED}
    assert calls == {"query": 0, "load": 0}
    assert [store.read(r.key) for r in batch[::7]] == batch[::7]


def test_create_first_over_existing_documents_decides_on_what_it_finds(
        open_store: Callable[..., ReplicaAdapter], monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh adapter (empty memory) guesses "absent"; documents another client wrote answer 409,
    are read and decided: stale, replayed and newer as a read-first apply would say, and the
    guess turns so later batches prefetch ids again."""
    other = open_store()
    ours = open_adapter(other.target)
    try:
        held = [document(SCHEMA, {"pk": f"h{i}", "n": i}).stamped(_version(5_000 + i)) for i in range(12)]
        other.apply_batch(held)
        older = document(SCHEMA, {"pk": "h0", "n": -1}).stamped(_version(1_000))
        newer = document(SCHEMA, {"pk": "h1", "n": 100}).stamped(_version(9_000))
        calls = count_reads(ours, monkeypatch)
        results = ours.apply_batch([older, newer, held[2]])
        assert [r.outcome for r in results] == [ApplyOutcome.STALE, ApplyOutcome.APPLIED, ApplyOutcome.REPLAYED]
        assert results[0].existing == held[0]
        assert calls["load"] == 3, "each 409 was read and decided"
        assert ours.read(newer.key) == newer and ours.read(older.key) == held[0]
        for i in range(3, 12):                      # unknown keys keep turning out present
            ours.apply_batch([held[i]])
        calls.update(query=0, load=0)
        replays = ours.apply_batch(held[3:6])
        assert {r.outcome for r in replays} == {ApplyOutcome.REPLAYED}
        assert calls == {"query": 1, "load": 0}, "back to one id query per batch"
    finally:
        ours.close()


# --- capture in _ts mode -----------------------------------------------------------------------

def _start_of_a_second() -> None:
    """Wait until a fresh second has just begun, so the next writes share one ``_ts``."""
    while time.time() % 1 > 0.2:
        time.sleep(0.02)


def test_two_changes_in_one_second_are_both_captured_across_a_restart(
        store: ReplicaAdapter) -> None:
    assert not store.capabilities.incremental_capture and not store.capabilities.capture_sees_deletes
    v1 = document(SCHEMA, {"pk": "same-second", "v": 1}).stamped(_version(1))
    v2 = document(SCHEMA, {"pk": "same-second", "v": 2}).stamped(_version(2))
    _start_of_a_second()
    store.apply_batch([v1])
    first, cursor = drain(store, None)
    store.apply_batch([v2])
    restarted = open_adapter(store.target)              # a new process resuming from the checkpoint
    try:
        second, cursor = drain(restarted, cursor)
        again, _ = drain(restarted, cursor)
    finally:
        restarted.close()
    assert [c.record for c in first] == [v1] and [c.record for c in second] == [v2] and again == []
    assert first[0].observed_ms == second[0].observed_ms, "both writes must share one _ts second"


def test_small_pages_inside_one_second_return_each_change_once(store: ReplicaAdapter) -> None:
    recs = [document(SCHEMA, {"pk": f"p{i:02d}"}).stamped(_version(100 + i)) for i in range(23)]
    _start_of_a_second()
    store.apply_batch(recs)
    changes, cursor = drain(store, None, limit=4)
    assert sorted(c.record.key.id for c in changes) == sorted(r.key.id for r in recs)
    assert drain(store, cursor)[0] == []


def test_current_cursor_then_only_later_changes(store: ReplicaAdapter) -> None:
    store.apply_batch([document(SCHEMA, {"pk": f"old{i}"}).stamped(_version(5 + i)) for i in range(3)])
    cursor = store.current_cursor()
    assert cursor["mode"] == "ts" and drain(store, cursor)[0] == []
    later = document(SCHEMA, {"pk": "old1", "v": "changed"}).stamped(_version(50))
    store.apply_batch([later])
    assert [c.record for c in drain(store, cursor)[0]] == [later]


def test_tombstones_are_captured_native_writes_have_no_meta(store: ReplicaAdapter) -> None:
    live = document(SCHEMA, {"pk": "gone", "v": 1}).stamped(_version(1))
    store.apply_batch([live])
    cursor = store.current_cursor()
    store.apply_batch([tombstone_of(SCHEMA, live.key, _version(2), live.meta.vector)])
    store.write_native([document(SCHEMA, {"pk": "app-written", "v": 7})])
    changes = {c.record.key.id: c.record for c in drain(store, cursor)[0]}
    assert changes["gone"].tombstone and changes["gone"].body == {"pk": "gone"}
    assert changes["app-written"].meta is None and changes["app-written"].body == {"pk": "app-written", "v": 7}


def test_change_feed_mode_path_reads_the_first_page(open_store: Callable[..., ReplicaAdapter]) -> None:
    """@vercel/cosmosdb-server serves only the feed's first page (then 304 forever), so this
    checks the feed code path and its continuation; incrementality is checked below."""
    store = open_store(change_feed="on")
    assert store.capabilities.incremental_capture
    store.write_native([document(SCHEMA, {"pk": f"f{i}"}) for i in range(5)])
    page = store.capture_changes(None, limit=3)
    assert len(page.changes) == 3 and page.more
    assert page.cursor["mode"] == "feed" and page.cursor["continuation"]


@pytest.mark.skipif(not os.environ.get("MCREPL_TEST_COSMOS_ENDPOINT"),
                    reason="@vercel/cosmosdb-server has no incremental change feed (one page, then "
                           "304); set MCREPL_TEST_COSMOS_ENDPOINT to Microsoft's emulator to run it")
def test_change_feed_is_incremental(open_store: Callable[..., ReplicaAdapter]) -> None:
    store = open_store(change_feed="on")
    cursor = store.current_cursor()
    store.write_native([document(SCHEMA, {"pk": f"f{i}"}) for i in range(7)])
    first, cursor = drain(store, cursor, limit=3)
    store.write_native([document(SCHEMA, {"pk": "f0", "v": 2})])
    second, _ = drain(store, cursor, limit=3)
    assert len(first) == 7 and [c.record.body for c in second] == [{"pk": "f0", "v": 2}]


# --- digests and purge -------------------------------------------------------------------------

def test_digests_mark_native_and_natively_edited_items(store: ReplicaAdapter, raw_container: Callable) -> None:
    rec = document(SCHEMA, {"pk": "edited", "v": 1}).stamped(_version(1))
    store.apply_batch([rec])
    store.write_native([document(SCHEMA, {"pk": "native", "v": 1})])
    raw = raw_container(store)
    doc = raw.read_item(document_id(rec.key), partition_key=document_id(rec.key))
    raw.upsert_item({k: v for k, v in doc.items() if not k.startswith("_") or k == "_mcrepl"} | {"v": 2})
    digests = {d.key_id: d for d in store.list_digests()}
    assert digests["edited"].version is None            # stale _mcrepl: the body changed natively
    assert digests["native"].version is None
    assert digests["native"].content_hash == document(SCHEMA, {"pk": "native", "v": 1}).digest_hash()


def test_purge_removes_only_old_tombstones(store: ReplicaAdapter) -> None:
    old = tombstone_of(SCHEMA, SCHEMA.key_of({"pk": "old"}), _version(1_000))
    new = tombstone_of(SCHEMA, SCHEMA.key_of({"pk": "new"}), _version(5_000))
    live = document(SCHEMA, {"pk": "live"}).stamped(_version(1_000))
    store.apply_batch([old, new, live])
    assert store.purge_tombstones(3_000) == 1
    assert store.read(old.key) is None and store.read(new.key) == new and store.read(live.key) == live
    assert store.purge_tombstones(3_000) == 0


# --- auth and errors ---------------------------------------------------------------------------

def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCREPL_TEST_UNSET_KEY", raising=False)
    target = _target("https://127.0.0.1:9/", local=False, key_env="MCREPL_TEST_UNSET_KEY")
    with pytest.raises(CredentialsError) as err:
        open_adapter(target).ensure_ready()
    assert "MCREPL_TEST_UNSET_KEY" in str(err.value) and not err.value.retryable


def test_bad_key_error_never_contains_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCREPL_TEST_BAD_KEY", "MySecretKey")   # 11 chars: not base64
    with pytest.raises(CredentialsError) as err:
        make_client({"endpoint": "https://127.0.0.1:9/", "auth": "key", "key_env": "MCREPL_TEST_BAD_KEY"})
    assert "MCREPL_TEST_BAD_KEY" in str(err.value) and "MySecretKey" not in repr(err.value)
    assert err.value.__cause__ is None


def _http_error(status: int, headers: dict[str, str] | None = None, message: str = "boom") -> CosmosHttpResponseError:
    """A real azure-cosmos error around a real azure-core transport response."""
    resp = requests.Response()
    resp.status_code, resp.reason, resp._content = status, "x", json.dumps({"message": message}).encode()
    resp.headers.update(headers or {})
    transport = RequestsTransportResponse(HttpRequest("POST", "https://127.0.0.1:9/dbs/d/colls/c/docs"), resp)
    return CosmosHttpResponseError(status_code=status, message=message, response=transport)


@pytest.mark.parametrize("exc, kind, retryable", [
    (_http_error(429, {"x-ms-retry-after-ms": "250"}), ThrottledError, True),
    (_http_error(503), UnavailableError, True),
    (_http_error(500), UnavailableError, True),
    (_http_error(408), UnavailableError, True),
    (ServiceRequestError("connection refused"), UnavailableError, True),
    (ServiceResponseError("connection reset"), UnavailableError, True),
    (_http_error(401, message=f"auth failed {SECRET}"), CredentialsError, False),
    (_http_error(403), CredentialsError, False),
    (ClientAuthenticationError("no token"), CredentialsError, False),
    (_http_error(404), NotFoundError, False),
    (_http_error(412), PreconditionFailed, False),
    (_http_error(409), PreconditionFailed, False),
], ids=["429", "503", "500", "408", "request-error", "response-error", "401", "403", "aad", "404",
        "412", "409"])
def test_error_translation(exc: BaseException, kind: type, retryable: bool) -> None:
    target = _target("https://127.0.0.1:9/", local=False)
    err = translate(exc, target, "apply", "k1")
    assert type(err) is kind and err.retryable is retryable
    assert (err.provider, err.replica, err.dataset, err.operation, err.key) == (
        "cosmos", "cosmos:westeurope", "orders", "apply", "k1")
    assert SECRET not in str(err)
    if kind is ThrottledError:
        assert err.retry_after == 0.25
    if kind is CredentialsError:
        assert "MCREPL_COSMOS_KEY" in str(err) or "Entra" in str(err)
    if kind is NotFoundError:
        assert target.resource in str(err) and "mcrepl sync" in str(err) and "Pulumi" in str(err)


def test_too_large_reply_becomes_a_record_error() -> None:
    err = translate(_http_error(413), _target("https://127.0.0.1:9/"), "apply", "k1")
    assert isinstance(err, RecordError) and err.rule == "item-too-large" and err.key == "k1"


def test_unreachable_endpoint_is_unavailable() -> None:
    with socket.socket() as s:                            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = _target(f"https://127.0.0.1:{port}/")
    with pytest.raises(ServiceRequestError) as raw:
        make_client(target.options)
    err = translate(raw.value, target, "connect")
    assert isinstance(err, UnavailableError) and err.retryable and str(port) in str(err)


def test_missing_container_says_how_to_fix(endpoint: str) -> None:
    adapter = open_adapter(_target(endpoint))              # ensure_ready never ran
    try:
        with pytest.raises(NotFoundError) as err:
            adapter.read(SCHEMA.key_of({"pk": "x"}))
        assert "mcrepl sync" in str(err.value) and not err.value.retryable
    finally:
        adapter.close()


@pytest.mark.parametrize("local, setting, feed", [(True, "auto", False), (False, "auto", True),
                                                  (True, "on", True), (False, "off", False)])
def test_capabilities_follow_the_capture_mode(local: bool, setting: str, feed: bool) -> None:
    adapter = open_adapter(_target("https://127.0.0.1:9/", local=local, change_feed=setting))  # no I/O yet
    caps = adapter.capabilities
    assert caps.incremental_capture is feed and not caps.capture_sees_deletes
    assert not caps.transactional_batch and caps.max_record_bytes == 2 * 1024 * 1024


def test_unknown_change_feed_setting_is_a_config_error(endpoint: str) -> None:
    with pytest.raises(ConfigError):
        open_adapter(_target(endpoint, change_feed="sometimes"))


def test_a_key_field_named_id_is_the_application_documents_own_id(endpoint: str,
                                                                  open_store: Callable[..., ReplicaAdapter]) -> None:
    """An application's document whose key field is ``id`` keeps it in the body it captures,
    and mcrepl's own copy of it (the field wrapped beside the escaped document id) reads the same."""
    schema = KeySchema(KeyAttribute("id"))
    target = dataclasses.replace(_target(endpoint), key_schema=schema)
    store = open_store(target)
    cursor = store.current_cursor()
    store.write_native([document(schema, {"id": "k013", "n": 13})])
    (change,) = drain(store, cursor)[0]
    assert change.record.meta is None and change.record.body == {"id": "k013", "n": 13}
    stamped = Record(change.record.key, change.record.body).stamped(_version(9))
    assert store.apply_batch([stamped])[0].outcome is ApplyOutcome.APPLIED
    held = store.read(stamped.key)
    assert held is not None and held.body == {"id": "k013", "n": 13} and held.meta == stamped.meta
