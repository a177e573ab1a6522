"""Follow mode (``mcrepl sync --follow``) against the real emulators (moto, the Cosmos DB emulator, fake-gcs).

Issue 18's "done when": a follower SIGKILLed mid-stream and restarted loses nothing; a
hung replica lane does not raise the other replica's lag; heartbeats never appear in
verify results, counts or user-facing reads. Every test has its own namespace and drops it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import pytest
import yaml

from mcrepl.adapters.base import document
from mcrepl.adapters.base.reserved import heartbeat_key, is_reserved
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine
from mcrepl.orchestrator.sync.follow_runner import Follower

from .test_sync_emulators import _progress
from .test_sync_helpers import (COSMOS, GCS, PRIMARY, Stores, customer, digests, emulator_raw_config,
                                mcrepl_subprocess)
from .test_sync_helpers import endpoints, namespace  # noqa: F401 - fixtures

__all__ = ["endpoints", "namespace"]


def _user(adapter: Any) -> dict[str, tuple[str, bool]]:
    """key → (hash, tombstone) of the user's records (mcrepl's reserved range left out)."""
    return {k: v for k, v in digests(adapter).items() if not is_reserved(k)}


def _live(adapter: Any) -> dict[str, str]:
    return {k: h for k, (h, t) in _user(adapter).items() if not t}


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:g}s: {what}")


def _follow_subprocess(config_file: Path, namespace: str, endpoints: dict[str, str]) -> subprocess.Popen:
    return mcrepl_subprocess(["sync", "--follow", "--config", str(config_file), "--format", "json"], namespace,
                             endpoints, cwd=config_file.parent)


def _in_process(tmp_path: Path, endpoints: dict[str, str], reach: dict[str, str], namespace: str,
                dataset_sync: dict[str, Any], **sync: Any) -> tuple[Any, ...]:
    """config, stores, state, engine, a follower of ``customers`` and its (unstarted) thread;
    the engine reaches the stores through ``reach`` (a fault proxy in front of one of them)."""
    raw = emulator_raw_config(tmp_path, batch_size=20, **sync)
    raw["datasets"]["customers"]["sync"] = dataset_sync
    config = McreplConfig.model_validate(raw)
    state = StateStore(tmp_path / "state.db")
    engine = SyncEngine(config, state, local_endpoints=reach, namespace=namespace)
    follower = Follower(engine, ["customers"])
    return (config, Stores(config, endpoints, namespace), state, engine, follower,
            threading.Thread(target=follower.run, daemon=True))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 17])
def test_sigkilled_follower_restarts_and_loses_nothing(tmp_path: Path, endpoints: dict[str, str],
                                                       namespace: str, seed: int) -> None:
    rng = random.Random(seed)
    raw = emulator_raw_config(tmp_path, batch_size=20)
    raw["datasets"]["customers"]["sync"] = {"mode": "follow", "heartbeat": "200ms"}
    config_file = tmp_path / "mcrepl.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    stores = Stores(McreplConfig.model_validate(raw), endpoints, namespace)
    schema = stores.config.datasets["customers"].key_schema()
    primary = stores[PRIMARY]
    db = tmp_path / "state" / "state.db"
    try:
        primary.write_native([document(schema, customer(i)) for i in range(150)])
        proc = _follow_subprocess(config_file, namespace, endpoints)
        # writes keep coming while it follows; it is killed at a random point of observed progress
        target = rng.randint(60, 300)
        written = 150
        while proc.poll() is None and _progress(db) < target:
            primary.write_native([document(schema, customer(written))])
            written += 1
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        # the application goes on while the follower is down: inserts, updates, deletes
        touched = rng.sample(range(written), 30)
        primary.write_native([document(schema, customer(i, tier=7, note="while down")) for i in touched[:20]])
        primary.delete_native([document(schema, customer(i)).key for i in touched[20:]])
        primary.write_native([document(schema, customer(i)) for i in range(written, written + 40)])
        proc = _follow_subprocess(config_file, namespace, endpoints)
        try:
            expected = _live(primary)
            _wait_for(lambda: _live(stores[COSMOS]) == expected and _live(stores[GCS]) == expected, 120,
                      "both replicas hold exactly the primary's records after the restart")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
        report = json.loads(out)
        assert report["drained"] is True
        lanes = report["datasets"]["customers"]["lanes"]
        assert set(lanes) == {COSMOS, GCS} and all(lane["caught_up"] for lane in lanes.values())
        assert len(expected) == written + 40 - 10
        # the same version of every key everywhere, tombstones included: nothing lost, nothing re-stamped
        versions = {d.key_id: d.version for d in stores[COSMOS].list_digests() if not is_reserved(d.key_id)}
        assert versions == {d.key_id: d.version for d in stores[GCS].list_digests() if not is_reserved(d.key_id)}
        assert _user(stores[COSMOS]) == _user(stores[GCS])
    finally:
        stores.drop()


def test_hung_replica_lane_does_not_raise_the_other_replicas_lag(tmp_path: Path, endpoints: dict[str, str],
                                                                 namespace: str) -> None:
    from mcrepl.failover.faults.proxy import FaultProxy
    gcs_url = urlparse(endpoints["gcs"])
    proxy = FaultProxy(gcs_url.hostname or "127.0.0.1", gcs_url.port or 80)
    port = proxy.start()
    proxied = {**endpoints, "gcs": f"{gcs_url.scheme}://127.0.0.1:{port}"}
    hang_s = 20.0
    config, stores, state, engine, follower, thread = _in_process(
        tmp_path, endpoints, proxied, namespace, {"mode": "follow", "heartbeat": "200ms"},
        retry_deadline=f"{hang_s:g}s")
    schema = config.datasets["customers"].key_schema()
    try:
        stores[PRIMARY].write_native([document(schema, customer(i)) for i in range(40)])
        thread.start()
        _wait_for(lambda: state.heartbeats.summary("customers", GCS, 0).samples >= 2
                  and state.heartbeats.summary("customers", COSMOS, 0).samples >= 2, 60,
                  "heartbeats reach both replicas before the fault")
        proxy.set_mode("blackhole")               # GCS accepts connections and answers nothing
        hung_at_ms = int(time.time() * 1000)
        for i in range(40, 140):                  # the application keeps writing during the hang
            stores[PRIMARY].write_native([document(schema, customer(i))])
            time.sleep(0.05)
        expected = _live(stores[PRIMARY])
        _wait_for(lambda: _live(stores[COSMOS]) == expected, 10, "Cosmos DB holds every write made during the hang")
        during = state.db.rows("SELECT replica, arrived_ms - written_ms AS lag FROM heartbeat_arrivals "
                               "WHERE dataset='customers' AND written_ms>=?", (hung_at_ms,))
        cosmos_lags = [r["lag"] / 1000 for r in during if r["replica"] == COSMOS]
        assert not [r for r in during if r["replica"] == GCS], "the GCS lane really was hung"
        assert len(cosmos_lags) >= 10, "heartbeats kept arriving at Cosmos DB during the hang"
        # had the Cosmos lane waited on the hung one, its lag would be the hang itself (20 s)
        assert max(cosmos_lags) < hang_s / 4, cosmos_lags
        proxy.set_mode("pass")
        _wait_for(lambda: _live(stores[GCS]) == expected, 90, "GCS catches up once it answers again")
    finally:
        follower.stop()
        thread.join(timeout=60)
        engine.close()
        stores.drop()
        proxy.stop()
    assert follower.report.datasets["customers"].lanes[GCS].caught_up
    assert follower.report.drained


def test_heartbeats_stay_out_of_verify_counts_and_reads(tmp_path: Path, endpoints: dict[str, str],
                                                        namespace: str) -> None:
    from mcrepl.orchestrator.sync.status import lane_status
    from mcrepl.orchestrator.verify import verify_dataset
    config, stores, state, engine, follower, thread = _in_process(
        tmp_path, endpoints, endpoints, namespace, {"mode": "follow", "heartbeat": "100ms", "lag_objective": "1s"})
    schema = config.datasets["customers"].key_schema()
    hb = heartbeat_key(schema)
    try:
        stores[PRIMARY].write_native([document(schema, customer(i)) for i in range(30)])
        thread.start()
        _wait_for(lambda: all(state.heartbeats.summary("customers", r, 0).samples >= 3 for r in (COSMOS, GCS))
                  and all(len(_live(stores[r])) == 30 for r in (COSMOS, GCS)), 60, "records and heartbeats arrive")
        follower.stop()
        thread.join(timeout=60)
        assert follower.report.drained
        for location in (PRIMARY, COSMOS, GCS):
            assert stores[location].read(hb) is not None, f"the heartbeat is a real record at {location}"
        # a replica's heartbeat differing from the primary's is no divergence: remove one, change another
        stores[GCS].delete_native([hb])
        report = verify_dataset(config, "customers", local_endpoints=endpoints, namespace=namespace, alert=False)
        assert report.keys == {PRIMARY: 30, COSMOS: 30, GCS: 30}
        assert report.clean and [d.key_id for p in report.pairs for d in p.divergences] == []
        summary = engine.verify("customers").verify
        assert summary is not None and summary.converged and summary.divergent == 0 and summary.repaired == 0
        rows = {r["replica"]: r for r in lane_status(config, state)}
        for replica in (COSMOS, GCS):
            row = rows[replica]
            assert row["applied"] == 30, "lane counters count user changes only"
            hb_row = row["heartbeat_lag"]
            assert hb_row["lag_samples"] >= 3 and hb_row["lag_p99"] is not None and hb_row["lag_objective"] == 1.0
    finally:
        follower.stop()
        engine.close()
        stores.drop()
