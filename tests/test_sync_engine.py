"""Sync engine behaviour on the in-memory reference adapter (fast; no emulators).

The same engine code runs against the emulators in ``test_sync_emulators.py``; here the
stores are our own reference implementation, which lets tests switch a replica off,
crash the engine mid-batch, and reject records on purpose.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Callable

import pytest

import dataclasses
import time

from mcrepl.adapters.base import AdapterError, KeyAttribute, KeySchema, Record, Version, document, vector_dominates
from mcrepl.adapters.memory import MemoryAdapter
from mcrepl.orchestrator.hlc import HybridLogicalClock
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncDeadlineExceeded, SyncEngine
from mcrepl.orchestrator.sync.capture import PageCapturer
from mcrepl.policies.routing import RouteDecision, Withheld

from .test_sync_helpers import (COSMOS, GCS, PRIMARY, MemoryWorld, SimulatedCrash, customer, digests, live,
                                make_config)


@pytest.fixture()
def world() -> MemoryWorld:
    w = MemoryWorld(f"t{uuid.uuid4().hex[:8]}")
    yield w
    w.drop()


def _engine(config, state, world, **kw) -> SyncEngine:  # type: ignore[no-untyped-def]
    return SyncEngine(config, state, adapter_factory=world.factory, **kw)


def _seed(config, world, n: int, start: int = 0, **extra) -> list[Record]:  # type: ignore[no-untyped-def]
    schema = config.datasets["customers"].key_schema()
    records = [document(schema, customer(i, **extra)) for i in range(start, start + n)]
    world.adapter(config, PRIMARY).write_native(records)
    return records


def _assert_converged(config, world) -> None:  # type: ignore[no-untyped-def]
    primary = live(world.adapter(config, PRIMARY))
    cosmos, gcs = world.adapter(config, COSMOS), world.adapter(config, GCS)
    assert digests(cosmos) == digests(gcs)
    assert live(cosmos) == primary


def test_inserts_updates_deletes_converge_and_second_pass_is_a_noop(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    records = _seed(config, world, 120)
    primary = world.adapter(config, PRIMARY)
    schema = config.datasets["customers"].key_schema()
    primary.write_native([document(schema, customer(i, tier=9)) for i in range(0, 30)])
    primary.delete_native([r.key for r in records[100:110]])
    report = _engine(config, state, world).run_once()
    ds = report.datasets["customers"]
    assert ds.captured == 120 + 30 + 10 - 0 and report.ok
    assert sorted(report.caught_up_lanes) == [("customers", COSMOS), ("customers", GCS)]
    for lane in ds.lanes.values():
        assert lane.applied == ds.captured and lane.replayed == lane.stale == 0
    _assert_converged(config, world)
    tombstones = [k for k, (_, t) in digests(world.adapter(config, COSMOS)).items() if t]
    assert sorted(tombstones) == sorted(r.key.id for r in records[100:110])
    again = _engine(config, state, world).run_once()
    assert again.datasets["customers"].captured == 0 and again.ok
    assert state.log.retained("customers") == 0, "entries every lane acknowledged are truncated"


def test_delivering_stamped_changes_thrice_or_shuffled_equals_one_ordered_delivery(
        tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    schema = config.datasets["customers"].key_schema()
    primary = world.adapter(config, PRIMARY)
    _seed(config, world, 40)
    primary.write_native([document(schema, customer(i, tier=7)) for i in range(10)])
    primary.delete_native([document(schema, customer(i)).key for i in range(30, 35)])
    clock = HybridLogicalClock(PRIMARY)
    capturer = PageCapturer(config.target("customers", PRIMARY), state, clock, 1)
    assert capturer.capture_page(primary, 1000).stamped == 55
    stamped = [e.record for e in state.log.read("customers", 0, 1000)[0]]   # the engine's own stamped changes
    base = config.target("customers", GCS)
    ordered, thrice, shuffled = (MemoryAdapter(dataclasses.replace(
        base, provider="memory", replica=f"memory:{n}", options={"namespace": world.namespace})) for n in range(3))
    ordered.apply_batch(stamped)
    outcomes = [r.outcome.value for _ in range(3) for r in thrice.apply_batch(stamped)]
    mixed = stamped * 3
    random.Random(7).shuffle(mixed)
    outcomes_shuffled = [r.outcome.value for r in shuffled.apply_batch(mixed)]
    assert digests(thrice) == digests(ordered) == digests(shuffled)
    assert len(live(ordered)) == 35
    # one in-order delivery applies each version once; everything else is a counted no-op
    # (15 keys have two versions: on a re-delivery their first version is older than what is stored)
    assert outcomes.count("applied") == len(stamped)
    assert outcomes.count("replayed") == 2 * (len(stamped) - 15) and outcomes.count("stale") == 2 * 15
    assert outcomes_shuffled.count("applied") <= len(stamped)
    assert outcomes_shuffled.count("replayed") + outcomes_shuffled.count("stale") \
        == len(mixed) - outcomes_shuffled.count("applied")
    assert outcomes_shuffled.count("stale") > 0, "older versions arriving after newer ones are stale"
    for store in (ordered, thrice, shuffled):
        store.drop()


def test_engine_replays_are_counted_as_noops(tmp_path: Path, world: MemoryWorld) -> None:
    """A batch the replica acknowledged but whose offset was never committed comes back as replays."""
    config = make_config(tmp_path, sync={"batch_size": 20})
    state = StateStore(tmp_path / "state.db")
    _seed(config, world, 60)
    gcs = world.adapter(config, GCS)
    gcs.crash_in, gcs.crash_after_apply = 2, True            # 2nd batch lands, then the process "dies"
    with pytest.raises(SimulatedCrash):
        _engine(config, state, world).run_once()
    state.close()
    state = StateStore(tmp_path / "state.db")
    report = _engine(config, state, world).run_once()
    lane = report.datasets["customers"].lanes[GCS]
    assert lane.replayed == 20 and report.ok
    total = state.lanes.get("customers", GCS)
    assert total.applied == 40 + 0 and total.applied + total.replayed == 60
    _assert_converged(config, world)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crashes_at_random_points_lose_and_duplicate_nothing(tmp_path: Path, world: MemoryWorld, seed: int) -> None:
    rng = random.Random(seed)
    config = make_config(tmp_path, sync={"batch_size": 15, "max_in_flight": 2})
    schema = config.datasets["customers"].key_schema()
    primary = world.adapter(config, PRIMARY)
    _seed(config, world, 150)
    expected_changes = 150
    for round_ in range(6):
        for replica in (PRIMARY, COSMOS, GCS):
            adapter = world.adapter(config, replica)
            adapter.crash_in = rng.randint(1, 8)
            adapter.crash_after_apply = rng.random() < 0.5
        state = StateStore(tmp_path / "state.db")
        try:
            _engine(config, state, world).run_once()
        except SimulatedCrash:
            pass
        state.close()
        updated = rng.sample(range(150), 10)
        primary.write_native([document(schema, customer(i, tier=100 + round_)) for i in updated])
        expected_changes += 10
    for replica in (PRIMARY, COSMOS, GCS):
        world.adapter(config, replica).crash_in = None
    state = StateStore(tmp_path / "state.db")
    report = _engine(config, state, world).run_once()
    assert report.ok
    _assert_converged(config, world)
    captured = state.log.totals("customers")["captured_total"]
    assert captured == expected_changes, "every native change stamped exactly once"
    for replica in (COSMOS, GCS):
        lane = state.lanes.get("customers", replica)
        assert lane.applied + lane.replayed + lane.stale == captured, "every logged change committed once"
        assert lane.applied <= captured


def test_unreachable_replica_stops_only_its_lane_and_drains_after_healing(tmp_path: Path,
                                                                         world: MemoryWorld) -> None:
    config = make_config(tmp_path, sync={"batch_size": 10, "breaker_failures": 2, "breaker_reset": "200ms",
                                         "retry_deadline": "100ms"})
    state = StateStore(tmp_path / "state.db")
    _seed(config, world, 50)
    engine = _engine(config, state, world)
    engine.run_once()
    gcs = world.adapter(config, GCS)
    gcs.down = True
    _seed(config, world, 40, start=50)
    report = engine.run_once()
    lanes = report.datasets["customers"].lanes
    assert lanes[COSMOS].caught_up and not lanes[GCS].caught_up
    assert lanes[GCS].breaker == "open" and lanes[GCS].errors == 2
    assert "unreachable" in (lanes[GCS].last_error or "")
    assert live(world.adapter(config, COSMOS)) == live(world.adapter(config, PRIMARY))
    skipped = engine.run_once()                                # breaker still open: lane skipped, others run
    assert skipped.datasets["customers"].lanes[GCS].breaker == "open"
    assert state.lanes.get("customers", GCS).offset == 50, "the failed lane keeps its place"
    gcs.down = False
    time.sleep(0.25)                                           # breaker half-opens
    healed = engine.run_once()
    assert healed.ok and healed.datasets["customers"].lanes[GCS].applied == 40
    _assert_converged(config, world)


def test_rejected_records_are_quarantined_without_values_and_the_lane_goes_on(tmp_path: Path,
                                                                            world: MemoryWorld) -> None:
    config = make_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    world.adapter(config, GCS).reject_field = "ssn"
    _seed(config, world, 10)
    _seed(config, world, 2, start=10, ssn="123-45-6789")
    report = _engine(config, state, world).run_once()
    lane = report.datasets["customers"].lanes[GCS]
    assert lane.rejected == lane.quarantined == 2 and lane.applied == 10 and lane.caught_up
    rows = state.journal.quarantined("customers")
    assert {r["key_id"] for r in rows} == {"c00010", "c00011"}
    assert all(r["rule"] == "test-reject" and r["field"] == "ssn" and "123-45" not in r["message"] for r in rows)


class _NoGcsForVip:
    def route(self, dataset, record, replicas):  # type: ignore[no-untyped-def]
        if isinstance(record.body, dict) and record.body.get("tier") == 2:
            return RouteDecision(send={r: record for r in replicas if r != GCS},
                                 withheld={GCS: Withheld("residency", "tier 2 stays out of gcs")} if GCS in replicas else {})
        return RouteDecision(send={r: record for r in replicas})


def test_router_withholds_records_from_a_replica(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    _seed(config, world, 30)
    report = SyncEngine(config, state, adapter_factory=world.factory, router=_NoGcsForVip()).run_once()
    lanes = report.datasets["customers"].lanes
    assert lanes[GCS].withheld == 10 and lanes[GCS].applied == 20 and lanes[COSMOS].applied == 30
    assert len(live(world.adapter(config, GCS))) == 20


def _concurrent_write_on_replica(config, world, replica: str, key_index: int, state=None,  # type: ignore[no-untyped-def]
                                 **fields):
    """A version written at ``replica`` while it was primary (another origin, unseen by ours).

    With ``state``, the state file knows ``replica`` was the primary before the configured
    one; without, the version is foreign to it (left by an earlier state file or a restore).
    """
    if state is not None:
        state.set_primary("customers", replica)
        state.set_primary("customers", PRIMARY)
    schema = config.datasets["customers"].key_schema()
    rec = document(schema, customer(key_index, **fields)).stamped(Version(1, 0, replica))
    world.adapter(config, replica).inner.apply_batch([rec])


def test_concurrent_versions_are_logged_as_conflicts_and_lww_wins(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    _seed(config, world, 3)
    _concurrent_write_on_replica(config, world, COSMOS, 1, state, note="written on cosmos")
    report = _engine(config, state, world).run_once()
    assert report.datasets["customers"].lanes[COSMOS].conflicts == 1
    (row,) = state.journal.conflicts("customers")
    assert row["key_id"] == "c00001" and row["resolver"] == "lww"
    assert row["stored"]["v"].endswith(COSMOS) and row["winner"] == row["incoming"]["v"]
    _assert_converged(config, world)


def test_a_version_foreign_to_the_log_at_a_plain_replica_is_replaced_not_merged(tmp_path: Path,
                                                                                 world: MemoryWorld) -> None:
    """A replica that never was primary takes no writes: a version there the log never held
    (an earlier state file's, a restore's) is recorded as a conflict and replaced by the log's,
    even under a merge resolver, so its content cannot creep back in."""
    config = make_config(tmp_path, conflict={"resolver": "merge",
                                             "function": "tests.test_sync_engine:merge_notes"})
    state = StateStore(tmp_path / "state.db")
    _seed(config, world, 3)
    _concurrent_write_on_replica(config, world, COSMOS, 1, note="restored on cosmos")
    _engine(config, state, world).run_once()
    (row,) = state.journal.conflicts("customers")
    assert row["key_id"] == "c00001" and row["resolver"] == "replica-copy"
    assert row["winner"] != row["stored"]["v"]
    key = document(config.datasets["customers"].key_schema(), customer(1)).key
    assert "note" not in world.adapter(config, COSMOS).read(key).body
    _assert_converged(config, world)


def merge_notes(stored: dict, incoming: dict) -> dict:
    """Test merge function: incoming wins but keeps the stored note."""
    return {**incoming, "note": stored.get("note")}


def test_merge_resolver_converges_every_store_on_the_merged_body(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path, conflict={"resolver": "merge",
                                             "function": "tests.test_sync_engine:merge_notes"})
    state = StateStore(tmp_path / "state.db")
    _seed(config, world, 3)
    _concurrent_write_on_replica(config, world, COSMOS, 1, state, note="written on cosmos")
    engine = _engine(config, state, world)
    report = engine.run_once()
    assert report.datasets["customers"].lanes[COSMOS].merged == 1
    key = document(config.datasets["customers"].key_schema(), customer(1)).key
    for replica in (PRIMARY, COSMOS, GCS):
        body = world.adapter(config, replica).read(key).body
        assert body["note"] == "written on cosmos" and body["name"] == "customer 1", replica
    assert engine.run_once().datasets["customers"].captured == 0, "the merge written to the primary is no echo"
    assert digests(world.adapter(config, COSMOS)) == digests(world.adapter(config, GCS))


def test_deletes_are_not_resurrected_by_a_late_replica_within_retention(tmp_path: Path,
                                                                        world: MemoryWorld) -> None:
    config = make_config(tmp_path, sync={"breaker_failures": 1, "breaker_reset": "50ms",
                                         "retry_deadline": "50ms"})
    state = StateStore(tmp_path / "state.db")
    records = _seed(config, world, 5)
    engine = _engine(config, state, world)
    engine.run_once()
    gcs, cosmos = world.adapter(config, GCS), world.adapter(config, COSMOS)
    old_version = gcs.read(records[0].key)
    gcs.down = True                                            # gcs misses the delete
    world.adapter(config, PRIMARY).delete_native([records[0].key])
    report = engine.run_once()
    assert report.datasets["customers"].purged == 0, "the purge ran, but nothing is past retention"
    assert cosmos.read(records[0].key).tombstone, "the tombstone is kept within retention"
    # the late replica's old live version reaching cosmos (a repair, a lagging path) is stale
    (result,) = cosmos.apply_batch([old_version])
    assert result.outcome.value == "stale"
    gcs.down = False
    time.sleep(0.1)                                            # breaker half-opens
    assert engine.run_once().ok
    assert gcs.read(records[0].key).tombstone
    assert digests(gcs) == digests(cosmos)


def test_tombstones_older_than_retention_are_purged(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path, sync={"tombstone_retention": "2s", "max_replica_outage": "1s"})
    state = StateStore(tmp_path / "state.db")
    records = _seed(config, world, 4)
    world.adapter(config, PRIMARY).delete_native([records[0].key])
    first = _engine(config, state, world).run_once()
    assert first.datasets["customers"].purged == 0
    time.sleep(2.1)
    state.set_meta("unused", "x")
    with state.transaction() as conn:                          # make the purge due now
        conn.execute("UPDATE datasets SET last_purge_at=0 WHERE dataset='customers'")
    second = _engine(config, state, world).run_once()
    assert second.datasets["customers"].purged == 2            # the tombstone at cosmos and at gcs
    assert records[0].key.id not in digests(world.adapter(config, COSMOS))


def test_deadline_fails_the_pass_with_checkpoints_intact(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path, sync={"batch_size": 5, "max_in_flight": 1, "deadline": "1ms"})
    state = StateStore(tmp_path / "state.db")
    _seed(config, world, 200)
    with pytest.raises(SyncDeadlineExceeded) as err:
        _engine(config, state, world).run_once()
    assert "deadline" in str(err.value) and err.value.report is not None
    offsets = {r: state.lanes.get("customers", r).offset for r in (COSMOS, GCS)}
    assert max(offsets.values()) < 200
    report = _engine(make_config(tmp_path, sync={"batch_size": 50}), state, world).run_once()
    assert report.ok
    _assert_converged(config, world)
    assert state.log.totals("customers")["captured_total"] == 200


def test_status_reports_lag_and_errors_per_lane(tmp_path: Path, world: MemoryWorld) -> None:
    from mcrepl.orchestrator.sync.status import lane_status
    config = make_config(tmp_path, sync={"breaker_failures": 1, "retry_deadline": "50ms"})
    state = StateStore(tmp_path / "state.db")
    _seed(config, world, 25)
    world.adapter(config, GCS).down = True
    _engine(config, state, world).run_once()
    rows = {r["replica"]: r for r in lane_status(config, state)}
    assert rows[COSMOS]["lag_changes"] == 0 and rows[COSMOS]["lag_seconds"] == 0.0
    assert rows[GCS]["lag_changes"] == 25 and rows[GCS]["lag_seconds"] >= 0.0
    assert rows[GCS]["breaker"] == "open" and "unreachable" in rows[GCS]["last_error"]
    assert rows[COSMOS]["last_checkpoint"] is not None and rows[GCS]["last_checkpoint"] is None


def test_metrics_and_audit_trail_record_every_batch(tmp_path: Path, world: MemoryWorld) -> None:
    from mcrepl.orchestrator.observability.audit import AuditTrail
    from mcrepl.orchestrator.observability.metrics import SyncMetrics
    config = make_config(tmp_path, sync={"batch_size": 10, "breaker_failures": 1, "retry_deadline": "50ms"})
    state = StateStore(tmp_path / "state.db")
    metrics, audit = SyncMetrics(), AuditTrail(tmp_path / "audit.jsonl")
    _seed(config, world, 25, ssn="x")
    world.adapter(config, GCS).reject_field = "ssn"
    _engine(config, state, world, metrics=metrics, audit=audit).run_once()
    assert metrics.value("mcrepl_changes_total", dataset="customers", replica=COSMOS, outcome="applied") == 25
    assert metrics.value("mcrepl_changes_total", dataset="customers", replica=GCS, outcome="quarantined") == 25
    assert metrics.value("mcrepl_replica_lag_changes", dataset="customers", replica=GCS) == 0
    entries = list(audit.entries())
    assert entries[0]["kind"] == "config" and len(entries[0]["payload"]["sha256"]) == 64
    batches = [e["payload"] for e in entries if e["kind"] == "batch"]
    assert sum(b["applied"] for b in batches if b["replica"] == COSMOS) == 25 and len(batches) == 6
    assert "x" not in {str(v) for b in batches for v in b.values()}, "audit entries hold counts, not values"
    assert audit.verify().ok
    _engine(config, state, world, metrics=metrics, audit=audit).run_once()
    assert [e["kind"] for e in audit.entries()].count("config") == 1, "an unchanged config is audited once"


def test_a_pass_stops_capturing_from_a_primary_demoted_while_it_runs(tmp_path) -> None:
    """A promotion mid-pass: the old primary is never captured again under its old epoch."""
    from mcrepl.adapters.base import KeyAttribute, KeySchema, ReplicaTarget, document
    from mcrepl.adapters.memory import MemoryAdapter
    from mcrepl.orchestrator.hlc import HybridLogicalClock
    from mcrepl.orchestrator.state import StateStore
    from mcrepl.orchestrator.sync.capture import PageCapturer

    schema = KeySchema(KeyAttribute("id"))
    target = ReplicaTarget("dynamodb:eu-west-1", "memory", "eu-west-1", "orders", "document", schema, "orders",
                           {"namespace": str(tmp_path)})
    old_primary = MemoryAdapter(target)
    state = StateStore(tmp_path / "state.db")
    epoch = state.primary("orders", "dynamodb:eu-west-1").epoch
    capturer = PageCapturer(target, state, HybridLogicalClock(target.replica), epoch)
    old_primary.write_native([document(schema, {"id": "a"})])
    assert capturer.capture_page(old_primary, 100).stamped == 1

    state.set_primary("orders", "dynamodb:eu-central-1")
    old_primary.write_native([document(schema, {"id": "zombie"})])
    result = capturer.capture_page(old_primary, 100)
    assert result.deposed and result.stamped == 0 and not result.more
    assert [e.record.key.id for e in state.log.read("orders", 0, 100)[0]] == ["a"]


def test_a_native_delete_at_a_primary_that_held_something_unknown_is_logged_as_its_own(tmp_path: Path) -> None:
    """The log says deleted, but the new primary (promoted before it received the log) held a
    version mcrepl knows nothing of, and the application deleted that: a delete of its own,
    concurrent with what it never saw. Taking it for the logged delete would let a later
    write it never saw come back over it with no conflict named (simulation seed 4366)."""
    from mcrepl.adapters.base import Change, ChangePage, ReplicaTarget, tombstone_of

    schema = KeySchema(KeyAttribute("id"))
    target = ReplicaTarget("dynamodb:eu-central-1", "memory", "eu-central-1", "orders", "document", schema,
                           "orders", {"namespace": str(tmp_path)})
    state = StateStore(tmp_path / "state.db")
    state.set_primary("orders", "dynamodb:eu-west-1")
    key = schema.parse_id("k08")
    logged_delete = tombstone_of(schema, key, HybridLogicalClock("dynamodb:eu-west-1").tick("dynamodb:eu-west-1"))
    state.log.append("orders", [logged_delete], location="dynamodb:eu-west-1", epoch=1)
    epoch = state.set_primary("orders", target.replica).epoch
    capturer = PageCapturer(target, state, HybridLogicalClock(target.replica), epoch)
    assert state.log.held_at("orders", [key], target.replica) == {}, "nothing known held at the new primary"

    native_delete = Change(Record(key, None), native_delete=True)         # no old image (a listing, say)
    result = capturer.commit(ChangePage([native_delete], {"pos": 1}, more=False))
    assert result.stamped == 1, "the delete of something unknown there is logged, not dropped as the logged one"
    (entry,) = [e for e in state.log.read("orders", 1, 10)[0]]
    assert entry.record.tombstone and entry.record.meta is not None
    assert target.replica in entry.record.meta.vector and "dynamodb:eu-west-1" not in entry.record.meta.vector, \
        "it saw nothing of the logged delete"

    again = capturer.commit(ChangePage([native_delete], {"pos": 2}, more=False))
    assert again.stamped == 0 and again.unchanged == 1, "the same delete read again is the logged state"


def test_a_delivery_the_primary_took_over_a_delete_capture_had_not_read_is_settled_against_it(
        tmp_path: Path) -> None:
    """The primary's lane reads a key before writing it; an application's delete there that
    capture has not read leaves nothing, and with nothing recorded there for the key the lane's
    write (a late write recovered from the old primary) goes through. Capture then reads the
    write, the delete, and the delivery after them. The delivery used to be taken for an echo of
    mcrepl's own write: the delete was silently undone, and no conflict named it (log-capture
    seed 302170). Capture now settles the delivery against the state it replaced there."""
    from mcrepl.adapters.base import Change, ChangePage, ReplicaTarget
    from mcrepl.orchestrator.sync.settling import Settling

    schema = KeySchema(KeyAttribute("id"))
    target = ReplicaTarget("dynamodb:eu-central-1", "memory", "eu-central-1", "orders", "document", schema,
                           "orders", {"namespace": str(tmp_path)})
    state = StateStore(tmp_path / "state.db")
    epoch = state.set_primary("orders", target.replica).epoch
    clock = HybridLogicalClock(target.replica)
    old = "cosmos:westeurope/app"
    late = document(schema, {"id": "k06", "w": 2}).stamped(Version(1000, 0, old), {old: Version(1000, 0, old).token})
    assert late.meta is not None
    state.log.append_recovered("orders", [late], location="cosmos:westeurope", epoch=epoch)
    capturer = PageCapturer(target, state, clock, epoch,
                            settling=Settling(None, clock, target.replica, epoch))

    write = Change(document(schema, {"id": "k06", "w": 14}))
    delete = Change(Record(late.key, None), native_delete=True)
    result = capturer.commit(ChangePage([write, delete, Change(late)], {"pos": 3}, more=False))
    assert result.stamped == 2
    entries = state.log.read("orders", 0, 10)[0]
    assert [e.source for e in entries] == ["capture", "capture", "capture", "engine"]
    deleted, settlement = entries[2].record, entries[3].record
    assert deleted.tombstone and deleted.meta is not None and settlement.meta is not None
    assert vector_dominates(settlement.meta.vector, deleted.meta.vector)
    assert vector_dominates(settlement.meta.vector, late.meta.vector)
    [row] = state.journal.conflicts("orders")
    assert {row["incoming"]["v"], row["stored"]["v"]} == {late.meta.version.token, deleted.meta.version.token}


def test_a_replica_added_later_is_backfilled_with_the_same_versions(tmp_path: Path, world: MemoryWorld) -> None:
    """The log is truncated once every lane has applied it; a new replica still gets everything."""
    two = make_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    records = _seed(two, world, 60)
    engine = _engine(two, state, world)
    assert engine.run_once().ok
    world.adapter(two, PRIMARY).write_native(records[:5])            # unchanged rewrites: no new versions
    assert engine.run_once().ok and state.log.retained("customers") == 0, "history truncated"
    engine.close()

    raw = two.model_dump(mode="json")
    raw["datasets"]["customers"]["replicas"].append({"at": "gcs:us-east1"})
    three = type(two).model_validate(raw)
    engine = _engine(three, state, world)
    report = engine.run_once()
    assert report.ok, report.to_dict()
    added = world.adapter(three, "gcs:us-east1")
    assert digests(added) == digests(world.adapter(three, GCS)) and len(digests(added)) == 60
    versions = {d.key_id: d.version for d in added.list_digests()}
    assert versions == {d.key_id: d.version for d in world.adapter(three, GCS).list_digests()}
    second = engine.run_once()
    assert second.datasets["customers"].lanes["gcs:us-east1"].applied == 0, "backfill happens once"
    engine.close()


def test_a_forced_promotion_past_the_log_horizon_is_refilled_from_the_copies_that_answer(
        tmp_path: Path, world: MemoryWorld) -> None:
    """The new primary missed entries the log no longer holds, and the old primary is down:
    the requested anti-entropy compares the copies that answer and refills it from them,
    without waiting for every copy (and without a verdict: `converged` needs them all)."""
    config = make_config(tmp_path, sync={"batch_size": 10, "breaker_failures": 1, "breaker_reset": "50ms",
                                         "retry_deadline": "100ms", "max_replica_outage": "50ms"})
    state = StateStore(tmp_path / "state.db")
    _seed(config, world, 20)
    engine = _engine(config, state, world)
    assert engine.run_once().ok
    gcs, primary = world.adapter(config, GCS), world.adapter(config, PRIMARY)
    gcs.down = True
    time.sleep(0.1)                                        # gcs's lane is silent past max_replica_outage
    later = _seed(config, world, 10, start=20)
    engine.run_once()
    assert state.log.horizon("customers") > state.lanes.get("customers", GCS).offset, "the log moved on without gcs"
    gcs.down, primary.down = False, True                   # the primary's region is lost; gcs is back
    result = engine.promote("customers", GCS, force=True)
    assert result.undrained > 0
    time.sleep(0.1)                                        # gcs's breaker (its lane failed while down) half-opens
    assert not {r.key.id for r in later} <= set(live(gcs)), "gcs missed the later records"
    report = engine.run_once()
    verify = report.datasets["customers"].verify
    assert verify is not None and not verify.converged and "could not compare" in verify.detail
    assert set(live(gcs)) >= {r.key.id for r in later}, "the new primary was refilled from cosmos"
    assert live(gcs) == live(world.adapter(config, COSMOS))


def test_the_primary_sends_a_successor_over_a_version_the_log_has_but_never_noted_there() -> None:
    """What mcrepl recorded the primary held can trail what it holds: a version the log already has
    that reached it another way (an application writing every copy before acknowledging, as
    ``ack: replicas`` does) is never noted there. Such an item is no change on its way into the
    log, so the successor is sent and the store's condition decides; it used to be deferred
    for a capture with nothing left to read, and the key stayed divergent (the unfenced
    split-brain drill under load). A version the log has not seen is still left alone."""
    from mcrepl.adapters.base import KeyAttribute, KeySchema, ReplicaTarget, tombstone_of
    from mcrepl.orchestrator.state.log import Captured
    from mcrepl.orchestrator.sync.writer import LocationWriter
    from mcrepl.policies.routing import PassThroughRouter

    schema = KeySchema(KeyAttribute("id"))
    store = MemoryAdapter(ReplicaTarget(PRIMARY, "memory", "eu", "acct", "document", schema,
                                        f"t-{uuid.uuid4().hex[:8]}"))
    key = schema.parse_id("k1")
    a, stale = f"{GCS}/app", f"{GCS}/stale"
    deleted = tombstone_of(schema, key, Version(2000, 0, a), {a: Version(2000, 0, a).token})
    store.apply_batch([deleted])                          # written there by the application itself
    successor = document(schema, {"id": "k1", "n": 3}).stamped(Version(3000, 0, stale),
                                                               {**deleted.meta.vector})
    assert deleted.meta is not None and successor.meta is not None

    # what mcrepl noted there: the insert before the delete (the delete came by the application)
    inserted = document(schema, {"id": "k1", "n": 1}).stamped(Version(1000, 0, a))
    assert inserted.meta is not None
    noted = {"k1": [Captured(PRIMARY, inserted.meta.content_hash, inserted.meta)]}

    def writer(head: Record) -> LocationWriter:
        return LocationWriter("acct", PRIMARY, store, PassThroughRouter(), is_primary=True,
                              captured=lambda ids: noted, heads=lambda ids: {"k1": head.meta})  # type: ignore[dict-item]

    unseen = inserted
    assert [w.outcome for w in writer(unseen).write([successor])] == ["deferred"]
    assert store.read(key).meta == deleted.meta, "a version the log has not seen stays put"
    assert [w.outcome for w in writer(successor).write([successor])] == ["applied"]
    assert store.read(key).meta == successor.meta



def test_an_absence_at_a_former_primary_after_a_delivery_that_saw_its_delete_is_a_late_delete() -> None:
    """mcrepl can know two states of one key at a former primary: the delete the promotion
    claimed it held, and a later version delivered there while it was primary (a late write
    recovered from the previous primary) that has seen that delete. An absence there now is
    that version deleted by an application still writing to it, never the old delete: taken
    for the old delete, the lane refilled the key over an acknowledged delete (listing seed
    202762). The lane hands the absence back as a late delete instead."""
    from mcrepl.adapters.base import KeyAttribute, KeySchema, ReplicaTarget, tombstone_of
    from mcrepl.orchestrator.state.log import Captured
    from mcrepl.orchestrator.sync.writer import LocationWriter
    from mcrepl.policies.routing import PassThroughRouter

    schema = KeySchema(KeyAttribute("id"))
    former = MemoryAdapter(ReplicaTarget(GCS, "memory", "eu", "acct", "document", schema,
                                         f"t-{uuid.uuid4().hex[:8]}"))
    key = schema.parse_id("k1")
    origin = f"{PRIMARY}/app"
    deleted = tombstone_of(schema, key, Version(1000, 0, origin), {origin: Version(1000, 0, origin).token})
    assert deleted.meta is not None
    late = document(schema, {"id": "k1", "n": 2}).stamped(Version(2000, 0, origin), {**deleted.meta.vector})
    assert late.meta is not None
    # the store holds nothing: the delivered version was deleted there after its demotion
    noted = {"k1": [Captured(GCS, late.meta.content_hash, late.meta), Captured(GCS, "-", deleted.meta)]}
    again = document(schema, {"id": "k1", "n": 2}).stamped(Version(3000, 0, origin), {**late.meta.vector})
    writer = LocationWriter("acct", GCS, former, PassThroughRouter(), former_primary=True,
                            captured=lambda ids: noted, heads=lambda ids: {"k1": again.meta})  # type: ignore[dict-item]
    [written] = writer.write([again])
    assert written.outcome == "deferred" and written.late is not None and written.late.native_delete
    assert former.read(key) is None, "nothing written over the late delete"

    # with only the delete recorded there, an absence is that delete: the lane writes
    writer = LocationWriter("acct", GCS, former, PassThroughRouter(), former_primary=True,
                            captured=lambda ids: {"k1": [Captured(GCS, "-", deleted.meta)]},
                            heads=lambda ids: {"k1": again.meta})  # type: ignore[dict-item]
    assert [w.outcome for w in writer.write([again])] == ["applied"]



def test_an_absence_at_a_primary_whose_capture_shows_no_deletes_is_handed_back_as_its_delete() -> None:
    """A Cosmos DB change feed never reports a delete. The primary's lane used to leave an absence
    there (a live state recorded, nothing stored) for capture to read, which it never did: the
    application's delete was never logged, and a late write recovered from the old primary,
    concurrent with it, was never settled against it (feed seed 300979, 120 steps). The writer now
    hands it back, once per key and batch, as the delete of the last live state recorded there."""
    from mcrepl.adapters.base import ReplicaTarget
    from mcrepl.orchestrator.state.log import Captured
    from mcrepl.orchestrator.sync.writer import LocationWriter
    from mcrepl.policies.routing import PassThroughRouter

    schema = KeySchema(KeyAttribute("id"))
    origin = f"{COSMOS}/app"
    held = document(schema, {"id": "k1", "n": 1}).stamped(Version(1000, 0, origin), {origin: "a"})
    late = document(schema, {"id": "k1", "n": 2}).stamped(Version(2000, 0, f"{PRIMARY}/app"),
                                                          {origin: "a", f"{PRIMARY}/app": "b"})
    assert held.meta is not None and late.meta is not None
    noted = {"k1": [Captured(COSMOS, held.meta.content_hash, held.meta)]}

    def writer(capture: str) -> LocationWriter:
        store = MemoryAdapter(ReplicaTarget(COSMOS, "memory", "eu", "acct", "document", schema,
                                            f"t-{uuid.uuid4().hex[:8]}", options={"capture": capture}))
        return LocationWriter("acct", COSMOS, store, PassThroughRouter(), is_primary=True,
                              captured=lambda ids: noted, heads=lambda ids: {"k1": late.meta})  # type: ignore[dict-item]

    first, second = writer("feed").write([late, late])
    assert first.outcome == second.outcome == "deferred"
    assert first.late is not None and first.late.native_delete and first.late.previous == held.meta
    assert second.late is None, "one delete per key and batch"
    # where capture reports deletes, the absence is a change capture has not read yet: left alone for it
    [waiting] = writer("log").write([late])
    assert waiting.outcome == "deferred" and waiting.late is None


def test_a_location_promoted_after_a_backfill_that_never_finished_holds_what_it_was_known_to_hold(
        tmp_path: Path) -> None:
    """A rejoin marks every key of a former primary as not holding the log's entry before it
    backfills, and clears the marks of the keys it wrote. Stopped mid-way (a crash, the
    location failing), the marks stayed; a forced promotion then took the location to hold
    nothing for those keys, though it held what it held as primary. An application's delete
    there (one a Cosmos DB change feed never reports) looked like a key it never had, and a
    late write recovered from the old primary was delivered over it (feed seeds 301480 and
    301762). The promotion now falls back on what the location held when it was last primary,
    and a lane that delivers an entry there clears the marks at or before it."""
    from mcrepl.orchestrator.state.log import Captured

    schema = KeySchema(KeyAttribute("id"))
    log = StateStore(tmp_path / "state.db").log
    origin = f"{COSMOS}/app"

    def entry(n: int, wall_ms: int) -> Record:
        version = Version(wall_ms, 0, origin)
        return document(schema, {"id": "k1", "n": n}).stamped(version, {origin: version.token})

    def held(location: str) -> list[Captured]:
        return log.known_at("ds", location, ["k1"]).get("k1", [])

    first = entry(1, 1000)
    assert first.meta is not None
    head = log.commit_page("ds", COSMOS, 1, [first], {"pos": 1})
    log.hand_over("ds", COSMOS, GCS, head)                 # COSMOS demoted, holding the first entry
    log.mark_unheld("ds", COSMOS, head)                    # its rejoin's backfill began, and stopped
    log.hand_over("ds", GCS, COSMOS, head)                 # promoted by force before it finished
    assert [c.meta.version for c in held(COSMOS)] == [first.meta.version]

    second = entry(2, 2000)
    assert second.meta is not None
    head = log.commit_page("ds", COSMOS, 2, [second], {"pos": 2})
    log.hand_over("ds", COSMOS, GCS, head)
    third = entry(3, 3000)
    assert third.meta is not None
    head = log.commit_page("ds", GCS, 3, [third], {"pos": 3})
    log.mark_unheld("ds", COSMOS, head)                    # a backfill stopped again, before the third ...
    log.note_taken("ds", COSMOS, [("k1", head)])          # ... which COSMOS's lane then delivered
    log.hand_over("ds", GCS, COSMOS, head)
    assert [c.meta.version for c in held(COSMOS)] == [third.meta.version]


def test_a_pass_that_goes_on_with_a_listing_begun_before_it_lists_once_more_before_caught_up(
        tmp_path: Path, world: MemoryWorld) -> None:
    """A listing (GCS, S3 capture) sees a change made behind its position only in its next pass.
    A follow round can leave the capture cursor in the middle of a listing; the next sync pass
    used to go on from there to the end of that listing and say *caught up*, with a delete made
    behind the cursor before the pass began still unlogged (listing + follow seed 250421). It
    now reads on to the end of a listing it began itself."""
    from mcrepl.orchestrator.sync.follow import FollowSession
    from .test_sync_helpers import ControlledAdapter

    config = make_config(tmp_path, sync={"batch_size": 2})
    primary_target = config.target("customers", PRIMARY)
    world.adapters[PRIMARY] = ControlledAdapter(MemoryAdapter(dataclasses.replace(
        primary_target, provider="memory", options={"namespace": world.namespace, "capture": "listing"})))
    assert not world.adapters[PRIMARY].capabilities.incremental_capture
    state = StateStore(tmp_path / "state.db")
    records = _seed(config, world, 6)
    assert _engine(config, state, world).run_once().ok
    _assert_converged(config, world)

    _seed(config, world, 4, start=2, edited=True)   # four changed objects: a listing page holds two
    session = FollowSession(_engine(config, state, world), "customers")
    for lane in session.lanes.values():           # lanes attach before a follower captures
        lane.step()
    session.capture_step()                        # one page of a new listing: the cursor is mid-listing
    assert state.log.cursor("customers", PRIMARY).get("at") is not None
    world.adapter(config, PRIMARY).delete_native([records[0].key])     # behind the cursor
    report = _engine(config, state, world).run_once()
    assert report.ok and report.datasets["customers"].caught_up
    assert records[0].key.id not in live(world.adapter(config, GCS)), "caught up: the delete reached the replicas"
    _assert_converged(config, world)


def _vm_steps(state: StateStore, work: Callable[[], object]) -> int:
    """SQLite virtual-machine steps (in hundreds) ``work`` costs: a count of rows visited, not a time."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0
    conn = state.db._conn
    conn.set_progress_handler(count, 100)
    try:
        work()
    finally:
        conn.set_progress_handler(None, 100)
    return steps[0]


def test_a_key_lookup_in_the_log_reads_that_keys_entries_not_the_whole_log(tmp_path: Path) -> None:
    """Capture asks the log, per record carrying mcrepl metadata, whether it holds that version
    (and ``latest`` reads one key's last entry). Without naming the key index SQLite's planner
    read every entry of the dataset per lookup: a 100,000-record pass ran for many minutes. The
    same lookups over a log 8× longer must cost about the same."""
    schema = KeySchema(KeyAttribute("pk"))
    probe = [document(schema, {"pk": f"probe{i}"}).stamped(Version(10**12 + i, 0, PRIMARY)) for i in range(20)]

    def costs(filler: int) -> tuple[int, int]:
        state = StateStore(tmp_path / f"log{filler}.db", audit=None)
        for start in range(0, filler, 500):
            page = [document(schema, {"pk": f"k{n:07d}"}).stamped(Version(10**12 + n, 1, PRIMARY))
                    for n in range(start, min(filler, start + 500))]
            state.log.commit_page("ds", PRIMARY, 1, page, {"page": start})
        state.log.commit_page("ds", PRIMARY, 1, probe, {"page": "probe"})
        return (_vm_steps(state, lambda: state.log.logged_versions("ds", probe)),
                _vm_steps(state, lambda: [state.log.latest("ds", r.key) for r in probe]))

    short, long = costs(1_000), costs(8_000)
    assert long[0] <= 2 * short[0] + 5, f"logged_versions: {short[0]} → {long[0]} steps for 8× the log"
    assert long[1] <= 2 * short[1] + 5, f"latest: {short[1]} → {long[1]} steps for 8× the log"


def _rejoined_after_forced_promotion(config, state, world, n: int,  # type: ignore[no-untyped-def]
                                     before_promotion: Callable[[], None] | None = None) -> SyncEngine:
    """``n`` customers replicated, GCS promoted by force, and a pass in which the old primary rejoins."""
    _seed(config, world, n)
    engine = _engine(config, state, world)
    assert engine.run_once().ok
    if before_promotion is not None:
        before_promotion()
        assert engine.run_once().ok
    engine.promote("customers", GCS, force=True)
    assert engine.run_once().ok                          # the old primary rejoins
    return engine


@pytest.mark.parametrize("window, watched", [("1h", True), ("0s", False)])
def test_a_former_primarys_change_log_is_read_for_late_writes_only_within_the_watch(
        tmp_path: Path, world: MemoryWorld, window: str, watched: bool) -> None:
    """After a promotion the old primary's change log is read before its lane writes there, for
    ``sync.late_write_watch`` after the demotion; after that (here: a window of 0) it is not."""
    config = make_config(tmp_path, sync={"late_write_watch": window})
    state = StateStore(tmp_path / "state.db")
    engine = _rejoined_after_forced_promotion(config, state, world, 5)
    old = world.adapter(config, PRIMARY)
    old.capture_calls = 0
    world.adapter(config, GCS).write_native([document(config.datasets["customers"].key_schema(), customer(1, tier=9))])
    report = engine.run_once()
    assert report.ok and report.datasets["customers"].lanes[PRIMARY].applied == 1
    assert (old.capture_calls > 0) is watched, old.capture_calls
    engine.close()
    state.close()


def test_a_late_write_watch_that_lost_its_position_resumes_from_the_current_one(
        tmp_path: Path, world: MemoryWorld, caplog: pytest.LogCaptureFixture) -> None:
    """Where the old primary's change log no longer reaches back to the saved cursor (here: it is
    gone), the watch says so and reads on from the current position: a late write deleted again
    after that is still found and settled as a conflict with the new primary's write."""
    config = make_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    schema = config.datasets["customers"].key_schema()
    old, new = world.adapter(config, PRIMARY), world.adapter(config, GCS)
    engine = _rejoined_after_forced_promotion(
        config, state, world, 3, before_promotion=lambda: old.delete_native([document(schema, customer(1)).key]))
    state.log.save_cursor("customers", PRIMARY, None)
    new.write_native([document(schema, customer(2, tier=5))])
    with caplog.at_level("WARNING", logger="mcrepl.sync.late_writes"):
        assert engine.run_once().ok
    assert "watched from now on" in caplog.text
    old.write_native([document(schema, customer(1, tier=7))])     # the application, not told yet
    old.delete_native([document(schema, customer(1)).key])
    new.write_native([document(schema, customer(1, tier=8))])
    assert engine.run_once().ok
    assert [c["key_id"] for c in state.journal.conflicts("customers")] == ["c00001"]
    engine.close()
    state.close()


def test_a_late_write_watch_that_cannot_read_the_change_log_never_holds_up_the_lane(
        tmp_path: Path, world: MemoryWorld, caplog: pytest.LogCaptureFixture) -> None:
    """The old primary's change log refuses to be read (its stream turned off, say): the lane
    still delivers there, with a warning; late writes are found as the writer meets them."""
    config = make_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    schema = config.datasets["customers"].key_schema()
    engine = _rejoined_after_forced_promotion(config, state, world, 3)
    old = world.adapter(config, PRIMARY)

    def stream_off(calls: int) -> None:
        raise AdapterError("the table has no stream (StreamSpecification.StreamEnabled is false)",
                           replica=PRIMARY, operation="capture")
    old.before_capture = stream_off
    world.adapter(config, GCS).write_native([document(schema, customer(2, tier=5))])
    with caplog.at_level("WARNING", logger="mcrepl.sync.late_writes"):
        report = engine.run_once()
    assert report.ok and report.datasets["customers"].lanes[PRIMARY].applied == 1
    assert "could not be read" in caplog.text
    engine.close()
    state.close()
