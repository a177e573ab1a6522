"""Verify benchmark: ranged verify vs ``rclone check`` (GCS~GCS) and vs a raw scan + listing (DynamoDB~GCS).

Run: ``.venv/bin/python bench/verify_bench.py [--n 100000] [--divergence 0.001] [--naive]``

Everything runs against the local stack started here (moto DynamoDB, fake-gcs-server),
and every figure is measured in this run:

* **ours** — ``compare_adapters`` (what ``mcrepl verify`` runs): every location listed in
  its digest ranges on threads, loaded into the range-digest index as each range arrives;
  on identical GCS~GCS buckets, on identical DynamoDB~GCS, and on diverged GCS~GCS;
* **rclone** — ``rclone check`` between the same two buckets (Debian's rclone; install it
  with ``apt-get install -y rclone``; the comparison is skipped with that note without it),
  through ``RCLONE_CONFIG_FAKE_*`` pointing at the emulator, 8 checkers;
* **raw scan + listing** — a hand-written reader (``raw_readers.py``): a parallel Scan of the
  table and a listing of the bucket at the same time, reading what a comparison needs and
  comparing nothing: the floor any DynamoDB~GCS verify stands on;
* **naive** (``--naive``) — every body read from both sides and compared.

The replicas are seeded with the raw SDKs from thread pools, with the items and objects
encoded by the adapters' own wire functions (the same metadata a sync writes).
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from mcrepl.adapters.base import Record, ReplicaAdapter, Version  # noqa: E402
from mcrepl.adapters.dynamodb.wire import encode_item  # noqa: E402
from mcrepl.orchestrator.localstack import LocalStack, exit_cleanly_on_sigterm  # noqa: E402
from mcrepl.orchestrator.verify import compare_adapters  # noqa: E402
from mcrepl.testing.records import doc  # noqa: E402
from raw_readers import scan_and_list, seed_dynamodb, seed_gcs  # noqa: E402
from tests.contract.backends import BACKENDS  # noqa: E402

BY_ID = {b.id: b for b in BACKENDS}


def records(start: int, count: int, base_ms: int = 1_700_000_000_000) -> list[Record]:
    return [doc(f"key-{j:08d}", n=j, text="x" * 200, tags=["a", "b"]).stamped(Version(base_ms + j, 0, "bench"))
            for j in range(start, start + count)]


def gcs_object(store: Any, rec: Record) -> tuple[str, bytes, str, dict[str, str]]:
    """The object the GCS adapter writes for ``rec``: its name, content and metadata."""
    content, content_type = store.layout.encode_content(rec, store.target.kind)
    return store.object_name(rec.key), content, content_type, store.layout.encode_metadata(rec.meta, content)


def seed(dyn: ReplicaAdapter, buckets: list[Any], n: int, endpoints: dict[str, str], chunk: int = 5000) -> None:
    """The same n stamped records in the table and in every bucket, exactly as the adapters store them."""
    t = dyn.target
    for i in range(0, n, chunk):
        recs = records(i, min(chunk, n - i))
        seed_dynamodb(endpoints["dynamodb"], t.region, t.resource,
                      [encode_item(r, t.key_schema, t.kind) for r in recs])
        for b in buckets:
            seed_gcs(endpoints["gcs"], b.target.resource, [gcs_object(b, r) for r in recs])


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
    parser.add_argument("--segments", type=int, default=8, help="parallel scan segments of the raw reader")
    parser.add_argument("--naive", action="store_true", help="also time the naive full-body compare (slow)")
    args = parser.parse_args()
    if not shutil.which("rclone"):
        print("rclone is not installed: the rclone check rows are skipped "
              "(install it with: apt-get install -y rclone)", file=sys.stderr)

    with LocalStack(("dynamodb", "gcs")) as stack:
        eps = stack.endpoints
        dyn = BY_ID["moto"].open(eps, name=f"vb-{uuid.uuid4().hex[:8]}")
        gcs_a = BY_ID["fake-gcs"].open(eps, name=f"vb-{uuid.uuid4().hex[:8]}")
        gcs_b = BY_ID["fake-gcs"].open(eps, name=f"vb-{uuid.uuid4().hex[:8]}")
        rows: list[tuple[str, float, float, str]] = []

        def row(label: str, seconds: float, keys: float, note: str = "") -> None:
            rows.append((label, seconds, keys / seconds if seconds else 0.0, note))
            print(f"  {label:52} {seconds:9.2f} s {keys / seconds if seconds else 0:10,.0f} keys/s  {note}  "
                  f"[load {os.getloadavg()[0]:.1f}]", flush=True)
        try:
            t0 = time.monotonic()
            seed(dyn, [gcs_a, gcs_b], args.n, eps)
            print(f"seeded {args.n:,} records into a table and two buckets in {time.monotonic() - t0:.0f}s "
                  f"(raw SDK, adapters' encoding)", flush=True)
            print(f"\nverify benchmark, n={args.n:,} keys per replica")

            d0, s_gg, k_gg = ours({"gcs-a": gcs_a, "gcs-b": gcs_b})
            assert d0 == 0, "identical buckets must verify clean"
            row("ours, identical GCS ~ GCS", s_gg, k_gg)
            rc_same = rclone_check(eps["gcs"], gcs_a.target.resource, gcs_b.target.resource)
            if rc_same:
                row("rclone check, identical GCS ~ GCS", rc_same[1], 2 * args.n, rc_same[0])

            d1, s_dg, k_dg = ours({"dynamodb": dyn, "gcs-a": gcs_a})
            assert d1 == 0, "identical replicas must verify clean"
            row("ours, identical DynamoDB ~ GCS", s_dg, k_dg)
            items, objects, s_raw = scan_and_list(eps["dynamodb"], dyn.target.region, dyn.target.resource,
                                                  eps["gcs"], gcs_a.target.resource, args.segments)
            assert items == objects == args.n, (items, objects)
            row(f"raw parallel scan ({args.segments} segments) + bucket listing", s_raw, items + objects)

            changed = diverge(gcs_b, args.n, args.divergence)
            d2, s_div, k_div = ours({"gcs-a": gcs_a, "gcs-b": gcs_b})
            row(f"ours, diverged GCS ~ GCS (found {d2} of {changed})", s_div, k_div)
            rc_div = rclone_check(eps["gcs"], gcs_a.target.resource, gcs_b.target.resource)
            if rc_div:
                row("rclone check, diverged GCS ~ GCS", rc_div[1], 2 * args.n, rc_div[0])
            if args.naive:
                n_naive, s_naive = naive_compare(dyn, gcs_a)
                assert n_naive == 0, "identical replicas: the naive compare must agree"
                row("naive full-body compare (DynamoDB ~ GCS)", s_naive, 2 * args.n)

            print("\nratios (above 1.0: ours is faster)")
            if rc_same:
                print(f"  identical GCS~GCS: rclone / ours = {rc_same[1] / s_gg:.2f} (target >= 1.0)")
            if rc_div:
                print(f"  diverged GCS~GCS:  rclone / ours = {rc_div[1] / s_div:.2f}")
            print(f"  identical DynamoDB~GCS: raw scan+listing / ours = {s_raw / s_dg:.2f} (target >= 0.8)")
            print(f"  load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        finally:
            for s in (dyn, gcs_a, gcs_b):
                try:
                    s.drop()
                finally:
                    s.close()


if __name__ == "__main__":
    exit_cleanly_on_sigterm()
    main()
