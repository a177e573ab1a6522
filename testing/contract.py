# mypy: disable-error-code="union-attr, index, call-overload"
# (assertions on optional results: a None fails the test at the attribute, which is the report wanted)
"""The adapter contract suite, shipped: what every backend guarantees, for any adapter to run.

As fsspec ships its abstract tests for s3fs and gcsfs, mcrepl ships these for every
adapter, its own and third parties' alike. Subclass :class:`AdapterContract` in a test
module of your package and override one fixture, ``open_store``::

    import pytest
    from mcrepl.testing import AdapterContract, StoreFactory

    class TestMyStore(AdapterContract):
        @pytest.fixture
        def open_store(self, my_emulator) -> StoreFactory:
            ...   # returns open_store(kind="document", key_schema=None, name=None) -> ReplicaAdapter

``open_store`` opens an empty store in a namespace of its own (``name=None``) or a second
adapter on an existing one (``name=store.target.resource``), creates it
(``ensure_ready``), and drops every store it opened when the test ends
(:func:`dropping` does that part). Override ``rejections`` to say which of
:data:`BAD_INPUTS` (and ``"name-1200-bytes"``) your store refuses and with which
``RecordError.rule``; everything not listed must round-trip unchanged.

Nothing here knows which backend it runs on: where a store cannot do something by
nature, a test skips by capability and says which flag (``capture_sees_deletes``,
``holds_sets``) and why. Test ids read ``TestMyStore::test_replay_is_noop``.
"""

from __future__ import annotations

import pickle
import random
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping, Protocol

import pytest
from hypothesis import HealthCheck, assume, given, settings

from mcrepl.adapters import adapter_spec
from mcrepl.adapters.base import (ApplyOutcome, ChangePage, KeySchema, Record, RecordKey, ReplicaAdapter, Version,
                                  blob, tombstone_of)
from mcrepl.adapters.base.digest_ranges import DigestRange, list_part, ranges_of
from mcrepl.adapters.base.interface import DatasetKind

from .records import ORIGIN, SCHEMA, bodies, doc, stamped, version
from .seeding import NativeWriter


class StoreFactory(Protocol):
    """What ``open_store`` returns: opens (and later drops) stores on the backend under test."""

    def __call__(self, *, kind: DatasetKind = "document", key_schema: KeySchema | None = None,
                 name: str | None = None) -> ReplicaAdapter: ...


@contextmanager
def dropping(open_one: Callable[..., ReplicaAdapter]) -> Iterator[StoreFactory]:
    """Wrap a function that opens one store into a factory that drops what it opened afterwards.

    Stores reopened by ``name`` are closed but not dropped twice.
    """
    opened: list[tuple[ReplicaAdapter, bool]] = []

    def factory(*, kind: DatasetKind = "document", key_schema: KeySchema | None = None,
                name: str | None = None) -> ReplicaAdapter:
        adapter = open_one(kind=kind, key_schema=key_schema, name=name)
        adapter.ensure_ready()
        opened.append((adapter, name is None))
        return adapter

    yield factory
    for adapter, owned in reversed(opened):
        try:
            if owned:
                adapter.drop()
        finally:
            adapter.close()


def drain(adapter: ReplicaAdapter, cursor: dict | None, limit: int = 500) -> tuple[list, dict]:
    """All changes after ``cursor`` and the cursor after them."""
    changes = []
    while True:
        page = adapter.capture_changes(cursor, limit=limit)
        changes += page.changes
        cursor = page.cursor
        if not page.more:
            return changes, cursor  # type: ignore[return-value]


def seed(store: ReplicaAdapter) -> NativeWriter:
    """``store`` as a :class:`NativeWriter`, or skip: the test needs writes made as an application makes them."""
    if not isinstance(store, NativeWriter):
        pytest.skip("the adapter does not implement mcrepl.testing.seeding.NativeWriter, so this test cannot "
                    "make native (application) writes")
    return store


def _holds_set(value: Any) -> bool:
    if isinstance(value, frozenset):
        return True
    if isinstance(value, Mapping):
        return any(_holds_set(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_set(v) for v in value)
    return False


NESTED: dict = {}
_cursor = NESTED
for _ in range(33):
    _cursor["n"] = {}
    _cursor = _cursor["n"]

#: values some stores refuse; a backend's ``rejections`` fixture names the ones it refuses
BAD_INPUTS: dict[str, Any] = {
    "39-digit-number": Decimal("1" * 39),
    "number-out-of-range": Decimal("1E+200"),
    "empty-set": frozenset(),
    "nesting-33-levels": NESTED,
    "item-450kb": "x" * 450_000,
    "item-2.1mb": "x" * 2_100_000,
}


@pytest.mark.contract
class AdapterContract:
    """The contract: every test runs against the store ``open_store`` opens."""

    @pytest.fixture
    def open_store(self) -> StoreFactory:
        """Override: the factory of stores on your backend (see the module docstring)."""
        pytest.fail("override the open_store fixture in your AdapterContract subclass")

    @pytest.fixture
    def store(self, open_store: StoreFactory) -> ReplicaAdapter:
        """A fresh document store with partition key ``pk`` (string)."""
        return open_store()

    @pytest.fixture
    def rejections(self) -> Mapping[str, str]:
        """Override: case of :data:`BAD_INPUTS` (or ``name-1200-bytes``) → the rule your store rejects it with."""
        return {}

    # --- the adapter's declaration -------------------------------------------------------

    def test_capabilities_are_what_the_spec_declares(self, store: ReplicaAdapter) -> None:
        """``validate`` acts on the spec's capabilities without opening a store: they must agree."""
        spec = adapter_spec(store.target.provider)
        assert spec.capabilities_for(store.target.options) == store.capabilities

    def test_settings_model_reads_the_target_options(self, store: ReplicaAdapter) -> None:
        spec = adapter_spec(store.target.provider)
        settings = spec.settings.from_options(store.target.options)
        assert settings.endpoint == store.target.options.get("endpoint")

    # --- round trips ---------------------------------------------------------------------------

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
    @given(body=bodies)
    def test_round_trip_is_lossless(self, store: ReplicaAdapter, body: dict) -> None:
        assume(store.capabilities.holds_sets or not _holds_set(body))
        rec = stamped(f"k-{random.getrandbits(40)}", **body)
        assert store.apply_batch([rec])[0].outcome is ApplyOutcome.APPLIED
        back = store.read(rec.key)
        assert back is not None
        assert back.body == rec.body
        assert back.meta == rec.meta

    @pytest.mark.parametrize("value", [
        2**53 + 1, -(2**63), Decimal("0.1"), Decimal("1234567890.123456789012345678"),
        Decimal("1E+100"), Decimal("-1E-100"), b"\x00\xff", frozenset({1, Decimal("2.5")}),
        frozenset({b"a", b"b"}), {"$mcrepl": "num", "v": "1"}, "", [None, True, {"a": []}],
    ], ids=["2^53+1", "int64-min", "0.1", "28-digit-decimal", "1e100", "-1e-100", "bytes", "number-set",
            "binary-set", "tag-lookalike-map", "empty-string", "mixed-list"])
    def test_edge_values_round_trip(self, store: ReplicaAdapter, value: object) -> None:
        if isinstance(value, frozenset) and not store.capabilities.holds_sets:
            pytest.skip("capabilities.holds_sets is false: this store cannot hold sets")
        rec = stamped("edge", version(), None, value=value)
        assert store.apply_batch([rec])[0].outcome is ApplyOutcome.APPLIED
        assert store.read(rec.key).body == rec.body

    @pytest.mark.parametrize("pk", ["a/b", "a\\b", "a?b", "a#b", "50%", "a|b", "ünïcødé ✓", " spaced "])
    def test_awkward_keys_round_trip(self, store: ReplicaAdapter, pk: str) -> None:
        rec = stamped(pk, n=1)
        assert store.apply_batch([rec])[0].outcome is ApplyOutcome.APPLIED
        back = store.read(rec.key)
        assert back is not None and back.key == rec.key and back.body == rec.body
        assert rec.key.id in {d.key_id for d in store.list_digests()}

    def test_blob_round_trip(self, open_store: StoreFactory) -> None:
        store = open_store(kind="blob")
        data = bytes(range(256)) * 40
        rec = blob("invoices/2026/11/inv-1.pdf", data).stamped(version())
        assert store.apply_batch([rec])[0].outcome is ApplyOutcome.APPLIED
        back = store.read(rec.key)
        assert back.body == data and back.meta == rec.meta

    def test_composite_numeric_key(self, open_store: StoreFactory) -> None:
        from mcrepl.adapters.base import KeyAttribute, KeySchema, document
        schema = KeySchema(KeyAttribute("tenant"), KeyAttribute("seq", "N"))
        store = open_store(key_schema=schema)
        rec = document(schema, {"tenant": "t|1", "seq": 42, "x": "y"}).stamped(version())
        assert store.apply_batch([rec])[0].outcome is ApplyOutcome.APPLIED
        assert store.read(RecordKey(("t|1", 42))).body == rec.body

    # --- conditional apply ---------------------------------------------------------------------

    def test_newer_version_wins(self, store: ReplicaAdapter) -> None:
        old, new = stamped("k", version(), n=1), stamped("k", version(), n=2)
        assert [r.outcome for r in store.apply_batch([old])] == [ApplyOutcome.APPLIED]
        assert [r.outcome for r in store.apply_batch([new])] == [ApplyOutcome.APPLIED]
        assert store.read(new.key).body["n"] == 2

    def test_stale_write_is_noop(self, store: ReplicaAdapter) -> None:
        old, new = stamped("k", version(), n=1), stamped("k", version(), n=2)
        store.apply_batch([new])
        assert store.apply_batch([old])[0].outcome is ApplyOutcome.STALE
        assert store.read(new.key).meta == new.meta

    def test_replay_is_noop(self, store: ReplicaAdapter) -> None:
        rec = stamped("k", n=1)
        outcomes = [store.apply_batch([rec])[0].outcome for _ in range(3)]
        assert outcomes == [ApplyOutcome.APPLIED, ApplyOutcome.REPLAYED, ApplyOutcome.REPLAYED]

    def test_out_of_order_delivery_converges(self, store: ReplicaAdapter) -> None:
        history = [stamped(f"k{i % 5}", n=i) for i in range(25)]
        latest = {r.key: r for r in history}
        shuffled = history * 2
        random.Random(7).shuffle(shuffled)
        for i in range(0, len(shuffled), 10):
            store.apply_batch(shuffled[i:i + 10])
        for key, rec in latest.items():
            assert store.read(key).meta == rec.meta

    def test_a_concurrent_version_is_reported_and_never_overwritten(self, store: ReplicaAdapter) -> None:
        """A version the incoming one has not seen stays put, replay after replay; one that saw both lands.

        The incoming vector names every origin the writer knows of (an empty token: nothing seen
        from it), as the engine's writer pads it, so even a store that checks the vector inside
        its own condition expression (DynamoDB) sees the conflict.
        """
        a = stamped("k", Version(100, 0, "dynamodb:eu-west-1"), side="a")
        b = stamped("k", Version(200, 0, "cosmos:westeurope"), {"dynamodb:eu-west-1": ""}, side="b")
        store.apply_batch([a])
        for _ in range(2):                                   # a replayed batch meets the same conflict
            result = store.apply_batch([b])[0]
            assert result.outcome is ApplyOutcome.CONFLICT
            assert result.conflict_with is not None and result.conflict_with.version == a.meta.version
            assert store.read(a.key).meta.version == a.meta.version, "nothing was written"
        both = {**a.meta.vector, **{o: t for o, t in b.meta.vector.items() if t}}
        settled = stamped("k", Version(300, 0, "cosmos:westeurope"), both, side="settled")
        (landed,) = store.apply_batch([settled])
        assert landed.outcome is ApplyOutcome.APPLIED and landed.conflict_with is None
        assert store.read(a.key).body["side"] == "settled"
        older_succession = stamped("k", Version(250, 0, "cosmos:westeurope"), dict(b.meta.vector), side="old")
        assert store.apply_batch([older_succession])[0].outcome is ApplyOutcome.STALE

    def test_a_version_from_an_origin_the_incoming_vector_does_not_name_is_a_conflict(
            self, store: ReplicaAdapter) -> None:
        """Without the writer's padding too: the store decides by the whole stored vector.

        A demoted primary's write recovered into the log can meet the new primary's own later
        write to the key before the log knows that write's origin; overwriting it there lost
        an acknowledged delete (the failback drill found it). Newer or older, it is reported.
        """
        held = stamped("k", Version(200, 0, "dynamodb:us-east-1/app"), side="held")
        store.apply_batch([held])
        for at in (Version(100, 0, "dynamodb:eu-west-1/app"), Version(300, 0, "dynamodb:eu-west-1/app")):
            result = store.apply_batch([stamped("k", at, side="recovered")])[0]
            assert result.outcome is ApplyOutcome.CONFLICT, at
            assert result.conflict_with is not None and result.conflict_with.version == held.meta.version
            assert store.read(held.key).meta.version == held.meta.version, "nothing was written"
        successor = stamped("k", Version(400, 0, "dynamodb:eu-west-1/app"), {**held.meta.vector}, side="next")
        assert store.apply_batch([successor])[0].outcome is ApplyOutcome.APPLIED, "a successor over more origins lands"
        assert store.read(held.key).body["side"] == "next"

    # --- batches: every record decided on its own, whatever the store sends in one request -------

    def test_a_conflict_inside_a_batch_is_decided_alone(self, store: ReplicaAdapter) -> None:
        """One concurrent version among fresh records: it is reported and not written, the rest land.

        A store that applies a batch in one transaction must not let one failed condition
        cost the others their write, nor write the concurrent one.
        """
        a = stamped("k", Version(100, 0, "dynamodb:eu-west-1"), side="a")
        store.apply_batch([a])
        b = stamped("k", Version(200, 0, "cosmos:westeurope"), {"dynamodb:eu-west-1": ""}, side="b")
        fresh = [stamped(f"f{i}", n=i) for i in range(6)]
        batch = [*fresh[:3], b, *fresh[3:]]
        results = store.apply_batch(batch)
        assert [r.key for r in results] == [r.key for r in batch]
        assert [r.outcome for r in results] == [ApplyOutcome.APPLIED] * 3 + [ApplyOutcome.CONFLICT] + \
            [ApplyOutcome.APPLIED] * 3
        assert results[3].conflict_with is not None and results[3].conflict_with.version == a.meta.version
        assert store.read(a.key).meta.version == a.meta.version, "the concurrent version was not written"
        assert [store.read(r.key).meta for r in fresh] == [r.meta for r in fresh]

    def test_a_replayed_batch_changes_nothing_and_says_so(self, store: ReplicaAdapter) -> None:
        """A committed batch sent again (a crash before the lane's commit) is all replays."""
        batch = [stamped(f"r{i}", n=i) for i in range(12)]
        assert {r.outcome for r in store.apply_batch(batch)} == {ApplyOutcome.APPLIED}
        for _ in range(2):
            results = store.apply_batch(batch)
            assert [r.outcome for r in results] == [ApplyOutcome.REPLAYED] * len(batch)
            assert all(r.conflict_with is None for r in results)
        assert [store.read(r.key).meta for r in batch] == [r.meta for r in batch]

    def test_a_stale_record_among_fresh_ones_is_stale_alone(self, store: ReplicaAdapter) -> None:
        """An older version in a batch of newer ones (and of new keys): only it is a no-op."""
        old, new = stamped("s", version(), n=1), stamped("s", version(), n=2)
        held = [stamped(f"h{i}", n=i) for i in range(4)]
        store.apply_batch([new, *held])
        newer_held = [stamped(f"h{i}", version(), n=10 + i) for i in range(4)]
        fresh = [stamped(f"n{i}", n=i) for i in range(4)]
        batch = [*newer_held[:2], *fresh[:2], old, *newer_held[2:], *fresh[2:]]
        results = store.apply_batch(batch)
        assert [r.outcome for r in results] == [ApplyOutcome.APPLIED] * 4 + [ApplyOutcome.STALE] + \
            [ApplyOutcome.APPLIED] * 4
        assert store.read(new.key).meta == new.meta
        assert [store.read(r.key).body["n"] for r in newer_held] == [10, 11, 12, 13]

    def test_a_batch_larger_than_a_transaction_lands_whole(self, store: ReplicaAdapter) -> None:
        """150 records (more than a 100-item transaction) with successive versions of one key
        and a stale record: each decided as one-by-one delivery would decide it."""
        hot = [stamped("hot", version(), i=i) for i in range(3)]
        cold = [stamped(f"c{i:03d}", n=i) for i in range(146)]
        batch = [hot[0], *cold[:70], hot[1], *cold[70:], hot[2], hot[0]]
        results = store.apply_batch(batch)
        assert [r.key for r in results] == [r.key for r in batch]
        assert [r.outcome for r in results] == [ApplyOutcome.APPLIED] * 149 + [ApplyOutcome.STALE]
        assert store.read(hot[2].key).meta == hot[2].meta
        assert store.read(cold[-1].key).body["n"] == 145

    # --- change capture --------------------------------------------------------------------------

    def test_capture_returns_each_change_once_across_restart(self, open_store: StoreFactory,
                                                             store: ReplicaAdapter) -> None:
        start = store.current_cursor()
        first = [doc(f"n{i}", i=i) for i in range(7)]
        seed(store).write_native(first)
        seen: list[Record] = []
        cursor = start
        for _ in range(20):                        # restart from the saved cursor after every page
            reopened = open_store(name=store.target.resource)      # a new adapter on the same store
            page = reopened.capture_changes(cursor, limit=3)
            seen += [c.record for c in page.changes]
            cursor = page.cursor
            reopened.close()
            if not page.more:
                break
        assert sorted(r.key.id for r in seen) == sorted(r.key.id for r in first)
        assert all(r.meta is None for r in seen), "native writes carry no mcrepl metadata"
        assert {r.key: r.body for r in seen} == {r.key: r.body for r in first}

        more = [doc("n0", i=100), doc("n99", i=99)]
        seed(store).write_native(more)
        later, _ = drain(store, cursor)
        assert sorted(c.record.key.id for c in later) == ["n0", "n99"]

    def test_capture_carries_metadata_of_replicated_writes(self, store: ReplicaAdapter) -> None:
        cursor = store.current_cursor()
        rec = stamped("k", n=1)
        store.apply_batch([rec])
        changes, _ = drain(store, cursor)
        assert [c.record.meta for c in changes] == [rec.meta]

    def test_capture_from_scratch_sees_existing_records(self, store: ReplicaAdapter) -> None:
        seed(store).write_native([doc(f"s{i}") for i in range(5)])
        changes, _ = drain(store, None, limit=2)
        assert {c.record.key.id for c in changes} >= {f"s{i}" for i in range(5)}

    def test_a_page_going_on_with_a_listing_pass_begun_before_it_says_so(self, store: ReplicaAdapter) -> None:
        """``ChangePage.mid_pass``: a sync pass says *caught up* only after a pass of the changes it
        began itself, since a listing sees a change made behind its position in its next pass only."""
        cursor = store.current_cursor()
        seed(store).write_native([doc(f"p{i}") for i in range(5)])
        pages: list[ChangePage] = []
        for _ in range(20):
            page = store.capture_changes(cursor, limit=2)
            pages.append(page)
            cursor = page.cursor
            if not page.more:
                break
        if store.capabilities.incremental_capture or not any(p.mid_pass for p in pages):
            # a change log (or a window that only moves forward) has no passes to go on with
            assert not store.capabilities.incremental_capture or not any(p.mid_pass for p in pages)
            return
        assert len(pages) >= 3, "five changes, at most two a page"
        assert not pages[0].mid_pass and all(p.mid_pass for p in pages[1:]), \
            "every page after the first of a pass goes on with it"
        assert not store.capture_changes(cursor, limit=2).mid_pass, "the next pass begins at the start"

    # --- deletes and tombstones ------------------------------------------------------------------

    def test_delete_arrives_as_tombstone(self, store: ReplicaAdapter) -> None:
        live = stamped("gone", n=1)
        store.apply_batch([live])
        cursor = store.current_cursor()
        dead = tombstone_of(SCHEMA, live.key, version())
        assert store.apply_batch([dead])[0].outcome is ApplyOutcome.APPLIED
        changes, _ = drain(store, cursor)
        assert [(c.record.key, c.record.tombstone) for c in changes] == [(live.key, True)]
        assert store.read(live.key).tombstone
        assert store.apply_batch([live])[0].outcome is ApplyOutcome.STALE, "a delete must not be resurrected"

    def test_native_delete_is_captured(self, store: ReplicaAdapter) -> None:
        if not store.capabilities.capture_sees_deletes:
            pytest.skip("capabilities.capture_sees_deletes is false: this store's capture cannot see native "
                        "deletes (no change log with deletes); mcrepl tombstones are still captured")
        seed(store).write_native([doc("d1")])
        cursor = store.current_cursor()
        seed(store).delete_native([RecordKey(("d1",))])
        changes, _ = drain(store, cursor)
        assert [(c.record.key.id, c.native_delete) for c in changes] == [("d1", True)]

    def test_purge_removes_only_old_tombstones(self, store: ReplicaAdapter) -> None:
        old = tombstone_of(SCHEMA, RecordKey(("old",)), Version(1_000, 0, ORIGIN))
        new = tombstone_of(SCHEMA, RecordKey(("new",)), Version(9_000_000_000_000, 0, ORIGIN))
        live = stamped("live", Version(2_000, 0, ORIGIN), n=1)
        store.apply_batch([old, new, live])
        assert store.purge_tombstones(older_than_ms=5_000) == 1
        assert store.read(old.key) is None
        assert store.read(new.key).tombstone and store.read(live.key) is not None

    # --- digests ---------------------------------------------------------------------------------

    def test_digests_agree_with_reference(self, store: ReplicaAdapter) -> None:
        recs = [stamped(f"d{i}", n=i, s="x" * i) for i in range(10)]
        recs.append(tombstone_of(SCHEMA, RecordKey(("d-dead",)), version()))
        store.apply_batch(recs)
        seed(store).write_native([doc("native", n=1)])
        digests = {d.key_id: d for d in store.list_digests()}
        for r in recs:
            d = digests[r.key.id]
            assert (d.version, d.content_hash, d.tombstone) == (r.meta.version.token, r.meta.content_hash,
                                                                r.tombstone)
        native = digests["native"]
        assert native.version is None and native.content_hash == doc("native", n=1).digest_hash(False)

    # --- heartbeats (the Heartbeats role) ----------------------------------------------------------

    @pytest.mark.parametrize("shape", ["string-key", "string+number-key", "blob"])
    def test_heartbeat_is_captured_like_an_application_write(self, open_store: StoreFactory, shape: str) -> None:
        """The heartbeat lands under the reserved key and capture reports it as a native change, each time."""
        from mcrepl.adapters.base import KeyAttribute
        from mcrepl.adapters.base.reserved import HEARTBEAT_ID, heartbeat_key, written_ms_of
        from mcrepl.adapters.base.roles import Heartbeats
        schema = KeySchema(KeyAttribute("tenant"), KeyAttribute("seq", "N")) if shape == "string+number-key" else None
        store = open_store(kind="blob" if shape == "blob" else "document", key_schema=schema)
        if not isinstance(store, Heartbeats):
            pytest.skip("this adapter does not play the Heartbeats role: mcrepl measures no heartbeat lag there")
        key = RecordKey((HEARTBEAT_ID,)) if shape == "blob" else heartbeat_key(store.target.key_schema)
        cursor = store.current_cursor()
        store.write_heartbeat(1_800_000_000_123)
        changes, cursor = drain(store, cursor)
        assert [(c.record.key, c.record.meta, written_ms_of(c.record)) for c in changes] == [
            (key, None, 1_800_000_000_123)], "one native change, under the reserved key, carrying its time"
        store.write_heartbeat(1_800_000_000_456)
        changes, _ = drain(store, cursor)
        assert [written_ms_of(c.record) for c in changes] == [1_800_000_000_456]
        held = store.read(key)
        assert held is not None and written_ms_of(held) == 1_800_000_000_456

    def test_heartbeat_refuses_a_partition_key_that_is_not_a_string(self, open_store: StoreFactory) -> None:
        from mcrepl.adapters.base import ConfigError, KeyAttribute
        from mcrepl.adapters.base.roles import Heartbeats
        store = open_store(key_schema=KeySchema(KeyAttribute("id", "N")))
        if not isinstance(store, Heartbeats):
            pytest.skip("this adapter does not play the Heartbeats role")
        with pytest.raises(ConfigError, match="string partition key") as info:
            store.write_heartbeat(1)
        assert info.value.fix == "set sync.heartbeat: null for this dataset"
        assert list(store.list_digests()) == [], "nothing was written"



    #: keys spread over every first character a name range can start at, boundaries included
    RANGE_KEYS = ["0", "9-nine", "-dash", "A", "Alpha", "Z", "_under", "a", "apple", "m\u00ff", "n", "nut",
                  "zeta", "~tilde", "\u00e9t\u00e9", "\u4e2d", "a?b", " spaced ", "50%"]

    def test_ranged_digests_partition_the_listing(self, store: ReplicaAdapter) -> None:
        """Every digest of the whole listing is in exactly one range, identical there (verify lists by range)."""
        recs = [stamped(k, n=i) for i, k in enumerate(self.RANGE_KEYS)]
        recs += [stamped(f"key-{i:04d}", n=i) for i in range(40)]
        recs.append(tombstone_of(SCHEMA, RecordKey(("gone",)), version()))
        store.apply_batch(recs)
        seed(store).write_native([doc("native", n=1)])
        parts = ranges_of(store)
        if parts == [None]:
            pytest.skip("the adapter has no ranged digests (RangedDigests): verify lists this store whole")
        whole = sorted(store.list_digests(), key=lambda d: d.key_id)
        ranged = [d for part in parts for d in list_part(store, part)]
        assert len(ranged) == len({d.key_id for d in ranged}), "a key was listed in two ranges"
        assert sorted(ranged, key=lambda d: d.key_id) == whole, "the ranges do not add up to the whole listing"
        assert len(whole) == len(recs) + 1
        assert all(isinstance(p, DigestRange) and p.of == len(parts) for p in parts)
        assert [p.index for p in parts] == list(range(len(parts)))
        assert pickle.loads(pickle.dumps(parts)) == parts, "ranges travel in work units: they must pickle"

    # --- bad input: a specific error, and nothing else in the batch lost --------------------

    @pytest.mark.parametrize("case", BAD_INPUTS)
    def test_unrepresentable_value_rejected_alone(self, store: ReplicaAdapter, rejections: Mapping[str, str],
                                                  case: str) -> None:
        value = BAD_INPUTS[case]
        good1, bad, good2 = stamped("g1", n=1), stamped("bad", field=value), stamped("g2", n=2)
        results = store.apply_batch([good1, bad, good2])
        assert [r.key for r in results] == [good1.key, bad.key, good2.key]
        assert results[0].outcome is results[2].outcome is ApplyOutcome.APPLIED
        expected_rule = rejections.get(case)
        if expected_rule is None:
            assert results[1].outcome is ApplyOutcome.APPLIED
            assert store.read(bad.key).body == bad.body
        else:
            err = results[1].error
            assert results[1].outcome is ApplyOutcome.REJECTED and err is not None
            assert err.rule == expected_rule
            assert (err.dataset, err.key, err.target) == (store.target.dataset, "bad", store.target.replica)
            assert err.field in ("field", None) or err.field.startswith("field")
            assert store.read(bad.key) is None
        assert store.read(good1.key).body["n"] == 1 and store.read(good2.key).body["n"] == 2

    def test_overlong_object_name_rejected_alone(self, open_store: StoreFactory,
                                                 rejections: Mapping[str, str]) -> None:
        store = open_store(kind="blob")
        long_name = "é" * 600                      # 1,200 UTF-8 bytes
        ok, bad = blob("ok", b"1").stamped(version()), blob(long_name, b"2").stamped(version())
        results = store.apply_batch([ok, bad])
        assert results[0].outcome is ApplyOutcome.APPLIED
        rule = rejections.get("name-1200-bytes")
        if rule is None:
            assert results[1].outcome is ApplyOutcome.APPLIED
        else:
            assert results[1].outcome is ApplyOutcome.REJECTED and results[1].error.rule == rule
        assert store.read(ok.key).body == b"1"


@pytest.mark.contract
class ChainContract:
    """Round trips across stores: what one store hands back, the next stores and returns unchanged.

    Override ``chain`` with the stores to pass a record through, in order (open them with
    the same key schema: partition key ``pk``).
    """

    @pytest.fixture
    def chain(self) -> list[ReplicaAdapter]:
        pytest.fail("override the chain fixture in your ChainContract subclass")

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
    @given(body=bodies)
    def test_record_survives_every_hop(self, chain: list[ReplicaAdapter], body: dict) -> None:
        """Each hop writes what the last one returned; no value, and no metadata, changes."""
        assume(all(s.capabilities.holds_sets for s in chain) or not _holds_set(body))
        rec = stamped(f"hop-{random.getrandbits(32)}", **body)
        carried = rec
        for store in chain:
            assert store.apply_batch([carried])[0].outcome in (ApplyOutcome.APPLIED, ApplyOutcome.REPLAYED)
            back = store.read(rec.key)
            assert back is not None, f"{store.target.replica} lost the record"
            assert back.body == rec.body and back.meta == rec.meta, f"{store.target.replica} changed it"
            carried = back


__all__ = ["AdapterContract", "BAD_INPUTS", "ChainContract", "StoreFactory", "drain", "dropping", "seed"]
