"""The sync engine against the real emulators (moto DynamoDB, the Cosmos DB emulator, fake-gcs-server).

Issue 3's "done when": convergence of inserts, updates and deletes; exactly-once effect
of repeated and shuffled delivery; SIGKILL crash safety of ``mcrepl sync --once``; and a
replica made unreachable mid-sync (behind the fault proxy) that stops only its own lane.
Every test works in its own namespace (table, database and bucket names) and drops it.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import signal
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest
import yaml

from mcrepl.adapters.base import document
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.hlc import HybridLogicalClock
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine
from mcrepl.orchestrator.sync.capture import PageCapturer

from .test_sync_helpers import (COSMOS, GCS, PRIMARY, Stores, customer, digests, emulator_raw_config, live,
                                mcrepl_subprocess)
from .test_sync_helpers import endpoints, namespace  # noqa: F401 - fixtures


@pytest.fixture()
def stores(tmp_path: Path, endpoints: dict[str, str], namespace: str) -> Iterator[Stores]:
    s = Stores(McreplConfig.model_validate(emulator_raw_config(tmp_path)), endpoints, namespace)
    yield s
    s.drop()


def _assert_converged(stores: Stores) -> None:
    cosmos, gcs = digests(stores[COSMOS]), digests(stores[GCS])
    assert cosmos == gcs
    assert {k: h for k, (h, t) in cosmos.items() if not t} == live(stores[PRIMARY])


def test_inserts_updates_deletes_converge_across_three_stores(tmp_path: Path, endpoints: dict[str, str],
                                                              namespace: str, stores: Stores) -> None:
    config = stores.config
    schema = config.datasets["customers"].key_schema()
    primary = stores[PRIMARY]
    primary.write_native([document(schema, customer(i)) for i in range(80)])
    state = StateStore(tmp_path / "state.db")
    engine = SyncEngine(config, state, local_endpoints=endpoints, namespace=namespace)
    try:
        first = engine.run_once()
        assert first.ok and first.datasets["customers"].captured == 80
        primary.write_native([document(schema, customer(i, tier=42, note="updated")) for i in range(0, 80, 4)])
        primary.delete_native([document(schema, customer(i)).key for i in range(1, 80, 8)])
        second = engine.run_once()
    finally:
        engine.close()
    ds = second.datasets["customers"]
    assert second.ok and ds.captured == 20 + 10
    assert all(lane.applied == 30 for lane in ds.lanes.values())
    _assert_converged(stores)
    tombstones = {k for k, (_, t) in digests(stores[GCS]).items() if t}
    assert tombstones == {document(schema, customer(i)).key.id for i in range(1, 80, 8)}


def test_repeated_and_shuffled_delivery_equals_one_ordered_delivery(tmp_path: Path, endpoints: dict[str, str],
                                                                    namespace: str, stores: Stores) -> None:
    config = stores.config
    schema = config.datasets["customers"].key_schema()
    primary = stores[PRIMARY]
    primary.write_native([document(schema, customer(i)) for i in range(30)])
    state = StateStore(tmp_path / "state.db")
    clock = HybridLogicalClock(PRIMARY, state.load_clock())
    target = config.target("customers", PRIMARY, endpoints, namespace)
    capturer = PageCapturer(target, state, clock, 1)
    while capturer.capture_page(primary, 500).more:
        pass
    primary.write_native([document(schema, customer(i, tier=5)) for i in range(10)])
    primary.delete_native([document(schema, customer(i)).key for i in range(25, 30)])
    while capturer.capture_page(primary, 500).more:
        pass
    stamped = [e.record for e in state.log.read("customers", 0, 1000)[0]]
    assert len(stamped) == 45
    # three other stores in a second namespace: one ordered delivery, three, and shuffled triples
    other = Stores(config, endpoints, f"{namespace}x")
    try:
        ordered, thrice, shuffled = other[GCS], other[COSMOS], other[PRIMARY]
        ordered.apply_batch(stamped)
        outcomes = [r.outcome.value for _ in range(3) for r in thrice.apply_batch(stamped)]
        mixed = stamped * 3
        random.Random(3).shuffle(mixed)
        mixed_outcomes = [r.outcome.value for r in shuffled.apply_batch(mixed)]
        assert digests(ordered) == digests(thrice) == digests(shuffled)
        assert outcomes.count("applied") == 45
        assert outcomes.count("replayed") == 2 * 30 and outcomes.count("stale") == 2 * 15
        assert mixed_outcomes.count("applied") <= 45
        assert mixed_outcomes.count("replayed") + mixed_outcomes.count("stale") == 135 - mixed_outcomes.count("applied")
    finally:
        other.drop()


def _sync_subprocess(config_file: Path, namespace: str, endpoints: dict[str, str]) -> subprocess.Popen:
    return mcrepl_subprocess(["sync", "--once", "--config", str(config_file), "--format", "json"], namespace,
                             endpoints, cwd=config_file.parent)


def _progress(db: Path) -> int:
    """Changes captured plus changes committed by every lane, read from the live state file."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            captured = conn.execute("SELECT COALESCE(SUM(captured_total), 0) FROM datasets").fetchone()[0]
            applied = conn.execute("SELECT COALESCE(SUM(offset), 0) FROM lanes").fetchone()[0]
    except sqlite3.OperationalError:      # tables not created yet, or a writer holds the lock
        return 0
    return int(captured) + int(applied)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 22, 33])
def test_sigkilled_sync_restarts_converged_without_loss_or_duplicates(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, stores: Stores, seed: int) -> None:
    rng = random.Random(seed)
    raw = emulator_raw_config(tmp_path, batch_size=25, max_in_flight=2)
    config_file = tmp_path / "mcrepl.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    schema = stores.config.datasets["customers"].key_schema()
    primary = stores[PRIMARY]
    primary.write_native([document(schema, customer(i)) for i in range(300)])
    changes_made = 300
    kills = 0
    db = tmp_path / "state" / "state.db"
    for round_ in range(3):
        # kill on observed progress, not after a fixed time: a fast run can't slip past the crash point
        target = _progress(db) + rng.randint(1, 250)
        proc = _sync_subprocess(config_file, namespace, endpoints)
        while proc.poll() is None and _progress(db) < target:
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=30)
        touched = rng.sample(range(300), 20)
        primary.write_native([document(schema, customer(i, tier=round_ + 10)) for i in touched[:15]])
        primary.delete_native([document(schema, customer(i)).key for i in touched[15:]])
        changes_made += 20
        time.sleep(2.1)   # past the scan-overlap margin, so a resumed scan re-reads these keys exactly
    proc = _sync_subprocess(config_file, namespace, endpoints)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert kills >= 1, "no run was killed: the crash points missed the sync"
    assert json.loads(out)["ok"]
    _assert_converged(stores)
    state = StateStore(tmp_path / "state" / "state.db")
    captured = state.log.totals("customers")["captured_total"]
    # deletes of a key deleted earlier are no change; everything else must be stamped exactly once
    assert 0 < captured <= changes_made, "a change was stamped twice"
    for replica in (COSMOS, GCS):
        lane = state.lanes.get("customers", replica)
        assert lane.applied + lane.replayed + lane.stale + lane.rejected + lane.withheld == captured, \
            f"{replica}: every logged change is committed exactly once (kills: {kills})"
    versions = {k: v for k, v in ((d.key_id, d.version) for d in stores[COSMOS].list_digests())}
    assert versions == {d.key_id: d.version for d in stores[GCS].list_digests()}


class _FlipOnFirstBatch:
    """An audit sink that cuts the replica off right after its first acknowledged batch."""

    def __init__(self, replica: str, proxy: Any) -> None:
        self.replica, self.proxy, self.batches = replica, proxy, 0

    def append(self, kind: str, payload: dict) -> None:
        if kind == "batch" and payload["replica"] == self.replica:
            self.batches += 1
            if self.batches == 1:
                self.proxy.set_mode("reset")

    def head(self) -> None:
        return None


def test_unreachable_replica_stops_only_its_lane_and_drains_after_healing(
        tmp_path: Path, endpoints: dict[str, str], namespace: str) -> None:
    from mcrepl.failover.faults.proxy import FaultProxy
    gcs_url = urlparse(endpoints["gcs"])
    proxy = FaultProxy(gcs_url.hostname or "127.0.0.1", gcs_url.port or 80)
    port = proxy.start()
    proxied = {**endpoints, "gcs": f"{gcs_url.scheme}://127.0.0.1:{port}"}
    config = McreplConfig.model_validate(emulator_raw_config(tmp_path, batch_size=20, retry_deadline="1s",
                                                     breaker_failures=2, breaker_reset="1s"))
    stores = Stores(config, endpoints, namespace)
    engine = None
    try:
        schema = config.datasets["customers"].key_schema()
        stores[PRIMARY].write_native([document(schema, customer(i)) for i in range(120)])
        state = StateStore(tmp_path / "state.db")
        engine = SyncEngine(config, state, local_endpoints=proxied, namespace=namespace,
                            audit=_FlipOnFirstBatch(GCS, proxy))
        cut = engine.run_once()
        lanes = cut.datasets["customers"].lanes
        assert lanes[COSMOS].caught_up and lanes[COSMOS].applied == 120
        assert not lanes[GCS].caught_up and lanes[GCS].breaker == "open" and lanes[GCS].last_error
        assert state.lanes.get("customers", GCS).offset == 20, "the lane keeps its acknowledged place"
        assert live(stores[COSMOS]) == live(stores[PRIMARY])
        proxy.set_mode("pass")
        time.sleep(1.1)                                        # breaker half-opens, probe batch
        healed = engine.run_once()
        assert healed.ok and healed.datasets["customers"].lanes[GCS].applied >= 100
        _assert_converged(stores)
    finally:
        if engine is not None:
            engine.close()
        stores.drop()
        proxy.stop()
