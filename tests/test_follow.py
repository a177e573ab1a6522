"""Follow mode on the in-memory reference adapter (fast): config, backpressure, drain, heartbeats, RPO.

The same follower runs against the emulators in ``test_follow_emulators.py``; here the
stores are our own reference implementation, so a test can switch a replica off and step
the follower by hand.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from mcrepl.adapters.base import document
from mcrepl.adapters.base.reserved import heartbeat_key
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.observability.metrics import SyncMetrics
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine
from mcrepl.orchestrator.sync.follow import FollowSession
from mcrepl.orchestrator.sync.follow_runner import Follower
from mcrepl.orchestrator.sync.rpo import rpo_estimate
from mcrepl.orchestrator.yaml_model import LocatedValueError

from .test_sync_helpers import COSMOS, GCS, PRIMARY, MemoryWorld, customer, live, make_config, raw_config


@pytest.fixture()
def world() -> Iterator[MemoryWorld]:
    w = MemoryWorld(f"t{uuid.uuid4().hex[:8]}")
    yield w
    w.drop()


def _follow_config(tmp_path: Path, **follow: Any) -> McreplConfig:
    raw = raw_config(tmp_path, {"batch_size": 10, "follow": {"poll_interval": "20ms", **follow},
                                "breaker_reset": "1s"})
    raw["datasets"]["customers"]["sync"] = {"mode": "follow", "heartbeat": "50ms", "lag_objective": "1s"}
    return McreplConfig.model_validate(raw)


def _write(config: McreplConfig, world: MemoryWorld, ids: range) -> None:
    schema = config.datasets["customers"].key_schema()
    world.adapter(config, PRIMARY).write_native([document(schema, customer(i)) for i in ids])


def test_follow_settings_are_validated_where_they_are_written(tmp_path: Path) -> None:
    config = _follow_config(tmp_path)
    ds = config.datasets["customers"]
    assert ds.sync.mode == "follow" and ds.sync.heartbeat.total_seconds() == 0.05
    assert make_config(tmp_path).datasets["customers"].sync.mode == "scheduled"
    raw = raw_config(tmp_path)
    raw["datasets"]["customers"]["key"] = {"partition": {"name": "customer_id", "type": "N"}}
    raw["datasets"]["customers"]["sync"] = {"mode": "follow"}
    with pytest.raises(Exception, match="heartbeats need a string partition key"):
        McreplConfig.model_validate(raw)
    raw["datasets"]["customers"]["sync"] = {"mode": "follow", "heartbeat": None}
    assert McreplConfig.model_validate(raw).datasets["customers"].sync.heartbeat is None
    raw["datasets"]["customers"]["sync"] = {"heartbeat": "10ms"}
    with pytest.raises((LocatedValueError, ValueError), match="shorter than 50ms"):
        McreplConfig.model_validate(raw)


def test_follower_applies_continuously_drains_on_stop_and_times_heartbeats(tmp_path: Path,
                                                                           world: MemoryWorld) -> None:
    config = _follow_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    metrics = SyncMetrics()
    engine = SyncEngine(config, state, adapter_factory=world.factory, metrics=metrics)
    follower = Follower(engine, ["customers"])
    thread = threading.Thread(target=follower.run, daemon=True)
    thread.start()
    try:
        for start in range(0, 120, 10):
            _write(config, world, range(start, start + 10))
            time.sleep(0.02)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                len(live(world.adapter(config, GCS))) == 121
                and state.heartbeats.summary("customers", COSMOS, 0).samples >= 3):
            time.sleep(0.05)
        _write(config, world, range(120, 125))      # captured or not when the stop comes: nothing is lost
    finally:
        follower.stop()
        thread.join(timeout=30)
    report = follower.report
    assert report.drained and not thread.is_alive()
    ds = report.datasets["customers"]
    assert set(ds.lanes) == {COSMOS, GCS} and all(lane.caught_up for lane in ds.lanes.values())
    for replica in (COSMOS, GCS):
        row = state.lanes.get("customers", replica)
        assert row.offset == state.log.head("customers"), "drained: every captured change applied"
        held = len(live(world.adapter(config, replica))) - 1           # less the heartbeat
        assert row.applied == held >= 120, "each user change applied once; heartbeats are not counted as changes"
        assert state.heartbeats.summary("customers", replica, 0).samples >= 3
        assert metrics.value("mcrepl_replication_lag_seconds_count", dataset="customers", replica=replica) >= 3
    assert ds.captured > held, "the heartbeats were captured and logged like any change"
    # what the stop left uncaptured is still at the primary: the next run carries it
    assert SyncEngine(config, state, adapter_factory=world.factory).run_once().ok
    assert len(live(world.adapter(config, GCS))) == 126, "125 records and the heartbeat"
    assert world.adapter(config, COSMOS).read(heartbeat_key(config.datasets["customers"].key_schema())) is not None


def test_backpressure_pauses_capture_for_answering_lanes_only(tmp_path: Path, world: MemoryWorld) -> None:
    config = _follow_config(tmp_path, max_backlog=15)
    state = StateStore(tmp_path / "state.db")
    engine = SyncEngine(config, state, adapter_factory=world.factory)
    _write(config, world, range(60))
    session = FollowSession(engine, "customers")
    for lane in session.lanes.values():          # attach: nothing is logged yet, so nothing is applied
        lane.step()
    for _ in range(10):                          # capture only: the lanes do not step
        session.capture_step()
    assert state.log.head("customers") == 20, "capture paused once the answering lanes were 15 behind"
    world.adapter(config, GCS).down = True       # GCS stops answering: its lane leaves the count
    for _ in range(20):
        for lane in session.lanes.values():
            lane.retry_at = 0.0
            lane.step(draining=True)
        session.capture_step()
    assert state.log.head("customers") == 60, "a lane whose store is down never holds capture back"
    assert session.lanes[COSMOS].drained(60) and not session.lanes[GCS].drained(60)
    assert state.lanes.get("customers", GCS).breaker_opened_at is not None, "its breaker opened"
    world.adapter(config, GCS).down = False
    time.sleep(1.1)                              # breaker_reset: the next batch is the half-open probe
    session.lanes[GCS].retry_at = 0.0
    assert session.drain(200)
    assert live(world.adapter(config, GCS)) == live(world.adapter(config, PRIMARY))


def test_rpo_estimate_grows_when_heartbeats_stop_arriving(tmp_path: Path) -> None:
    config = _follow_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    now = 1_800_000_000.0
    now_ms = int(now * 1000)
    assert rpo_estimate(config, state, "customers", COSMOS, now)["heartbeat"] == "off"
    # heartbeats every second; Cosmos DB received them 0.2 s late until 30 s ago, then nothing
    state.heartbeats.sent("customers", PRIMARY, now_ms - 500, 1.0)
    state.heartbeats.arrived("customers", COSMOS, [(now_ms - s * 1000, now_ms - s * 1000 + 200)
                                                   for s in range(30, 120)])
    state.heartbeats.arrived("customers", GCS, [(now_ms - s * 1000, now_ms - s * 1000 + 300) for s in range(1, 120)])
    cosmos = rpo_estimate(config, state, "customers", COSMOS, now)
    assert cosmos["lag_p99"] == 0.2 and cosmos["heartbeat_age"] == 30.0
    assert cosmos["rpo_estimate"] == 29.0 and cosmos["objective_met"] is False
    gcs = rpo_estimate(config, state, "customers", GCS, now)
    assert gcs["lag_p50"] == gcs["lag_p99"] == 0.3 and gcs["rpo_estimate"] == 0.3 and gcs["objective_met"] is True
    later = rpo_estimate(config, state, "customers", GCS, now + 60)
    assert later["heartbeat"].startswith("stopped") and later["rpo_estimate"] is None


def test_status_shows_heartbeat_lag_and_rpo_estimate(tmp_path: Path) -> None:
    import yaml
    from mcrepl.orchestrator.cli import app
    raw = raw_config(tmp_path)
    raw["datasets"]["customers"]["sync"] = {"mode": "follow", "lag_objective": "1s"}
    config_file = tmp_path / "mcrepl.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    state = StateStore(tmp_path / "state" / "state.db")
    now_ms = int(time.time() * 1000)
    state.heartbeats.sent("customers", PRIMARY, now_ms, 1.0)
    state.heartbeats.arrived("customers", COSMOS, [(now_ms - 2000, now_ms - 1800), (now_ms - 1000, now_ms - 700)])
    state.close()
    result = CliRunner().invoke(app, ["status", "--config", str(config_file), "--format", "json"])
    assert result.exit_code == 0, result.output
    import json
    rows = {r["replica"]: r for r in json.loads(result.output)}
    assert rows[COSMOS]["heartbeat_lag"]["lag_samples"] == 2 and rows[COSMOS]["heartbeat_lag"]["lag_p99"] == 0.3
    assert rows[GCS]["heartbeat_lag"]["rpo_estimate"] is None
    table = CliRunner().invoke(app, ["status", "--config", str(config_file)], env={"COLUMNS": "300"})
    assert "RPO estimate" in table.output and "none arrived" in table.output
    failover = CliRunner().invoke(app, ["failover", "status", "--config", str(config_file), "--format", "json"])
    assert failover.exit_code == 0, failover.output
    (ds,) = json.loads(failover.output)
    lags = {r["location"]: r["heartbeat_lag"] for r in ds["replicas"]}
    assert lags[COSMOS]["lag_p50"] == 0.2 and lags[COSMOS]["rpo_estimate"] is not None and lags[GCS]["lag_samples"] == 0


def test_scheduled_passes_carry_heartbeats_so_status_shows_their_lag(tmp_path: Path, world: MemoryWorld) -> None:
    """``sync --schedule`` writes heartbeats beside its passes: the next pass delivers and times them."""
    from mcrepl.orchestrator.sync.heartbeat import scheduled_beat
    from mcrepl.orchestrator.verify import compare_adapters
    raw = raw_config(tmp_path)
    raw["datasets"]["customers"]["sync"] = {"heartbeat": "200ms", "lag_objective": "5s"}   # mode: scheduled
    config = McreplConfig.model_validate(raw)
    state = StateStore(tmp_path / "state.db")
    engine = SyncEngine(config, state, adapter_factory=world.factory)
    _write(config, world, range(10))
    written_ms = scheduled_beat(engine, "customers")
    assert written_ms is not None
    time.sleep(0.3)                                   # the heartbeat waits for the next pass, as user writes do
    assert engine.run_once("customers").ok
    now = time.time()
    for replica in (COSMOS, GCS):
        lag = rpo_estimate(config, state, "customers", replica, now)
        assert lag["lag_samples"] == 1 and lag["lag_p99"] >= 0.3, "timed from its write, the wait included"
        assert lag["heartbeat"] == "every 0.2s" and lag["rpo_estimate"] is not None
        assert state.lanes.get("customers", replica).applied == 10, "the heartbeat is not a user change"
    hb = heartbeat_key(config.datasets["customers"].key_schema())
    assert world.adapter(config, GCS).read(hb) is not None, "it travelled like any record"
    adapters = {r: world.adapter(config, r) for r in (PRIMARY, COSMOS, GCS)}
    world.adapter(config, PRIMARY).write_heartbeat(written_ms + 1)   # a newer one, not yet delivered
    result = compare_adapters("customers", adapters)
    assert result.clean and result.divergent == 0, "heartbeats are outside verify: a newer one in flight is no difference"
    assert result.keys[PRIMARY] == result.keys[GCS] == 10, "nor are they counted as keys"
    # a dataset whose partition key is not a string gets no heartbeat job, and the engine writes none
    raw["datasets"]["customers"]["key"] = {"partition": {"name": "customer_id", "type": "N"}}
    numeric = McreplConfig.model_validate(raw)
    from mcrepl.orchestrator.sync.schedule import build_scheduler
    assert [job.id for job in build_scheduler(object(), numeric).get_jobs()] == ["sync:customers"]


def test_a_stop_interrupts_anti_entropy_planning_and_writes_nothing(tmp_path: Path, world: MemoryWorld) -> None:
    """SIGTERM while a follower's anti-entropy reads differing keys one by one: it stops, says so, repairs
    nothing (a drain must not wait on hundreds of reads); the verdict is 'not converged', never 'converged'."""
    from mcrepl.orchestrator.sync.antientropy import AntiEntropy, anti_entropy_settings
    config = _follow_config(tmp_path)
    state = StateStore(tmp_path / "state.db")
    engine = SyncEngine(config, state, adapter_factory=world.factory)
    _write(config, world, range(30))                 # at the primary only: 30 keys differ everywhere
    session = FollowSession(engine, "customers")
    adapters = {t.replica: engine.adapter(t) for t in [session.primary, *session.replicas]}
    runner = AntiEntropy(config, "customers", state, engine.router, adapters, engine.settling("customers", session.pointer),
                         anti_entropy_settings(config, "customers"), engine.clock)
    asked = iter(range(1000))
    runner.should_stop = lambda: next(asked) >= 5    # a stop arrives after five keys were examined
    summary, plan = runner.run(repair=True, deliver=lambda: pytest.fail("nothing may be delivered"))
    assert plan.unexamined == 25 and len(plan.writes) <= 5, "planning stopped after five keys"
    assert summary.converged is False and summary.repaired == 0 and "stopped while planning" in summary.detail
    assert len(live(world.adapter(config, GCS))) == 0, "nothing written"
