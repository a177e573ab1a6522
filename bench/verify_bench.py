"""Verify benchmark: range-digest verify vs a naive full-body compare vs ``rclone check``.

Run: ``.venv/bin/python bench/verify_bench.py [--n 100000] [--divergence 0.001]``

Everything runs in one process against the local stack started here, and every
figure is measured in this run:

* **ours** — ``compare_adapters`` over two replicas, identical and with divergence
  (keys/s = digests read per second over both replicas);
* **naive** — read every body from both replicas with a full scan (DynamoDB scan, GCS
  list + download) and compare canonical hashes key by key (what a script without stored
  digests does);
* **rclone** — ``rclone check`` between two GCS buckets on fake-gcs-server (Debian's
  rclone), the same buckets ours compares in the GCS↔GCS pair.

Replicas are written through the adapters' conditional apply, so they carry mcrepl
metadata as they would after a sync.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcrepl.adapters.base import ReplicaAdapter, Version  # noqa: E402
from mcrepl.orchestrator.localstack import LocalStack, exit_cleanly_on_sigterm  # noqa: E402
from mcrepl.orchestrator.verify import compare_adapters  # noqa: E402
from tests.contract.backends import BACKENDS  # noqa: E402
from tests.contract.records import doc  # noqa: E402

BY_ID = {b.id: b for b in BACKENDS}


def seed(stores: list[ReplicaAdapter], n: int, batch: int = 500) -> None:
    """Write the same n stamped records to every store."""
    base_ms = 1_700_000_000_000
    for i in range(0, n, batch):
        recs = [doc(f"key-{j:08d}", n=j, text="x" * 200, tags=["a", "b"]).stamped(Version(base_ms + j, 0, "bench"))
                for j in range(i, min(n, i + batch))]
        for s in stores:
            s.apply_batch(recs)


def diverge(store: ReplicaAdapter, n: int, ratio: float) -> int:
    """Overwrite ``ratio`` of the keys in ``store`` with newer, different records."""
    picked = random.Random(7).sample(range(n), max(1, int(n * ratio)))
    base_ms = 1_800_000_000_000
    store.apply_batch([doc(f"key-{j:08d}", n=-j, text="z" * 200, tags=["c"]).stamped(Version(base_ms + j, 0, "bench"))
                       for j in picked])
    return len(picked)


def naive_compare(a: ReplicaAdapter, b: ReplicaAdapter) -> tuple[int, float]:
    """Read every body from both sides with a full scan and compare; returns (differences, seconds).

    What a script without stored digests does: DynamoDB scans, GCS lists and downloads every
    object (the adapters' own full-scan capture), then bodies are hashed and compared.
    """
    start = time.monotonic()
    sides = []
    for store in (a, b):
        bodies: dict[str, str] = {}
        cursor = None
        while True:
            page = store.capture_changes(cursor, limit=1000)
            if not page.scanned:            # the full scan is over (DynamoDB moves on to its stream)
                break
            for change in page.changes:
                bodies[change.record.key.id] = change.record.digest_hash(False)
            cursor = page.cursor
            if not page.more:
                break
        sides.append(bodies)
    differ = sum(sides[0].get(k) != sides[1].get(k) for k in sides[0].keys() | sides[1].keys())
    return differ, time.monotonic() - start


def ours(pair: dict[str, ReplicaAdapter]) -> tuple[int, float, int]:
    report = compare_adapters("bench", pair)
    return report.divergent, report.seconds, sum(report.keys.values())


def rclone_check(gcs_endpoint: str, bucket_a: str, bucket_b: str) -> tuple[str, float] | None:
    if not shutil.which("rclone"):
        return None
    env = os.environ | {"RCLONE_CONFIG_FAKE_TYPE": "google cloud storage", "RCLONE_CONFIG_FAKE_ANONYMOUS": "true",
                        "RCLONE_CONFIG_FAKE_ENDPOINT": gcs_endpoint.rstrip("/") + "/storage/v1/"}
    start = time.monotonic()
    proc = subprocess.run(["rclone", "check", f"fake:{bucket_a}", f"fake:{bucket_b}", "--one-way=false",
                           "--checkers", "8"], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return tail, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="keys per replica (default 100,000)")
    parser.add_argument("--divergence", type=float, default=0.001, help="fraction of keys that differ")
    args = parser.parse_args()

    with LocalStack(("dynamodb", "gcs")) as stack:
        eps = stack.endpoints
        dyn = BY_ID["moto"].open(eps, name=f"vb-{uuid.uuid4().hex[:8]}")
        gcs_a = BY_ID["fake-gcs"].open(eps, name=f"vb-{uuid.uuid4().hex[:8]}")
        gcs_b = BY_ID["fake-gcs"].open(eps, name=f"vb-{uuid.uuid4().hex[:8]}")
        try:
            t0 = time.monotonic()
            seed([dyn, gcs_a, gcs_b], args.n)
            print(f"seeded 3 x {args.n:,} records in {time.monotonic() - t0:.0f}s")

            d0, s_ident, k_ident = ours({"dynamodb": dyn, "gcs-a": gcs_a})
            assert d0 == 0, "identical replicas must verify clean"
            changed = diverge(gcs_b, args.n, args.divergence)
            d1, s_div, k_div = ours({"gcs-a": gcs_a, "gcs-b": gcs_b})

            n_naive, s_naive = naive_compare(dyn, gcs_a)
            assert n_naive == 0, "identical replicas: the naive compare must agree"
            rc = rclone_check(eps["gcs"], gcs_a.target.resource, gcs_b.target.resource)

            print(f"\nverify benchmark, n={args.n:,} keys per replica, divergence {args.divergence:.3%}")
            print(f"{'measure':48} {'seconds':>9} {'keys/s':>10}")
            print(f"{'ours, identical (DynamoDB ~ GCS)':48} {s_ident:9.2f} {k_ident / s_ident:10,.0f}")
            print(f"{'ours, diverged (GCS ~ GCS), found ' + str(d1) + ' of ' + str(changed):48} "
                  f"{s_div:9.2f} {k_div / s_div:10,.0f}")
            print(f"{'naive full-body compare (DynamoDB ~ GCS)':48} {s_naive:9.2f} {2 * args.n / s_naive:10,.0f}")
            if rc:
                print(f"{'rclone check (GCS ~ GCS)':48} {rc[1]:9.2f} {2 * args.n / rc[1]:10,.0f}   [{rc[0]}]")
            else:
                print("rclone not installed: apt-get install rclone to add the comparison")
            print(f"\nratio naive / ours (identical): {s_naive / s_ident:.1f}x faster")
            if rc:
                print(f"ratio rclone / ours (diverged GCS~GCS): {rc[1] / s_div:.2f}")
        finally:
            for s in (dyn, gcs_a, gcs_b):
                s.drop()
                s.close()



if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    main()
