"""Scale-out benchmark: a sync pass against a hand-written raw copier, at added latency, and on Dask.

One run on the local stack (started here, stopped at the end), the same ~1 KB records:

* **copier vs ours** — for each added round-trip latency (``--latency-ms``, default 0,30,100;
  the project's fault proxy in front of Cosmos DB and GCS holds every chunk half of it each
  way): the raw copier of ``raw_sinks.copier`` (parallel Scan, then unconditional
  ``upsert_item`` + ``upload_from_string`` from one ``--threads`` pool per sink: 8 without
  added latency, ``--latency-threads`` (16) with it) and our initial sync of the same N
  records DynamoDB → Cosmos DB + GCS, then the same after every record was rewritten
  (raw: every document sent again). Prints records/s, ours / raw, and CPU per record of
  the whole local stack.
* **scale-out** (``--scale-latency-ms``, default 100): the initial sync on a local Dask
  cluster of 1 and of 2 worker processes, each worker running at most
  ``--threads-per-worker`` (8) units at once; prints records/s, the ratio 2 / 1, and the
  CPU accounting beside it (on two cores the emulators bound anything beyond).
* **engine alone** (``--engine-n``): in-memory adapters on every side, records/s and CPU
  seconds per record of this process (the orchestrator's own cost per record).

    .venv/bin/python bench/scale_bench.py --n 2000
    .venv/bin/python bench/scale_bench.py --n 2000 --latency-ms 30 --skip-scale --engine-n 0
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

import raw_sinks  # noqa: E402  (bench/ is a folder of scripts, not a package)
from cpu_meter import per_record_ms, tree_cpu_by_role, tree_cpu_seconds  # noqa: E402
from memory_stores import memory_factory  # noqa: E402
from sync_bench import COSMOS, DATASET, GCS, PRIMARY, _records, _seed  # noqa: E402


LOCAL_PROVIDERS = {"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local", "auth": "key"},
                   "gcs": {"endpoint": "local", "auth": "anonymous", "project": "mcrepl-bench"}}


def _config(batch_size: int, executor: dict[str, Any], providers: dict[str, Any] | None = None) -> Any:
    from mcrepl.orchestrator.config import McreplConfig
    return McreplConfig.model_validate({
        "profile": "local",
        "providers": LOCAL_PROVIDERS if providers is None else providers,
        "datasets": {DATASET: {"key": {"partition": "customer_id"}, "primary": PRIMARY,
                               "replicas": [COSMOS, GCS]}},
        "sync": {"batch_size": batch_size, "executor": executor, "retry_deadline": "60s"},
    })


@contextmanager
def _latency(endpoints: dict[str, str], rtt_ms: float) -> Iterator[dict[str, str]]:
    """``endpoints`` with Cosmos DB and GCS behind fault proxies adding ``rtt_ms`` per round trip."""
    if rtt_ms <= 0:
        yield endpoints
        return
    from mcrepl.failover.faults.proxy import FaultProxy
    proxies, out = [], dict(endpoints)
    for name in ("cosmos", "gcs"):
        url = urlparse(endpoints[name])
        proxy = FaultProxy(url.hostname or "127.0.0.1", url.port or 80)
        out[name] = f"{url.scheme}://127.0.0.1:{proxy.start()}"
        proxy.set_mode("delay", rtt_ms / 2000)
        proxies.append(proxy)
    try:
        yield out
    finally:
        for proxy in proxies:
            proxy.stop()


def _raw(endpoints: dict[str, str], routed: dict[str, str], table: str, n: int, threads: int) -> dict[str, float]:
    """The raw copier from the primary table into fresh targets: initial, then everything again."""
    from mcrepl.orchestrator.localstack import EMULATOR_COSMOS_KEY
    key = os.environ.get("MCREPL_COSMOS_KEY", EMULATOR_COSMOS_KEY)
    tag = f"raw-{uuid.uuid4().hex[:8]}"
    args = (endpoints["dynamodb"], table, routed["cosmos"], key, tag, routed["gcs"], tag, threads)
    raw_sinks.copier(*args, prepare_only=True)
    try:
        initial = raw_sinks.copier(*args)
        initial_cpu = raw_sinks.last_cpu_seconds * 1000 / n
        initial_roles = {role: s * 1000 / n for role, s in raw_sinks.last_cpu_by_role.items()}
        rewrite = raw_sinks.copier(*args)
        return {"initial": initial, "rewrite": rewrite, "initial_cpu_ms": initial_cpu,
                "initial_cpu_ms_by_role": initial_roles,
                "rewrite_cpu_ms": raw_sinks.last_cpu_seconds * 1000 / n}
    finally:
        raw_sinks.drop_copier_targets(endpoints["cosmos"], key, tag, endpoints["gcs"], tag)


def _ours_pass(engine: Any, n: int, by_role: dict[str, float] | None = None) -> tuple[float, float]:
    """Records/s and whole-stack CPU ms per record of one pass (per role into ``by_role``)."""
    roles = tree_cpu_by_role()
    cpu = sum(roles.values())
    started = time.perf_counter()
    report = engine.run_once(DATASET)
    seconds = time.perf_counter() - started
    lanes = report.datasets[DATASET].lanes
    # a unit leased again (or a batch retried) reports its second delivery as replayed
    applied = {r: lane.applied + lane.replayed for r, lane in lanes.items()}
    if not report.ok or any(a != n for a in applied.values()):
        raise SystemExit(f"pass did not converge: applied {applied} of {n}; {report.to_dict()}")
    after = tree_cpu_by_role()
    if by_role is not None:
        by_role.update(per_record_ms(roles, after, n))
    return n / seconds, (sum(after.values()) - cpu) * 1000 / n


def compare_with_copier(endpoints: dict[str, str], n: int, rtt_ms: float, threads: int,
                        batch_size: int, executor: dict[str, Any]) -> dict[str, Any]:
    """Raw copier and our pass, initial and rewrite, through the same proxies, in one run."""
    from mcrepl.adapters import open_adapter
    from mcrepl.orchestrator.state import StateStore
    from mcrepl.orchestrator.sync import SyncEngine
    config = _config(batch_size, executor)
    namespace = f"s{uuid.uuid4().hex[:8]}-"
    primary = open_adapter(config.target(DATASET, PRIMARY, endpoints, namespace))
    primary.ensure_ready()
    out: dict[str, Any] = {"rtt_ms": rtt_ms, "threads": threads, "n": n}
    with _latency(endpoints, rtt_ms) as routed, tempfile.TemporaryDirectory(prefix="mcrepl-scale-") as tmp:
        engine = SyncEngine(config, StateStore(Path(tmp) / "state.db"), local_endpoints=routed, namespace=namespace)
        try:
            _seed(primary, n, seed=0)
            out["raw"] = _raw(endpoints, routed, primary.target.resource, n, threads)
            out["ours_initial_cpu_ms_by_role"], out["ours_rewrite_cpu_ms_by_role"] = {}, {}
            out["ours_initial"], out["ours_initial_cpu_ms"] = _ours_pass(engine, n, out["ours_initial_cpu_ms_by_role"])
            _seed(primary, n, seed=1)
            out["ours_rewrite"], out["ours_rewrite_cpu_ms"] = _ours_pass(engine, n, out["ours_rewrite_cpu_ms_by_role"])
        finally:
            engine.close()
            _drop(config, endpoints, namespace)
    return out


def scale_out(endpoints: dict[str, str], n: int, rtt_ms: float, threads_per_worker: int, batch_size: int,
              in_flight: int) -> dict[str, Any]:
    """The initial sync on a local Dask cluster of 1 and of 2 workers, same data, same latency."""
    from mcrepl.adapters import open_adapter
    from mcrepl.orchestrator.state import StateStore
    from mcrepl.orchestrator.sync import SyncEngine
    out: dict[str, Any] = {"rtt_ms": rtt_ms, "n": n, "threads_per_worker": threads_per_worker}
    for workers in (1, 2):
        executor = {"kind": "dask", "workers": workers, "threads_per_worker": threads_per_worker,
                    "max_in_flight_units": in_flight}
        config = _config(batch_size, executor)
        namespace = f"d{uuid.uuid4().hex[:8]}-"
        primary = open_adapter(config.target(DATASET, PRIMARY, endpoints, namespace))
        primary.ensure_ready()
        _seed(primary, n, seed=0)
        with _latency(endpoints, rtt_ms) as routed, tempfile.TemporaryDirectory(prefix="mcrepl-scale-") as tmp:
            engine = SyncEngine(config, StateStore(Path(tmp) / "state.db"), local_endpoints=routed,
                                namespace=namespace)
            try:
                engine.unit_executor()                 # the cluster starts before the clock does
                cpu = tree_cpu_seconds()
                rate, _ = _ours_pass(engine, n)
                out[f"workers_{workers}"] = rate
                out[f"workers_{workers}_cpu_ms"] = (tree_cpu_seconds() - cpu) * 1000 / n
                out[f"workers_{workers}_units"] = dict(engine.unit_executor().by_worker)
            finally:
                engine.close()
                _drop(config, endpoints, namespace)
    return out


def engine_alone(n: int, batch_size: int) -> dict[str, Any]:
    """Records/s and CPU per record of the engine with in-memory adapters on every side."""
    import resource
    from mcrepl.orchestrator.state import StateStore
    from mcrepl.orchestrator.sync import SyncEngine
    config = _config(batch_size, {"kind": "threads"}, providers={})      # no store: memory adapters
    factory = memory_factory(f"m{uuid.uuid4().hex[:8]}")
    out: dict[str, Any] = {"n": n}
    with tempfile.TemporaryDirectory(prefix="mcrepl-engine-") as tmp:
        engine = SyncEngine(config, StateStore(Path(tmp) / "state.db"), adapter_factory=factory)
        try:
            primary = factory(config.target(DATASET, PRIMARY))
            for what, seed in (("initial", 0), ("rewrite", 1)):
                for start in range(0, n, 1000):
                    primary.write_native(_records(min(1000, n - start), seed, start))
                cpu = time.process_time()
                started = time.perf_counter()
                report = engine.run_once(DATASET)
                out[what] = n / (time.perf_counter() - started)
                out[f"{what}_cpu_ms"] = (time.process_time() - cpu) * 1000 / n
                assert report.ok, report.to_dict()
        finally:
            engine.close()
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _drop(config: Any, endpoints: dict[str, str], namespace: str) -> None:
    from mcrepl.adapters import open_adapter
    for location in (PRIMARY, COSMOS, GCS):
        try:
            open_adapter(config.target(DATASET, location, endpoints, namespace)).drop()
        except Exception as exc:  # noqa: BLE001 - clean-up must not hide the figures
            print(f"warning: could not drop {location}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency-ms", default="0,30,100", help="added round-trip ms to Cosmos DB and GCS")
    parser.add_argument("--threads", type=int, default=8, help="raw copier threads per sink without latency")
    parser.add_argument("--latency-threads", type=int, default=16, help="raw copier threads per sink with latency")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--executor", default="threads")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=8, help="sync.executor.max_in_flight_units")
    parser.add_argument("--scale-latency-ms", type=float, default=100.0)
    parser.add_argument("--threads-per-worker", type=int, default=8)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--engine-n", type=int, default=20_000, help="records for the engine-alone run (0: skip)")
    opts = parser.parse_args(argv)
    from mcrepl.orchestrator.localstack import EMULATOR_COSMOS_KEY, LocalStack
    os.environ.setdefault("MCREPL_COSMOS_KEY", EMULATOR_COSMOS_KEY)
    executor = {"kind": opts.executor, "workers": opts.workers, "max_in_flight_units": opts.in_flight}
    rows, scaled = [], None
    latencies = [float(x) for x in opts.latency_ms.split(",") if x.strip()]
    if latencies or not opts.skip_scale:
        with LocalStack(("dynamodb", "cosmos", "gcs")) as stack:
            endpoints = stack.endpoints
            for rtt in latencies:
                threads = opts.threads if rtt <= 0 else opts.latency_threads
                rows.append(compare_with_copier(endpoints, opts.n, rtt, threads, opts.batch_size, executor))
                print(f"copier vs ours: {rows[-1]}", file=sys.stderr)
            if not opts.skip_scale:
                scaled = scale_out(endpoints, opts.n, opts.scale_latency_ms, opts.threads_per_worker,
                                   opts.batch_size, max(opts.in_flight, 2 * opts.threads_per_worker))
                print(f"scale-out: {scaled}", file=sys.stderr)
    alone = engine_alone(opts.engine_n, opts.batch_size) if opts.engine_n else None
    _print(rows, scaled, alone, opts)


def _print(rows: list[dict[str, Any]], scaled: dict[str, Any] | None, alone: dict[str, Any] | None,
           opts: Any) -> None:
    print(f"\nmcrepl sync DynamoDB (moto) -> Cosmos DB emulator + fake-gcs-server, ~1 KB records, N={opts.n:,}, "
          f"executor {opts.executor}, in-flight cap {opts.in_flight} units per lane")
    print(f"{'added RTT':>9} {'raw thr':>7} {'raw init/s':>10} {'ours init/s':>11} {'ratio':>6} "
          f"{'raw rewr/s':>10} {'ours rewr/s':>11} {'ratio':>6}   CPU ms/rec raw init | ours init | ours rewrite")
    for r in rows:
        raw = r["raw"]
        print(f"{r['rtt_ms']:>7.0f}ms {r['threads']:>7} {raw['initial']:>10,.0f} {r['ours_initial']:>11,.0f} "
              f"{r['ours_initial'] / raw['initial']:>5.2f}x {raw['rewrite']:>10,.0f} {r['ours_rewrite']:>11,.0f} "
              f"{r['ours_rewrite'] / raw['rewrite']:>5.2f}x   {raw['initial_cpu_ms']:.2f} | "
              f"{r['ours_initial_cpu_ms']:.2f} | {r['ours_rewrite_cpu_ms']:.2f}")
    for r in rows:
        raw, ours, rewrite = (r["raw"]["initial_cpu_ms_by_role"], r["ours_initial_cpu_ms_by_role"],
                              r["ours_rewrite_cpu_ms_by_role"])
        roles = sorted(set(raw) | set(ours), key=lambda role: -ours.get(role, 0.0))
        print(f"  CPU ms/rec by process at {r['rtt_ms']:.0f}ms (raw initial | ours initial | ours rewrite): "
              + "; ".join(f"{role} {raw.get(role, 0.0):.2f} | {ours.get(role, 0.0):.2f} | "
                          f"{rewrite.get(role, 0.0):.2f}" for role in roles))
    if scaled is not None:
        print(f"\nscale-out, {scaled['rtt_ms']:.0f} ms added RTT, {scaled['threads_per_worker']} units at once per "
              f"worker: dask --workers 1 {scaled['workers_1']:,.0f} rec/s ({scaled['workers_1_cpu_ms']:.2f} ms CPU/rec "
              f"whole stack), --workers 2 {scaled['workers_2']:,.0f} rec/s ({scaled['workers_2_cpu_ms']:.2f} ms); "
              f"2 / 1 = {scaled['workers_2'] / scaled['workers_1']:.2f}x; units per worker: "
              f"{scaled['workers_2_units']}")
    if alone is not None:
        print(f"\nengine alone (in-memory adapters), N={alone['n']:,}: initial {alone['initial']:,.0f} rec/s "
              f"({alone['initial_cpu_ms']:.3f} ms CPU/rec), rewrite {alone['rewrite']:,.0f} rec/s "
              f"({alone['rewrite_cpu_ms']:.3f} ms CPU/rec); per core: {1000 / alone['initial_cpu_ms']:,.0f} and "
              f"{1000 / alone['rewrite_cpu_ms']:,.0f} rec/s")


if __name__ == "__main__":
    from mcrepl.orchestrator.localstack import exit_cleanly_on_sigterm
    exit_cleanly_on_sigterm()
    main()
