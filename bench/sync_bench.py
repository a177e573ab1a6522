"""Sync benchmark: our records/s against each sink's raw SDK rate, and peak memory vs N.

One run on the local stack (started here, stopped at the end):

1. raw baselines on the largest N — Cosmos DB ``upsert_item``, GCS ``upload_from_string``
   and DynamoDB ``BatchWriteItem``, each from a thread pool (see ``raw_sinks.py``);
2. for each size N, in a fresh process (so its RSS high-water is its own): seed N
   ~1 KB records into the DynamoDB primary, time the initial sync to Cosmos DB and GCS,
   rewrite all N records and time the incremental sync, then rewrite them once more and
   run a third pass under ``tracemalloc`` for the Python heap peak (kept apart so
   tracing never slows the timed passes).

Prints: initial and incremental records/s, raw rate per sink, ours / slowest sink raw
(target ≥ 0.8), peak memory per size (flat in N means the engine streams), and the CPU per
record of the whole local stack for raw writers and our passes (what bounds the ratio when
the two cores are saturated; see ``cpu_meter.py``).

    .venv/bin/python bench/sync_bench.py                 # N = 20,000 and 5,000
    .venv/bin/python bench/sync_bench.py --n 2000 --sizes 500,2000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import raw_sinks  # noqa: E402  (bench/ is a folder of scripts, not a package)
from cpu_meter import tree_cpu_seconds  # noqa: E402

DATASET = "bench"
PRIMARY, COSMOS, GCS = "dynamodb:us-east-1", "cosmos:westeurope", "gcs:europe-west1"
SEED_CHUNK = 1000


def bench_config(batch_size: int, in_flight: int) -> Any:
    """The config a user would write for this topology, pointed at the local stack."""
    from mcrepl.orchestrator.config import McreplConfig
    return McreplConfig.model_validate({
        "profile": "local",
        "providers": {"dynamodb": {"endpoint": "local"},
                      "cosmos": {"endpoint": "local", "auth": "key"},
                      "gcs": {"endpoint": "local", "auth": "anonymous", "project": "mcrepl-bench"}},
        "datasets": {DATASET: {"key": {"partition": "customer_id"}, "primary": PRIMARY,
                               "replicas": [COSMOS, GCS]}},
        "sync": {"batch_size": batch_size, "max_in_flight": in_flight},
    })


def _records(n: int, seed: int, start: int = 0) -> list[Any]:
    from mcrepl.orchestrator.sample import sample_records
    from mcrepl.adapters.base import KeyAttribute, KeySchema
    return sample_records(KeySchema(KeyAttribute("customer_id")), n, seed, start=start)


def _seed(primary: Any, n: int, seed: int) -> None:
    """Write N records natively in chunks, so seeding never holds N records at once."""
    for start in range(0, n, SEED_CHUNK):
        primary.write_native(_records(min(SEED_CHUNK, n - start), seed, start))


def _timed_pass(engine: Any, n: int, what: str, cpu_ms: dict[str, float] | None = None) -> tuple[float, Any]:
    """Records/s of one pass; with ``cpu_ms``, also the CPU-ms per record of the whole local
    stack (the bench's process tree: this engine process and every emulator)."""
    cpu = tree_cpu_seconds(os.getppid())
    started = time.perf_counter()
    report = engine.run_once(DATASET)
    seconds = time.perf_counter() - started
    if cpu_ms is not None:
        cpu_ms[what] = (tree_cpu_seconds(os.getppid()) - cpu) * 1000 / n
    lanes = report.datasets[DATASET].lanes
    applied = {replica: lane.applied for replica, lane in lanes.items()}
    if not report.ok or any(count != n for count in applied.values()):
        raise SystemExit(f"{what} pass did not converge: applied {applied}, expected {n} per replica; "
                         f"report: {json.dumps(report.to_dict(), default=str)[:600]}")
    return n / seconds, report


def measure_engine(n: int, endpoints: dict[str, str], args: dict[str, Any], out: Any) -> None:
    """Child process: initial and incremental rate for N records, then the memory figures."""
    from mcrepl.adapters import open_adapter
    from mcrepl.orchestrator.state import StateStore
    from mcrepl.orchestrator.sync import SyncEngine
    config = bench_config(args["batch_size"], args["in_flight"])
    namespace = f"b{uuid.uuid4().hex[:8]}-"
    primary = open_adapter(config.target(DATASET, PRIMARY, endpoints, namespace))
    primary.ensure_ready()
    with tempfile.TemporaryDirectory(prefix="mcrepl-bench-") as tmp:
        engine = SyncEngine(config, StateStore(Path(tmp) / "state.db"), local_endpoints=endpoints,
                            namespace=namespace, progress=False)
        try:
            cpu_ms: dict[str, float] = {}
            _seed(primary, n, seed=0)
            initial, _ = _timed_pass(engine, n, "initial", cpu_ms)
            _seed(primary, n, seed=1)
            incremental, _ = _timed_pass(engine, n, "incremental", cpu_ms)
            _seed(primary, n, seed=2)
            tracemalloc.start()
            tracemalloc.reset_peak()
            _timed_pass(engine, n, "traced incremental")
            traced_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
            out.put({"n": n, "initial": initial, "incremental": incremental,
                     "tracemalloc_peak_mib": traced_peak / 2**20, "rss_peak_mib": rss_kib / 1024,
                     "initial_cpu_ms": cpu_ms["initial"], "incremental_cpu_ms": cpu_ms["incremental"]})
        finally:
            for location in (PRIMARY, COSMOS, GCS):
                try:
                    open_adapter(config.target(DATASET, location, endpoints, namespace)).drop()
                except Exception as exc:  # noqa: BLE001 - clean-up must not hide the figures
                    print(f"warning: could not drop {location}: {exc}", file=sys.stderr)
            engine.close()


def measure_raw(n: int, endpoints: dict[str, str], threads: int) -> dict[str, float]:
    """Records/s of each sink written directly with its SDK, on the same N records."""
    from mcrepl.orchestrator.localstack import EMULATOR_COSMOS_KEY
    records = _records(n, seed=0)
    tag = uuid.uuid4().hex[:8]
    key = os.environ.get("MCREPL_COSMOS_KEY", EMULATOR_COSMOS_KEY)
    rates: dict[str, float] = {}
    writers = {
        "cosmos": lambda: raw_sinks.cosmos_upserts(endpoints["cosmos"], key, f"raw-{tag}", records, threads),
        "gcs": lambda: raw_sinks.gcs_uploads(endpoints["gcs"], f"raw-{tag}", records, threads),
        "dynamodb": lambda: raw_sinks.dynamodb_batch_writes(endpoints["dynamodb"], f"raw-{tag}",
                                                            "customer_id", records, threads),
    }
    for sink, write in writers.items():
        rates[sink] = write()
        rates[f"{sink}_cpu_ms"] = raw_sinks.last_cpu_seconds * 1000 / n
    return rates


def _run_child(n: int, endpoints: dict[str, str], args: dict[str, Any]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=measure_engine, args=(n, endpoints, args, queue), name=f"bench-{n}")
    child.start()
    try:
        result = queue.get(timeout=args["timeout"])
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.terminate()
            child.join()
    return result


def print_table(raw: dict[str, float], runs: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    slowest_name = min(("cosmos", "gcs"), key=lambda s: raw[s])
    slowest = raw[slowest_name]
    console = Console(width=max(Console().width, 120))
    table = Table(title="mcrepl sync: DynamoDB (moto) → Cosmos DB emulator + fake-gcs-server, ~1 KB records")
    for col in ("N", "initial rec/s", "incremental rec/s", "initial / raw", "incremental / raw",
                "tracemalloc peak MiB", "RSS high-water MiB"):
        table.add_column(col, justify="right")
    for run in runs:
        table.add_row(f"{run['n']:,}", f"{run['initial']:,.0f}", f"{run['incremental']:,.0f}",
                      f"{run['initial'] / slowest:.2f}", f"{run['incremental'] / slowest:.2f}",
                      f"{run['tracemalloc_peak_mib']:.1f}", f"{run['rss_peak_mib']:.1f}")
    console.print(table)
    console.print(f"raw SDK rates at N={raw['n']:,} ({raw['threads']} threads): "
                  f"Cosmos upsert_item {raw['cosmos']:,.0f}/s, GCS upload_from_string {raw['gcs']:,.0f}/s, "
                  f"DynamoDB BatchWriteItem {raw['dynamodb']:,.0f}/s; slowest sink: {slowest_name} "
                  f"({slowest:,.0f}/s). Target: ours / slowest ≥ 0.80.")
    largest = runs[-1]
    console.print(f"CPU per record, whole local stack (N={largest['n']:,}): raw {slowest_name} "
                  f"{raw[slowest_name + '_cpu_ms']:.2f} ms, raw Cosmos {raw['cosmos_cpu_ms']:.2f} ms, "
                  f"raw GCS {raw['gcs_cpu_ms']:.2f} ms; ours initial {largest['initial_cpu_ms']:.2f} ms, "
                  f"incremental {largest['incremental_cpu_ms']:.2f} ms (both replicas + capture). "
                  f"When the cores are saturated, ours / raw ≤ raw CPU / our CPU = "
                  f"{raw[slowest_name + '_cpu_ms'] / largest['initial_cpu_ms']:.2f} (initial), "
                  f"{raw[slowest_name + '_cpu_ms'] / largest['incremental_cpu_ms']:.2f} (incremental).")
    if len(runs) > 1:
        small, large = runs[0], runs[-1]
        growth = large["tracemalloc_peak_mib"] / max(small["tracemalloc_peak_mib"], 1e-9)
        console.print(f"memory: N ×{large['n'] / small['n']:.1f} → tracemalloc peak ×{growth:.2f}, "
                      f"RSS high-water {small['rss_peak_mib']:.0f} → {large['rss_peak_mib']:.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="records (default 20,000)")
    parser.add_argument("--sizes", help="comma-separated sizes for the memory check (default N/4,N)")
    parser.add_argument("--threads", type=int, default=8, help="threads of the raw SDK writers")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per size")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    opts = parser.parse_args(argv)
    sizes = sorted({int(s) for s in opts.sizes.split(",")} if opts.sizes else {max(1, opts.n // 4), opts.n})
    from mcrepl.orchestrator.localstack import EMULATOR_COSMOS_KEY, LocalStack
    os.environ.setdefault("MCREPL_COSMOS_KEY", EMULATOR_COSMOS_KEY)
    child_args = {"batch_size": opts.batch_size, "in_flight": opts.in_flight, "timeout": opts.timeout}
    with LocalStack(("dynamodb", "cosmos", "gcs")) as stack:
        endpoints = stack.endpoints
        print(f"local stack: {endpoints}", file=sys.stderr)
        raw: dict[str, Any] = measure_raw(max(sizes), endpoints, opts.threads)
        raw |= {"n": max(sizes), "threads": opts.threads}
        print(f"raw: {raw}", file=sys.stderr)
        runs = []
        for n in sizes:
            runs.append(_run_child(n, endpoints, child_args))
            print(f"engine: {runs[-1]}", file=sys.stderr)
    print_table(raw, runs)
    if opts.json:
        opts.json.write_text(json.dumps({"raw": raw, "runs": runs}, indent=2))


if __name__ == "__main__":
    from mcrepl.orchestrator.localstack import exit_cleanly_on_sigterm
    exit_cleanly_on_sigterm()
    main()
