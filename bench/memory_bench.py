"""Memory benchmark: peak RSS of a sync pass and of a verify at two dataset sizes (issue 12).

Run: ``.venv/bin/python bench/memory_bench.py [--sizes 100000,1000000] [--json out.json]``

Each (operation, size) runs in a fresh process on the in-memory reference adapter (both
sides), so no emulator's memory is counted and nothing from a previous size is left in
the heap. The in-memory adapter keeps the dataset *in this process*, so the process's
RSS necessarily grows with the dataset; what the engine must keep flat is what the
operation adds on top. The child therefore

1. seeds the store(s) (the dataset is now resident), collects garbage, reads ``VmRSS``;
2. resets the kernel's RSS high-water mark (``/proc/self/clear_refs``, value 5), so the
   seeding's own transients don't count;
3. runs the operation — ``SyncEngine.run_once`` with a new state file over a primary
   and a replica that already hold the same N versions (every record is captured, logged,
   delivered and found already there: the whole pass, while the stores themselves don't
   grow, so what grows is the engine's), or ``compare_adapters`` of two identical copies (range by range, on
   this process's threads, as ``mcrepl verify`` does with the default executor);
4. reads the high-water mark again (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which
   follows the reset, and ``VmHWM``).

Printed per operation: the RSS before, the peak, the peak minus the RSS before (what the
operation held at most: "added"), and the ratio of "added" at the larger size to the
smaller one (target: within 10%, i.e. ≤ 1.10).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_stores import memory_factory  # noqa: E402  (bench/ is a folder of scripts, not a package)
DATASET = "bench"
PRIMARY, REPLICA = "dynamodb:us-east-1", "gcs:europe-west1"
CHUNK = 1000


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_high_water() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _config() -> Any:
    from mcrepl.orchestrator.config import McreplConfig
    return McreplConfig.model_validate({
        "profile": "local", "providers": {},
        "datasets": {DATASET: {"key": {"partition": "pk"}, "primary": PRIMARY, "replicas": [REPLICA]}},
        "sync": {"batch_size": 500, "executor": {"kind": "threads"}}})


def _records(start: int, count: int, stamped: bool) -> list[Any]:
    """Small documents (~120 bytes of body): the count is what the engine must not hold, not their size."""
    from mcrepl.adapters.base import Version
    from mcrepl.testing.records import doc
    out = []
    for i in range(start, start + count):
        rec = doc(f"key-{i:08d}", n=i, name=f"customer {i}", tier="gold", note="x" * 48)
        out.append(rec.stamped(Version(1_700_000_000_000 + i, 0, "bench")) if stamped else rec)
    return out


def child(op: str, n: int) -> dict[str, Any]:
    """Seed, then measure one operation's peak RSS above the seeded process (see the module docstring)."""
    config = _config()
    factory = memory_factory(f"mb{uuid.uuid4().hex[:8]}")
    primary, replica = factory(config.target(DATASET, PRIMARY)), factory(config.target(DATASET, REPLICA))
    seeded = time.perf_counter()
    for start in range(0, n, CHUNK):
        batch = _records(start, min(CHUNK, n - start), stamped=True)
        primary.apply_batch(batch)
        replica.apply_batch(batch)
    seed_s = time.perf_counter() - seeded
    gc.collect()
    before = _status_kib("VmRSS")
    reset = _reset_high_water()
    started, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="mcrepl-membench-") as tmp:
        if op == "sync":
            from mcrepl.orchestrator.state import StateStore
            from mcrepl.orchestrator.sync import SyncEngine
            engine = SyncEngine(config, StateStore(Path(tmp) / "state.db"), adapter_factory=factory)
            try:
                report = engine.run_once(DATASET)
            finally:
                engine.close()
            lane = report.datasets[DATASET].lanes[REPLICA]
            # every record went through the lane and was found already there (replayed)
            ok = report.ok and lane.replayed + lane.stale + lane.applied == n and lane.caught_up
        else:
            from mcrepl.orchestrator.verify import compare_adapters
            result = compare_adapters(DATASET, {PRIMARY: primary, REPLICA: replica})
            ok = result.clean and result.keys == {PRIMARY: n, REPLICA: n}
    return {"op": op, "n": n, "ok": ok, "seed_s": round(seed_s, 1), "seconds": round(time.perf_counter() - started, 1),
            "cpu_s": round(time.process_time() - cpu, 1), "rss_before_mib": before / 1024,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "hwm_mib": _status_kib("VmHWM") / 1024, "high_water_reset": reset}


def run_child(op: str, n: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", op, "--n", str(n)], capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{op} at n={n} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated record counts (default 100k,1M)")
    parser.add_argument("--ops", default="verify,sync", help="operations to measure (verify, sync)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    print(f"{'op':7} {'records':>10} {'ok':>3} {'seconds':>8} {'cpu s':>7} {'RSS before':>11} {'peak':>9} "
          f"{'added':>9}   load average")
    for op in args.ops.split(","):
        for n in sizes:
            r = run_child(op, n)
            r["added_mib"] = r["peak_mib"] - r["rss_before_mib"]
            r["load"] = os.getloadavg()
            runs.append(r)
            print(f"{op:7} {n:>10,} {'yes' if r['ok'] else 'NO':>3} {r['seconds']:8.1f} {r['cpu_s']:7.1f} "
                  f"{r['rss_before_mib']:9.0f} M {r['peak_mib']:7.0f} M {r['added_mib']:7.0f} M   "
                  f"{' '.join(f'{x:.1f}' for x in r['load'])}", flush=True)
    for op in args.ops.split(","):
        mine = [r for r in runs if r["op"] == op]
        if len(mine) >= 2 and mine[0]["added_mib"] > 0:
            small, large = mine[0], mine[-1]
            ratio = large["added_mib"] / small["added_mib"]
            print(f"{op}: records x{large['n'] / small['n']:.0f} -> memory the {op} added x{ratio:.2f} "
                  f"({small['added_mib']:.0f} -> {large['added_mib']:.0f} MiB; target <= 1.10: "
                  f"{'met' if ratio <= 1.10 else 'MISSED'}); whole-process peak x{large['peak_mib'] / small['peak_mib']:.2f}")
    if not all(r["ok"] for r in runs):
        print("some operation did not complete correctly (ok = NO): its figures are not valid", file=sys.stderr)
    if not all(r["high_water_reset"] for r in runs):
        print("the RSS high-water mark could not be reset: peaks include the seeding", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
