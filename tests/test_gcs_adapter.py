"""GCS-specific behaviour of the GCS adapter (the shared contract lives in tests/contract/).

Pure wire/cursor/scan/error-translation tests need no server; everything else runs
against fake-gcs-server from the ``local_stack`` fixture through the real
``google-cloud-storage`` client, each test in a bucket of its own that it drops.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcrepl.adapters.base import (AdapterError, ApplyOutcome, CredentialsError, KeyAttribute,
                                  KeySchema, NotFoundError, Record, RecordError, RecordKey,
                                  ReplicaTarget, RetryPolicy, ThrottledError, UnavailableError,
                                  Version, apply_one, blob, document, tombstone_of)
from mcrepl.adapters.base.conditional import PreconditionFailed
from mcrepl.adapters.gcs import GCSAdapter, wire
from mcrepl.adapters.base.listing import Listed, scan
from mcrepl.adapters.base.manifest import Manifest, make_cursor, read_cursor
from mcrepl.adapters.gcs.errors import ObjectMissing, translate
from mcrepl.orchestrator.config import GCSSettings

DOC_SCHEMA = KeySchema(KeyAttribute("id"))
COMPOSITE = KeySchema(KeyAttribute("tenant"), KeyAttribute("n", "N"))
BLOB_SCHEMA = KeySchema(KeyAttribute("name"))

# -- strategies -------------------------------------------------------------------------

field_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda n: n != "id")
numbers = st.one_of(st.integers(-(10**30), 10**30),
                    st.decimals(allow_nan=False, allow_infinity=False, places=6,
                                min_value=Decimal("-1e12"), max_value=Decimal("1e12")))
scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=20), numbers, st.binary(max_size=20),
                    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                                 timezones=st.just(UTC)))
values = st.recursive(st.one_of(scalars, st.frozensets(st.text(min_size=1, max_size=5), min_size=1,
                                                         max_size=3)),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(field_names, inner, max_size=3)),
                      max_leaves=10)
key_texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
                    min_size=1, max_size=30).filter(lambda s: s not in (".", ".."))
versions = st.builds(Version, st.integers(0, 10**14), st.integers(0, 10**6),
                     st.sampled_from(["gcs:europe-west1", "dynamodb:eu-west-1", "cosmos:westeurope"]))


def stamped_doc(body: dict, wall: int, origin: str = "gcs:a", vector: dict | None = None) -> Record:
    return document(DOC_SCHEMA, body).stamped(Version(wall, 0, origin), vector)


# -- wire: pure round trips and name rules ------------------------------------------------

@given(key=key_texts, body=st.dictionaries(field_names, values, max_size=5), version=versions,
       epoch=st.integers(0, 1000), plain=st.none() | st.just("ab" * 32))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_document_round_trip_through_object_content_and_metadata(key, body, version, epoch, plain):
    record = document(DOC_SCHEMA, {**body, "id": key}).stamped(version, {"x:y": "0" * 15}, epoch=epoch)
    if plain:
        record = dataclasses.replace(record, meta=dataclasses.replace(record.meta, plain_hash=plain))
    name = wire.object_name(record.key, "document")
    content, content_type = wire.encode_content(record, "document")
    metadata = wire.encode_metadata(record.meta, content)
    assert content_type == "application/json"
    assert all(isinstance(v, str) for v in metadata.values())
    back = wire.stored_record(wire.key_of_name(name, "document", DOC_SCHEMA), content, metadata,
                              wire.md5_b64(content), "document", DOC_SCHEMA)
    assert back == record


@given(name=key_texts, data=st.binary(max_size=200), version=versions)
def test_blob_round_trip_keeps_raw_name_and_bytes(name, data, version):
    record = blob(name, data).stamped(version)
    object_name = wire.object_name(record.key, "blob")
    assert object_name == name                      # raw name, not the escaped key id
    content, _ = wire.encode_content(record, "blob")
    metadata = wire.encode_metadata(record.meta, content)
    back = wire.stored_record(wire.key_of_name(object_name, "blob", BLOB_SCHEMA), content,
                              metadata, wire.md5_b64(content), "blob", BLOB_SCHEMA)
    assert back == record


def test_composite_key_names_are_reversible():
    record = document(COMPOSITE, {"tenant": "a|b%c", "n": 42, "v": 1})
    name = wire.object_name(record.key, "document")
    assert wire.key_of_name(name, "document", COMPOSITE) == record.key


def test_tombstone_is_an_empty_object_flagged_in_metadata():
    tomb = tombstone_of(DOC_SCHEMA, RecordKey(("k",)), Version(5, 0, "gcs:a"))
    content, _ = wire.encode_content(tomb, "document")
    metadata = wire.encode_metadata(tomb.meta, content)
    assert content == b"" and metadata["mcrepl-t"] == "true"
    back = wire.stored_record(tomb.key, content, metadata, wire.EMPTY_MD5, "document", DOC_SCHEMA)
    assert back.tombstone and back.body == {"id": "k"}


@pytest.mark.parametrize("name, rule", [
    ("é" * 512, None),                                   # exactly 1024 UTF-8 bytes
    ("é" * 512 + "x", "name-too-long"),
    ("a" * 1025, "name-too-long"),
    ("line\nbreak", "bad-object-name"),
    ("carriage\rreturn", "bad-object-name"),
    (".", "bad-object-name"),
    ("..", "bad-object-name"),
    (".well-known/acme-challenge/token", "bad-object-name"),
    ("nul\x00byte", "bad-object-name"),
    ("./fine/../name", None),
])
def test_object_name_rules(name, rule):
    key = RecordKey((name,))
    if rule is None:
        assert wire.object_name(key, "blob") == name
    else:
        with pytest.raises(RecordError) as info:
            wire.object_name(key, "blob")
        assert info.value.rule == rule and info.value.field == "name"


def test_metadata_is_trusted_only_when_md5_matches_the_bytes_written():
    record = stamped_doc({"id": "k", "v": 1}, 10)
    content, _ = wire.encode_content(record, "document")
    metadata = wire.encode_metadata(record.meta, content)
    assert wire.trusted_meta(metadata, wire.md5_b64(content)) == record.meta
    # a native writer that carried our metadata over onto other bytes
    assert wire.trusted_meta(metadata, wire.md5_b64(b'{"id":"k","v":2}')) is None
    assert wire.trusted_meta(metadata, None) is None                 # composite objects
    tomb = tombstone_of(DOC_SCHEMA, record.key, Version(11, 0, "gcs:a"))
    tomb_md = wire.encode_metadata(tomb.meta, b"")
    assert wire.trusted_meta(tomb_md, wire.md5_b64(b"resurrected")) is None
    assert wire.decode_metadata({"mcrepl-v": "garbage"}) is None


def test_reformatted_native_rewrite_with_copied_metadata_keeps_valid_meta():
    """Same canonical body, other bytes: the md5 shortcut fails but the body hash proves it."""
    record = stamped_doc({"id": "k", "v": 1}, 10)
    content, _ = wire.encode_content(record, "document")
    metadata = wire.encode_metadata(record.meta, content)
    pretty = json.dumps({"v": 1, "id": "k"}, indent=2).encode()
    assert wire.stored_record(record.key, pretty, metadata, wire.md5_b64(pretty), "document",
                              DOC_SCHEMA).meta == record.meta
    changed = b'{"id":"k","v":2}'
    assert wire.stored_record(record.key, changed, metadata, wire.md5_b64(changed), "document",
                              DOC_SCHEMA).meta is None


# -- cursor and scan: pure -----------------------------------------------------------------

@given(st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                               min_size=1, max_size=20),
                       st.tuples(st.integers(1, 2**62), st.booleans()), max_size=40))
def test_manifest_round_trips_through_its_compact_encoding(entries):
    manifest = Manifest()
    for name, (gen, tomb) in entries.items():
        manifest.set(name, gen, tomb)
    back, at, full = read_cursor(json.loads(json.dumps(make_cursor(manifest, "x"))))
    assert at == "x" and not full
    assert {n: (back.generation(n), back.is_tombstone(n)) for n in entries} == entries
    assert len(back) == len(entries)
    assert list(back.names_after(None)) == sorted(entries)


def test_manifest_encoding_is_smaller_than_plain_json():
    manifest = Manifest({f"orders/2026/11/{i:06d}.json": 1795612286028537 + i * 37 for i in range(2000)})
    plain = len(json.dumps({n: manifest.generation(n) for n in manifest.names_after(None)}))
    compact = len(json.dumps(make_cursor(manifest)))
    assert compact * 4 < plain


def test_corrupt_or_foreign_cursor_is_a_clear_error():
    with pytest.raises(AdapterError, match="corrupt"):
        read_cursor({"v": 1, "m": "not-base64-zlib"})
    with pytest.raises(AdapterError, match="not a listing capture cursor"):
        read_cursor({"pos": 3})


def test_scan_reports_changes_and_gaps_across_pages():
    manifest = Manifest({"a": 1, "b": 2, "c": 3, "e": 5})
    listing = [Listed("a", 1), Listed("b", 20), Listed("d", 4), Listed("e", 5), Listed("f", 6)]
    page1 = scan(manifest, iter(listing), None, limit=2)
    assert [(e.name, e.listed is None) for e in page1.events] == [("b", False), ("c", True)]
    assert page1.more and page1.at == "c"
    rest = [x for x in listing if x.name >= page1.at]     # start_offset is inclusive
    page2 = scan(manifest, iter(rest), page1.at, limit=10)
    assert [(e.name, e.listed is None) for e in page2.events] == [("d", False), ("f", False)]
    assert not page2.more and page2.at is None


def test_scan_reports_trailing_deletes_when_listing_ends():
    manifest = Manifest({"a": 1, "y": 2, "z": 3})
    page = scan(manifest, iter([Listed("a", 1)]), None, limit=1)
    assert [e.name for e in page.events] == ["y"] and page.more
    page = scan(manifest, iter([]), page.at, limit=5)
    assert [e.name for e in page.events] == ["z"] and not page.more


# -- error translation with real google-api-core / google-auth / requests objects -----------

def _response(status: int, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    return response


def test_429_is_throttling_and_honours_retry_after():
    exc = api_exceptions.from_http_status(429, "rate", response=_response(429, {"Retry-After": "7"}))
    err = translate(exc, operation="upload", key="k", bucket="b")
    assert isinstance(err, ThrottledError) and err.retryable and err.retry_after == 7.0
    assert err.key == "k" and err.provider == "gcs"
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    exc = api_exceptions.from_http_status(429, "rate", response=_response(429, {"Retry-After": later}))
    assert 20 < translate(exc).retry_after <= 31
    assert translate(api_exceptions.TooManyRequests("no header")).retry_after is None


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_server_errors_are_retryable_unavailable(status):
    err = translate(api_exceptions.from_http_status(status, "boom"))
    assert isinstance(err, UnavailableError) and err.retryable


def test_connection_errors_and_exhausted_library_retries_are_unavailable():
    assert isinstance(translate(requests.ConnectionError("refused")), UnavailableError)
    assert isinstance(translate(requests.ReadTimeout("slow")), UnavailableError)
    wrapped = api_exceptions.RetryError("deadline", api_exceptions.ServiceUnavailable("x"))
    assert isinstance(translate(wrapped), UnavailableError)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_never_echo_the_service_text(status):
    exc = api_exceptions.from_http_status(status, "token ya29.SECRET-TOKEN rejected")
    err = translate(exc, bucket="b")
    assert isinstance(err, CredentialsError) and not err.retryable
    assert "SECRET" not in str(err) and "fix" in str(err)


def test_missing_adc_and_refresh_failures_are_credential_errors():
    err = translate(auth_exceptions.DefaultCredentialsError("no ADC"))
    assert isinstance(err, CredentialsError) and "application-default login" in str(err)
    assert isinstance(translate(auth_exceptions.RefreshError("expired")), CredentialsError)


def test_404_means_the_bucket_unless_the_call_was_about_one_object():
    err = translate(api_exceptions.NotFound("nope"), bucket="mybucket")
    assert isinstance(err, NotFoundError) and not isinstance(err, ObjectMissing)
    assert "mybucket" in str(err) and "fix" in str(err)
    assert isinstance(translate(api_exceptions.NotFound("nope"), object_call=True), ObjectMissing)


def test_412_is_a_precondition_failure_not_retried():
    err = translate(api_exceptions.PreconditionFailed("gen"))
    assert isinstance(err, PreconditionFailed) and not err.retryable


# -- against fake-gcs-server ---------------------------------------------------------------

@pytest.fixture
def gcs_endpoint(local_stack) -> str:
    return local_stack.endpoint("gcs")


@pytest.fixture
def make_adapter(gcs_endpoint) -> Iterator[Callable[..., GCSAdapter]]:
    """Adapters on fresh buckets (``bucket=`` reuses one: a second process on the same data)."""
    made: list[GCSAdapter] = []

    def make(kind: str = "document", schema: KeySchema = DOC_SCHEMA, bucket: str | None = None,
             endpoint: str | None = None, policy: RetryPolicy | None = None,
             ready: bool = True) -> GCSAdapter:
        options = GCSSettings(auth="anonymous").model_dump() | {"endpoint": endpoint or gcs_endpoint,
                                                               "local": True}
        target = ReplicaTarget("gcs:europe-west1", "gcs", "europe-west1", "orders", kind, schema,
                               bucket or f"t-{uuid.uuid4().hex[:16]}", options)
        adapter = GCSAdapter(target, policy) if policy else GCSAdapter(target)
        if ready:
            adapter.ensure_ready()
            made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.drop()
        adapter.close()


def drain(adapter: GCSAdapter, cursor: dict | None, limit: int = 500) -> tuple[list, dict]:
    """All pages of a capture, the cursor JSON-round-tripped between pages (as the engine stores it)."""
    changes: list = []
    while True:
        page = adapter.capture_changes(cursor, limit)
        changes += page.changes
        cursor = json.loads(json.dumps(page.cursor))
        if not page.more:
            return changes, cursor


def test_conditional_apply_newer_stale_replay(make_adapter):
    a = make_adapter()
    v1 = stamped_doc({"id": "k", "v": 1}, 100)
    v2 = stamped_doc({"id": "k", "v": 2}, 200)
    assert apply_one(a, v1).outcome is ApplyOutcome.APPLIED
    assert apply_one(a, v1).outcome is ApplyOutcome.REPLAYED
    assert apply_one(a, v2).outcome is ApplyOutcome.APPLIED
    stale = apply_one(a, v1)
    assert stale.outcome is ApplyOutcome.STALE and stale.existing.meta == v2.meta
    assert a.read(v2.key) == v2


def test_concurrent_versions_report_the_conflict_with_the_stored_body(make_adapter):
    a = make_adapter()
    ours = stamped_doc({"id": "k", "v": "ours"}, 100, "gcs:a")
    theirs = stamped_doc({"id": "k", "v": "theirs"}, 150, "cosmos:b")
    apply_one(a, ours)
    result = apply_one(a, theirs)
    assert result.outcome is ApplyOutcome.CONFLICT
    assert result.conflict_with == ours.meta and result.existing == ours, "the body is read for the resolver"
    assert a.read(ours.key) == ours, "a concurrent version is never overwritten"


def test_racing_writers_on_one_key_end_with_the_newest(make_adapter):
    a = make_adapter()
    writers = [make_adapter(bucket=a.target.resource, ready=False) for _ in range(6)]
    # successive versions of one writer's origin: each has seen the ones before it
    records = [stamped_doc({"id": "hot", "w": i}, 1000 + i, "gcs:w") for i in range(len(writers))]
    start = threading.Barrier(len(writers))
    outcomes: list[ApplyOutcome] = []

    def run(adapter: GCSAdapter, record: Record) -> None:
        start.wait()
        outcomes.append(apply_one(adapter, record).outcome)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(writers, records)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.close()
    assert a.read(records[-1].key) == records[-1]
    assert outcomes.count(ApplyOutcome.APPLIED) >= 1 and len(outcomes) == len(records)


def test_bad_names_are_rejected_and_the_rest_of_the_batch_lands(make_adapter):
    a = make_adapter(kind="blob", schema=BLOB_SCHEMA)
    good = blob("dir/a|b%c.bin", b"\x00\x01").stamped(Version(1, 0, "gcs:a"))
    long = blob("x" * 1025, b"1").stamped(Version(1, 0, "gcs:a"))
    acme = blob(".well-known/acme-challenge/t", b"1").stamped(Version(1, 0, "gcs:a"))
    results = a.apply_batch([long, good, acme])
    assert [r.outcome for r in results] == [ApplyOutcome.REJECTED, ApplyOutcome.APPLIED,
                                            ApplyOutcome.REJECTED]
    assert results[0].error.rule == "name-too-long" and results[0].error.dataset == "orders"
    assert results[2].error.rule == "bad-object-name"
    assert a.read(good.key) == good
    assert [d.key_id for d in a.list_digests()] == [good.key.id]


def test_native_rewrite_carrying_our_metadata_is_seen_as_native(make_adapter):
    a = make_adapter()
    v1 = stamped_doc({"id": "k", "v": 1}, 100)
    apply_one(a, v1)
    stored = a.io.get("k")
    a.io.upload("k", b'{"id":"k","v":"edited"}', "application/json", stored.metadata)
    assert a.read(v1.key).meta is None
    assert [d.version for d in a.list_digests()] == [None]
    older = stamped_doc({"id": "k", "v": 0}, 50)
    assert apply_one(a, older).outcome is ApplyOutcome.APPLIED    # the native edit has no version


def test_capture_pages_survive_cursor_save_and_restart(make_adapter):
    a = make_adapter()
    a.apply_batch([stamped_doc({"id": f"m{i}", "v": i}, 100 + i) for i in range(5)])
    a.write_native([document(DOC_SCHEMA, {"id": f"n{i}", "v": i}) for i in range(4)])
    first = a.capture_changes(None, limit=3)
    assert len(first.changes) == 3 and first.more and first.scanned
    restarted = make_adapter(bucket=a.target.resource, ready=False)      # a new process
    rest, cursor = drain(restarted, json.loads(json.dumps(first.cursor)), limit=3)
    seen = [c.record.key.id for c in first.changes + rest]
    assert sorted(seen) == sorted([f"m{i}" for i in range(5)] + [f"n{i}" for i in range(4)])
    assert len(seen) == len(set(seen))                                   # exactly once
    by_key = {c.record.key.id: c for c in first.changes + rest}
    assert by_key["m2"].record.meta is not None and by_key["n1"].record.meta is None
    assert by_key["n1"].record.body == {"id": "n1", "v": 1} and by_key["n1"].observed_ms
    assert drain(restarted, cursor)[0] == []                             # nothing new


def test_replaying_an_unacknowledged_page_repeats_it(make_adapter):
    a = make_adapter()
    a.write_native([document(DOC_SCHEMA, {"id": f"k{i}"}) for i in range(4)])
    first = a.capture_changes(None, limit=2)
    again = a.capture_changes(None, limit=2)
    assert [c.record.key for c in again.changes] == [c.record.key for c in first.changes]


def test_capture_sees_native_overwrite_and_native_delete(make_adapter):
    a = make_adapter()
    v1 = stamped_doc({"id": "k", "v": 1}, 100)
    apply_one(a, v1)
    a.write_native([document(DOC_SCHEMA, {"id": "gone", "v": 0})])
    cursor = a.current_cursor()
    assert drain(a, cursor)[0] == []
    a.write_native([document(DOC_SCHEMA, {"id": "k", "v": "native"})])
    a.delete_native([RecordKey(("gone",))])
    changes, cursor = drain(a, cursor)
    by_key = {c.record.key.id: c for c in changes}
    assert set(by_key) == {"k", "gone"}
    assert by_key["k"].record.meta is None and by_key["k"].record.body == {"id": "k", "v": "native"}
    assert by_key["gone"].native_delete and by_key["gone"].record.body is None
    assert drain(a, cursor)[0] == []


def test_changes_made_during_a_pass_are_captured_once(make_adapter):
    a = make_adapter()
    a.write_native([document(DOC_SCHEMA, {"id": k}) for k in ("b", "d", "f")])
    cursor = a.current_cursor()
    a.write_native([document(DOC_SCHEMA, {"id": "b", "v": 1}), document(DOC_SCHEMA, {"id": "f", "v": 1})])
    page = a.capture_changes(cursor, limit=1)                            # handles "b"
    assert [c.record.key.id for c in page.changes] == ["b"] and page.more
    a.write_native([document(DOC_SCHEMA, {"id": "a"}),                   # behind the pass: next pass
                    document(DOC_SCHEMA, {"id": "e"})])                  # ahead of it: this pass
    a.delete_native([RecordKey(("d",))])
    rest, cursor = drain(a, page.cursor, limit=1)
    assert [(c.record.key.id, c.native_delete) for c in rest] == [("d", True), ("e", False), ("f", False)]
    assert [c.record.key.id for c in drain(a, cursor)[0]] == ["a"]


def test_tombstones_replicate_block_stale_writes_and_are_captured(make_adapter):
    a = make_adapter()
    v1 = stamped_doc({"id": "k", "v": 1}, 100)
    apply_one(a, v1)
    cursor = a.current_cursor()
    tomb = tombstone_of(DOC_SCHEMA, v1.key, Version(200, 0, "gcs:a"), v1.meta.vector)
    assert apply_one(a, tomb).outcome is ApplyOutcome.APPLIED
    stored = a.io.get("k")
    assert stored.size == 0 and stored.metadata["mcrepl-t"] == "true"
    assert a.read(v1.key) == tomb
    assert apply_one(a, v1).outcome is ApplyOutcome.STALE                # no resurrection
    changes, _ = drain(a, cursor)
    assert [c.record for c in changes] == [tomb] and not changes[0].native_delete


def test_purge_removes_only_old_tombstones_and_capture_ignores_it(make_adapter):
    a = make_adapter()
    old = tombstone_of(DOC_SCHEMA, RecordKey(("old",)), Version(1_000, 0, "gcs:a"))
    new = tombstone_of(DOC_SCHEMA, RecordKey(("new",)), Version(9_000, 0, "gcs:a"))
    live = stamped_doc({"id": "live"}, 500)
    a.apply_batch([old, new, live])
    cursor = a.current_cursor()
    assert a.purge_tombstones(5_000) == 1
    assert a.read(old.key) is None and a.read(new.key) == new and a.read(live.key) == live
    assert drain(a, cursor)[0] == []                                     # a purge is not a delete
    assert a.purge_tombstones(5_000) == 0


def test_digests_read_metadata_only_for_mcrepl_objects(make_adapter):
    a = make_adapter()
    records = [stamped_doc({"id": f"k{i}", "v": i}, 100 + i) for i in range(6)]
    a.apply_batch(records)
    a.write_native([document(DOC_SCHEMA, {"id": "native", "v": 1})])
    downloads: list[str] = []

    def count(response: requests.Response, *args: object, **kwargs: object) -> None:
        if "alt=media" in response.url:
            downloads.append(response.url)

    a.io.client._http.hooks["response"].append(count)                   # observe, don't alter
    digests = {d.key_id: d for d in a.list_digests()}
    assert len(downloads) == 1 and "native" in downloads[0]
    for r in records:
        assert digests[r.key.id].version == r.meta.version.token
        assert digests[r.key.id].content_hash == r.meta.content_hash
    native = document(DOC_SCHEMA, {"id": "native", "v": 1})
    assert digests["native"].version is None
    assert digests["native"].content_hash == native.digest_hash(False)


def test_a_listing_of_many_pages_yields_each_object_once_in_name_order_and_stops_early(make_adapter,
                                                                                     monkeypatch):
    """The next listing page is requested while the current one is worked through: every object
    still comes exactly once, in name order, ranges included, and a caller that stops early
    leaves no request running."""
    from mcrepl.adapters.gcs import bucket_io

    monkeypatch.setattr(bucket_io, "LIST_PAGE_SIZE", 3)
    a = make_adapter()
    records = [stamped_doc({"id": f"k{i:02d}", "v": i}, 100 + i) for i in range(11)]
    a.apply_batch(records)
    requests_made: list[str] = []
    a.io.client._http.hooks["response"].append(lambda r, *args, **kw: requests_made.append(r.url))
    names = [o.name for o in a.io.list_range(None, None)]
    assert names == sorted(names) and len(names) == 11 and len(set(names)) == 11
    assert len(requests_made) == 4, "11 objects, 3 a page: four requests"
    assert [d.key_id for d in a.list_digests()] == [f"k{i:02d}" for i in range(11)]
    ranged = [o.name for o in a.io.list_range(names[2], names[9])]
    assert ranged == names[2:9]
    listing = a.io.list_range(None, None)
    first = next(listing)
    listing.close()                                   # stops with the next page perhaps in flight
    assert first.name == names[0]


def test_apply_decides_from_metadata_without_downloading(make_adapter):
    a = make_adapter()
    a.apply_batch([stamped_doc({"id": f"k{i}", "v": i}, 100) for i in range(4)])
    downloads: list[str] = []
    a.io.client._http.hooks["response"].append(
        lambda response, *args, **kw: downloads.append(response.url) if "alt=media" in response.url else None)
    results = a.apply_batch([stamped_doc({"id": f"k{i}", "v": -i}, 200) for i in range(4)])
    assert {r.outcome for r in results} == {ApplyOutcome.APPLIED} and downloads == []


def _count_requests(adapter: GCSAdapter) -> list[str]:
    """Every HTTP request the adapter's client makes from now on, as ``METHOD url``."""
    seen: list[str] = []
    adapter.io.client._http.hooks["response"].append(
        lambda response, *args, **kw: seen.append(f"{response.request.method} {response.url}"))
    return seen


def test_initial_and_repeat_applies_cost_one_request_per_record(make_adapter):
    a = make_adapter()
    requests_made = _count_requests(a)
    results = a.apply_batch([stamped_doc({"id": f"k{i}", "v": i}, 100) for i in range(6)])
    assert {r.outcome for r in results} == {ApplyOutcome.APPLIED}
    assert len(requests_made) == 6 and all(r.startswith("POST") for r in requests_made)   # create-only uploads
    requests_made.clear()
    newer = [stamped_doc({"id": f"k{i}", "v": -i}, 200) for i in range(6)]
    assert {r.outcome for r in a.apply_batch(newer)} == {ApplyOutcome.APPLIED}
    assert len(requests_made) == 6 and all("ifGenerationMatch" in r for r in requests_made)
    assert [a.read(r.key) for r in newer] == newer


def test_create_first_racing_a_concurrent_writer_ends_newest_wins(make_adapter):
    """Keys we never saw are tried create-only first; when another writer created one
    meanwhile, the 412 sends us to read and decide: older loses, newer wins."""
    a = make_adapter()
    other = make_adapter(bucket=a.target.resource, ready=False)
    a.apply_batch([stamped_doc({"id": f"warm{i}", "v": i}, 100) for i in range(3)])   # expect absent
    newest = stamped_doc({"id": "k", "v": "other"}, 300, "gcs:b")
    assert apply_one(other, newest).outcome is ApplyOutcome.APPLIED
    stale = apply_one(a, stamped_doc({"id": "k", "v": "ours"}, 200, "gcs:b"))
    assert stale.outcome is ApplyOutcome.STALE and stale.existing.meta == newest.meta
    assert a.read(newest.key) == newest
    later = stamped_doc({"id": "k", "v": "later"}, 400, "gcs:b")
    assert apply_one(a, later).outcome is ApplyOutcome.APPLIED and other.read(later.key) == later
    other.close()


def test_remembered_generation_goes_stale_after_a_native_or_foreign_write(make_adapter):
    a = make_adapter()
    other = make_adapter(bucket=a.target.resource, ready=False)
    v1, v2, v3 = (stamped_doc({"id": "k", "v": i}, 100 * i) for i in (1, 2, 3))
    apply_one(a, v1)                                   # `a` now remembers v1's generation
    apply_one(other, v3)
    assert apply_one(a, v2).outcome is ApplyOutcome.STALE
    assert a.read(v3.key) == v3
    a.io.upload("k", b'{"id":"k","v":"native"}', "application/json", None)   # a native edit
    v4 = stamped_doc({"id": "k", "v": 4}, 400)
    assert apply_one(a, v4).outcome is ApplyOutcome.APPLIED and a.read(v4.key) == v4
    other.close()


def test_missing_bucket_names_the_bucket_and_the_fix(make_adapter):
    a = make_adapter(ready=False)
    with pytest.raises(NotFoundError) as info:
        apply_one(a, stamped_doc({"id": "k"}, 1))
    assert a.target.resource in str(info.value) and "fix" in str(info.value)
    with pytest.raises(NotFoundError):
        a.capture_changes(None)
    a.close()


def test_unreachable_endpoint_fails_within_the_retry_deadline(make_adapter):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                                        # nothing listens here now
    a = make_adapter(endpoint=f"http://127.0.0.1:{port}", policy=RetryPolicy(deadline_s=1.0),
                     ready=False)
    started = time.monotonic()
    with pytest.raises(UnavailableError):
        a.read(RecordKey(("k",)))
    # the library's own 120 s retry is off: our deadline is what bounds the call
    assert time.monotonic() - started < 30
    a.close()


def test_ensure_ready_is_idempotent_and_drop_removes_everything(make_adapter):
    a = make_adapter()
    a.ensure_ready()
    a.apply_batch([stamped_doc({"id": "k"}, 1)])
    a.drop()
    with pytest.raises(NotFoundError):
        a.capture_changes(None)
    a.ensure_ready()                                                     # re-creatable; fixture drops it
    assert a.capture_changes(None).changes == []


def test_foreign_objects_are_reported_once_by_capture_and_visible_to_verify(make_adapter):
    a = make_adapter(schema=COMPOSITE)
    good = document(COMPOSITE, {"tenant": "t", "n": 1}).stamped(Version(1, 0, "gcs:a"))
    apply_one(a, good)
    a.io.upload("no-sort-key", b'{"x":1}', "application/json", None)     # name is not a key here
    a.io.upload("t|2", b"not json", "text/plain", None)                  # key, but not a document
    page = a.capture_changes(None, 500)
    assert [c.record for c in page.changes] == [good]
    assert sorted((e.key, e.rule) for e in page.rejected) == [("no-sort-key", "bad-key"), ("t|2", "bad-json")]
    assert all(e.dataset == a.target.dataset and e.target == a.target.replica for e in page.rejected)
    after = a.capture_changes(json.loads(json.dumps(page.cursor)), 500)
    assert after.changes == [] and after.rejected == [], "passed over once, not every pass"
    digests = {d.key_id: d.version for d in a.list_digests()}
    assert digests == {good.key.id: good.meta.version.token, "no-sort-key": None, "t|2": None}
