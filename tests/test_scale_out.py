"""Scale-out on the local stack: a pass's work units on Dask distributed and on a process pool.

Issue 12's tests: a pass on a local Dask cluster of two worker processes converges (and
its units ran on both); a worker killed with SIGKILL mid-pass leaves the pass complete
with nothing lost or stamped twice; the process pool gives the same result. The
emulators are the suite's own (moto, the Cosmos emulator, fake-gcs-server); the fault
proxy adds latency in front of Cosmos DB and GCS so that units are still in flight when
the worker dies.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import pytest

from mcrepl.adapters.base import document
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine
from mcrepl.orchestrator.sync.workers import ExecutorSpec

from .test_sync_emulators import _assert_converged
from .test_sync_helpers import COSMOS, GCS, PRIMARY, Stores, customer
from .test_sync_helpers import emulator_raw_config as _raw_config

pytest.importorskip("distributed", reason="the dask extra (pip install 'mcrepl[dask]') is not installed")


@pytest.fixture(scope="module")
def endpoints(local_stack: Any) -> dict[str, str]:
    return {name: local_stack.endpoint(name) for name in ("dynamodb", "cosmos", "gcs")}


@pytest.fixture()
def namespace() -> str:
    return f"x{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def delayed(endpoints: dict[str, str]) -> Iterator[dict[str, str]]:
    """Endpoints with Cosmos DB and GCS behind fault proxies adding 20 ms per chunk each way."""
    from mcrepl.failover.faults.proxy import FaultProxy
    proxies, out = [], dict(endpoints)
    for name in ("cosmos", "gcs"):
        url = urlparse(endpoints[name])
        proxy = FaultProxy(url.hostname or "127.0.0.1", url.port or 80)
        out[name] = f"{url.scheme}://127.0.0.1:{proxy.start()}"
        proxy.set_mode("delay", 0.02)
        proxies.append(proxy)
    yield out
    for proxy in proxies:
        proxy.stop()


def _stores(tmp_path: Path, endpoints: dict[str, str], namespace: str, **sync: Any) -> Stores:
    return Stores(McreplConfig.model_validate(_raw_config(tmp_path, **sync)), endpoints, namespace)


def _exactly_once(state: StateStore, captured: int) -> None:
    """Every logged change was stamped once and committed once on every lane."""
    assert state.log.totals("customers")["captured_total"] == captured, "a change was stamped twice or lost"
    for replica in (COSMOS, GCS):
        lane = state.lanes.get("customers", replica)
        assert lane.applied + lane.replayed + lane.stale + lane.rejected + lane.withheld == captured, replica


def test_dask_local_cluster_of_two_workers_converges(tmp_path: Path, endpoints: dict[str, str],
                                                     namespace: str) -> None:
    stores = _stores(tmp_path, endpoints, namespace, batch_size=50)
    engine = None
    try:
        schema = stores.config.datasets["customers"].key_schema()
        stores[PRIMARY].write_native([document(schema, customer(i)) for i in range(240)])
        state = StateStore(tmp_path / "state.db")
        engine = SyncEngine(stores.config, state, local_endpoints=endpoints, namespace=namespace,
                            executor=ExecutorSpec("dask", workers=2, threads_per_worker=2, max_in_flight_units=4))
        first = engine.run_once()
        stores[PRIMARY].write_native([document(schema, customer(i, tier=7)) for i in range(0, 240, 3)])
        stores[PRIMARY].delete_native([document(schema, customer(i)).key for i in range(1, 240, 10)])
        second = engine.run_once(verify=True)
        units = engine.unit_executor()
        workers = dict(units.by_worker)
    finally:
        if engine is not None:
            engine.close()
    try:
        assert first.ok and first.datasets["customers"].captured == 240
        ds = second.datasets["customers"]
        assert second.ok and ds.captured == 80 + 24 and ds.converged is True
        assert len(workers) == 2 and min(workers.values()) > 0, f"units did not spread: {workers}"
        _assert_converged(stores)
        _exactly_once(state, 240 + 80 + 24)
    finally:
        stores.drop()


def _pass_with_a_worker_killed(stores: Stores, state: StateStore, routed: dict[str, str], namespace: str,
                               spec: ExecutorSpec, n: int, victim: Callable[[Any], int]) -> tuple[Any, Any, set[int]]:
    """Run a pass of ``n`` records and SIGKILL the worker ``victim(units)`` names once both replica
    lanes committed something and neither finished; returns the report, the executor, and the
    victim's pid with the pids of the workers alive after the pass (Dask only; else empty)."""
    schema = stores.config.datasets["customers"].key_schema()
    stores[PRIMARY].write_native([document(schema, customer(i)) for i in range(n)])
    engine = SyncEngine(stores.config, state, local_endpoints=routed, namespace=namespace, executor=spec)
    try:
        units = engine.unit_executor()
        result: dict[str, Any] = {}
        run = threading.Thread(target=lambda: result.setdefault("report", engine.run_once()))
        run.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.is_alive():
            if all(0 < state.lanes.get("customers", r).offset < n for r in (COSMOS, GCS)):
                break
            time.sleep(0.02)
        assert run.is_alive(), "the pass ended before a worker could be killed"
        pid = victim(units)
        os.kill(pid, signal.SIGKILL)
        run.join(timeout=300)
        assert not run.is_alive()
        alive = set(units.worker_pids().values()) if hasattr(units, "worker_pids") else set()
        return result["report"], units, {pid} | {-p for p in alive}
    finally:
        engine.close()


def test_dask_worker_sigkilled_mid_pass_loses_nothing_and_stamps_nothing_twice(
        tmp_path: Path, endpoints: dict[str, str], delayed: dict[str, str], namespace: str) -> None:
    # a unit on the dead worker is given back after the cluster notices (seconds): the step
    # timeout (2 x retry_deadline + 10 s) must not take that for a hung store
    stores = _stores(tmp_path, endpoints, namespace, batch_size=40, retry_deadline="30s")
    state = StateStore(tmp_path / "state.db")
    n = 400

    def victim(units: Any) -> int:
        pids = units.worker_pids()
        assert len(pids) == 2
        return int(sorted(pids.values())[0])
    try:
        report, units, pids = _pass_with_a_worker_killed(
            stores, state, delayed, namespace,
            ExecutorSpec("dask", workers=2, threads_per_worker=2, max_in_flight_units=4), n, victim)
        ds = report.datasets["customers"]
        assert report.ok and ds.captured == n, report.to_dict()
        assert all(lane.caught_up for lane in ds.lanes.values())
        # the pass finished on the survivor and on the worker the cluster's nanny started instead
        killed = {p for p in pids if p > 0}
        alive = {-p for p in pids if p < 0}
        assert len(alive) == 2 and not killed & alive, f"killed {killed}, workers after the pass {alive}"
        _assert_converged(stores)
        _exactly_once(state, n)
    finally:
        stores.drop()


def test_process_pool_pass_converges_with_the_same_counts(tmp_path: Path, endpoints: dict[str, str],
                                                          namespace: str) -> None:
    stores = _stores(tmp_path, endpoints, namespace, batch_size=50)
    engine = None
    try:
        schema = stores.config.datasets["customers"].key_schema()
        stores[PRIMARY].write_native([document(schema, customer(i)) for i in range(150)])
        state = StateStore(tmp_path / "state.db")
        engine = SyncEngine(stores.config, state, local_endpoints=endpoints, namespace=namespace,
                            executor=ExecutorSpec("processes", workers=2))
        report = engine.run_once(verify=True)
        workers = dict(engine.unit_executor().by_worker)
    finally:
        if engine is not None:
            engine.close()
    try:
        ds = report.datasets["customers"]
        assert report.ok and ds.captured == 150 and ds.converged is True
        assert all(lane.applied == 150 for lane in ds.lanes.values())
        assert len(workers) == 2, f"units ran in {workers}, not in two worker processes"
        _assert_converged(stores)
        _exactly_once(state, 150)
    finally:
        stores.drop()


def test_process_worker_sigkilled_mid_pass_is_replaced_and_its_units_leased_again(
        tmp_path: Path, endpoints: dict[str, str], delayed: dict[str, str], namespace: str) -> None:
    stores = _stores(tmp_path, endpoints, namespace, batch_size=40, retry_deadline="30s")
    state = StateStore(tmp_path / "state.db")
    n = 300
    try:
        report, units, _ = _pass_with_a_worker_killed(
            stores, state, delayed, namespace, ExecutorSpec("processes", workers=2), n,
            lambda units: int(next(iter(units._pool._processes))))   # a live worker process of the pool
        ds = report.datasets["customers"]
        assert report.ok and ds.captured == n, report.to_dict()
        assert units.released >= 1, "no unit was leased again: the kill missed every unit in flight"
        _assert_converged(stores)
        _exactly_once(state, n)
    finally:
        stores.drop()


def test_cli_sync_once_on_a_local_dask_cluster(tmp_path: Path, endpoints: dict[str, str], namespace: str) -> None:
    import json
    import subprocess
    import sys

    import yaml
    stores = _stores(tmp_path, endpoints, namespace, batch_size=50)
    try:
        schema = stores.config.datasets["customers"].key_schema()
        stores[PRIMARY].write_native([document(schema, customer(i)) for i in range(120)])
        config_file = tmp_path / "mcrepl.yaml"
        config_file.write_text(yaml.safe_dump(_raw_config(tmp_path, batch_size=50)))
        env = {**os.environ, "MCREPL_LOCAL_ENDPOINTS": json.dumps(endpoints), "MCREPL_NAMESPACE": namespace}
        done = subprocess.run([str(Path(sys.executable).parent / "mcrepl"), "sync", "--once", "--verify", "-c",
                               str(config_file), "--format", "json", "--executor", "dask", "--workers", "2"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads(done.stdout)
        assert report["ok"] and report["datasets"]["customers"]["captured"] == 120
        assert report["datasets"]["customers"]["converged"] is True
        _assert_converged(stores)
    finally:
        stores.drop()


def test_verify_on_digest_units_in_worker_processes_finds_what_threads_find(
        tmp_path: Path, endpoints: dict[str, str], namespace: str) -> None:
    from mcrepl.adapters import open_adapter
    from mcrepl.orchestrator.verify import verify_dataset
    from mcrepl.orchestrator.sync.workers import digest_listing, open_executor
    stores = _stores(tmp_path, endpoints, namespace, batch_size=50)
    units = None
    try:
        schema = stores.config.datasets["customers"].key_schema()
        stores[PRIMARY].write_native([document(schema, customer(i)) for i in range(60)])
        engine = SyncEngine(stores.config, StateStore(tmp_path / "state.db"), local_endpoints=endpoints,
                            namespace=namespace)
        try:
            assert engine.run_once().ok
        finally:
            engine.close()
        stores[GCS].delete_native([document(schema, customer(i)).key for i in range(5)])   # behind mcrepl's back
        config = stores.config
        units = open_executor(ExecutorSpec("processes", workers=2), open_adapter)
        targets = {r.at: config.target("customers", r.at, endpoints, namespace)
                   for r in config.datasets["customers"].locations}
        on_units = verify_dataset(config, "customers", local_endpoints=endpoints, namespace=namespace, alert=False,
                                  listing=digest_listing(units, targets))
        on_threads = verify_dataset(config, "customers", local_endpoints=endpoints, namespace=namespace, alert=False)
        workers = dict(units.by_worker)
        from mcrepl.adapters.base.digest_ranges import ranges_of
        ranges = 0
        for t in targets.values():
            with open_adapter(t) as opened:
                ranges += len(ranges_of(opened))
    finally:
        if units is not None:
            units.close()
        stores.drop()
    assert on_units.to_dict()["pairs"] == on_threads.to_dict()["pairs"]
    missing = {p.other: len(p.divergences) for p in on_units.pairs}
    assert missing == {COSMOS: 0, GCS: 5}
    assert ranges > 3, "DynamoDB and GCS are listed in several ranges"
    assert sum(workers.values()) == ranges and all("/" in w for w in workers), "one unit per (location, range)"


def test_a_pass_joins_an_existing_dask_scheduler_and_leaves_its_cluster_running(
        tmp_path: Path, endpoints: dict[str, str], namespace: str) -> None:
    import logging

    import distributed
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=4, processes=True, dashboard_address=None,
                                       silence_logs=logging.WARNING)
    stores = _stores(tmp_path, endpoints, namespace, batch_size=50)
    engine = None
    try:
        schema = stores.config.datasets["customers"].key_schema()
        stores[PRIMARY].write_native([document(schema, customer(i)) for i in range(80)])
        engine = SyncEngine(stores.config, StateStore(tmp_path / "state.db"), local_endpoints=endpoints,
                            namespace=namespace, executor=ExecutorSpec("dask", scheduler=cluster.scheduler_address))
        report = engine.run_once()
        ran_on = dict(engine.unit_executor().by_worker)
        engine.close()
        engine = None
        with distributed.Client(cluster.scheduler_address) as client:
            still = len(client.scheduler_info()["workers"])
        assert report.ok and report.datasets["customers"].captured == 80
        assert len(ran_on) == 1 and still == 1, "the joined cluster ran the units and is still up"
        _assert_converged(stores)
    finally:
        if engine is not None:
            engine.close()
        stores.drop()
        cluster.close()
