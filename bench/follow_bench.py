"""Follow-mode benchmark: end-to-end replication lag at a steady write rate, against scheduled passes.

One run on the local stack (started here, stopped at the end). For each mode (``--follow``,
then ``--schedule`` with ``--schedule-every``) and each rate, in a fresh namespace:

1. ``mcrepl sync --follow`` (or ``--schedule``) starts as its own process, exactly as an
   operator runs it (heartbeats every ``--heartbeat``);
2. a writer (16 threads, one steady schedule) inserts ~1 KB records natively into the DynamoDB
   primary at a steady rate for ``--seconds``, noting the time just before each write;
3. an *independent reader* per replica — the store's own SDK, no mcrepl code or state —
   asks about the oldest written keys it has not seen yet, up to 20 at a time: Cosmos DB
   with one ``read_items`` (a document's lag: when the answer that first held it returned,
   minus when the writer started writing it), GCS with one metadata read per object (its
   lag: the object's ``timeCreated``, the store's own record of when it became readable,
   minus the same). After an answer with nothing new it asks again after
   ``--retry-every`` (default 20 ms). Every ``--sample``'th record (default 5) is timed, so
   the readers' own load stays small on a loaded machine;
4. after the last write, the reader waits for the rest; the process is stopped with SIGTERM.

Prints p50/p95/p99/max lag per replica and mode, the heartbeat lag p50/p99 mcrepl itself
measured over the same run (what ``mcrepl status`` reports as the RPO estimate), and the
CPU time of the mcrepl process per record written (emulators and the bench's own writer
and readers excluded). Goal on the local stack: p99 < 1 s at 100 writes/s in follow mode.

The baseline, measured just before each run on the same emulators: each replica's *write
ceiling* — plain unconditional SDK writes of the same ~1 KB records (``create_item``,
``upload_from_string``) from 8 threads for ``--ceiling-seconds``, no mcrepl code. A lane
cannot apply faster than its store takes plain writes; where the ceiling is below the rate
asked, no follower on this machine at that moment could keep its lag bounded.

    .venv/bin/python bench/follow_bench.py                       # 50, 100, 200 w/s, 60 s each, both modes
    .venv/bin/python bench/follow_bench.py --seconds 10 --rates 100 --modes follow    # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_meter import tree_cpu_seconds  # noqa: E402  (bench/ is a folder of scripts, not a package)

DATASET = "bench"
PRIMARY, COSMOS, GCS = "dynamodb:us-east-1", "cosmos:westeurope", "gcs:europe-west1"
REPLICAS = (COSMOS, GCS)
PAD = "x" * 900
WRITER_THREADS = 16
WINDOW = 20
"""How many of the oldest keys a reader not yet saw it asks about in one request."""


def raw_config(state_dir: Path, mode: str, every: str, heartbeat: str) -> dict[str, Any]:
    """The config a user would write for this topology, pointed at the local stack."""
    return {
        "version": 1, "profile": "local", "state_dir": str(state_dir),
        "providers": {"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local", "auth": "key"},
                      "gcs": {"endpoint": "local", "auth": "anonymous", "project": "mcrepl-bench"}},
        "datasets": {DATASET: {"key": {"partition": "customer_id"}, "primary": PRIMARY, "replicas": list(REPLICAS),
                               "schedule": {"every": every},
                               "sync": {"mode": mode, "heartbeat": heartbeat, "lag_objective": "1s"}}},
        "sync": {"batch_size": 100, "anti_entropy": {"every": None}},
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank ``q``-quantile (0..1)."""
    ordered = sorted(values)
    return ordered[max(0, int(-(-q * len(ordered) // 1)) - 1)] if ordered else float("nan")


class Reader(threading.Thread):
    """Watches one replica with its store's own SDK (no mcrepl code, no mcrepl state).

    It asks the replica about the oldest :data:`WINDOW` written keys it has not seen yet
    (``present(keys)``, below per store), notes when each was first readable, then asks
    again at once if it found any, else after ``retry_s``. A lane applies a batch at
    once, so many keys become readable together; a reader that timed each key when its
    own one-at-a-time read returned would add its serial reads to the later keys' lag.
    """

    def __init__(self, present: Any, written: list[tuple[str, float]], done: threading.Event,
                 retry_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.present, self.written, self.done, self.retry_s = present, written, done, retry_s
        self.seen: dict[str, float] = {}
        self.give_up_at: float | None = None
        self.errors = 0

    def run(self) -> None:
        oldest = 0                                   # every key before this index has been seen
        while True:
            while oldest < len(self.written) and self.written[oldest][0] in self.seen:
                oldest += 1
            window = [k for k, _ in self.written[oldest:oldest + 4 * WINDOW] if k not in self.seen][:WINDOW]
            if not window:
                if self.done.is_set():
                    return
                time.sleep(0.002)
                continue
            if self.give_up_at is not None and time.monotonic() > self.give_up_at:
                return
            try:
                found = self.present(window)
            except Exception:  # noqa: BLE001 - an emulator hiccup: ask again
                self.errors += 1
                found = {}
            for key, at in found.items():
                self.seen.setdefault(key, at)
            if not found:
                time.sleep(self.retry_s)

    def lags(self) -> list[float]:
        """Seconds from each write to the moment the replica first had it (keys never found left out)."""
        return [self.seen[k] - at for k, at in self.written if k in self.seen]


def gcs_present(target: Any, endpoint: str) -> Any:
    """``present(names)``: ``{name: when it became readable}`` for the leading names the bucket holds.

    One metadata read per object, in order, up to the first one missing. An object's
    ``timeCreated`` is the store's own record of when that generation became readable (to
    the microsecond on fake-gcs-server), so the figure does not depend on how soon this
    reader looked. A listing would answer for many names at once, but fake-gcs-server
    reads the whole bucket for every listing, and that load would slow the lane measured.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    client = storage.Client(project="mcrepl-bench", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    bucket = client.bucket(target.resource)

    def present(names: list[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for name in names:
            blob = bucket.get_blob(name)
            if blob is None or blob.time_created is None:
                break
            found[name] = blob.time_created.timestamp()
        return found
    return present


def cosmos_present(target: Any, endpoint: str) -> Any:
    """``present(ids)``: ``{id: when the answer returned}`` for those of ``ids`` the container holds.

    One ``read_items`` (ReadMany) for all of them: Cosmos DB's own ``_ts`` counts whole
    seconds, too coarse here, so a document is timed by the answer that first held it.
    """
    import warnings
    from azure.cosmos import CosmosClient
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    client = CosmosClient(endpoint, credential=os.environ["MCREPL_COSMOS_KEY"], connection_verify=False)
    container = client.get_database_client(target.options["database"]).get_container_client(target.resource)

    def present(ids: list[str]) -> dict[str, float]:
        docs = container.read_items([(i, i) for i in ids])
        now = time.time()
        return {doc["id"]: now for doc in docs}
    return present


def write_ceiling(replica: str, endpoints: dict[str, str], seconds: float, threads: int = 8) -> float:
    """Plain SDK writes/s ``replica``'s emulator takes right now (1 KB, ``threads`` writers, unconditional)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor
    name = f"ceil-{uuid.uuid4().hex[:8]}"
    if replica == GCS:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        client = storage.Client(project="mcrepl-bench", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": endpoints["gcs"]})
        bucket = client.create_bucket(name)

        def write(i: int) -> None:
            bucket.blob(f"r{i:07d}").upload_from_string(PAD + str(i), content_type="application/json")
    else:
        from azure.cosmos import CosmosClient, PartitionKey
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        cosmos = CosmosClient(endpoints["cosmos"], credential=os.environ["MCREPL_COSMOS_KEY"], connection_verify=False)
        container = cosmos.create_database_if_not_exists(name).create_container_if_not_exists(
            name, partition_key=PartitionKey("/id"))

        def write(i: int) -> None:
            container.create_item({"id": f"r{i:07d}", "seq": i, "pad": PAD})
    counter = iter(range(10**9))
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    done = [0] * threads

    def loop(t: int) -> None:
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter)
            write(i)
            done[t] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    return sum(done) / (time.monotonic() - started)


def _adapters(config: Any, endpoints: dict[str, str], namespace: str) -> dict[str, Any]:
    from mcrepl.adapters import open_adapter
    out = {}
    for location in (PRIMARY, *REPLICAS):
        adapter = open_adapter(config.target(DATASET, location, endpoints, namespace))
        adapter.ensure_ready()
        out[location] = adapter
    return out


def measure(mode: str, rate: float, seconds: float, endpoints: dict[str, str], every: str,
            heartbeat: str, sample: int = 5, retry_s: float = 0.02) -> dict[str, Any]:
    """One mode at one rate: lag per replica seen by the independent readers, heartbeat lag, CPU."""
    from mcrepl.adapters.base import document
    from mcrepl.orchestrator.config import McreplConfig
    from mcrepl.orchestrator.state import StateStore
    namespace = f"f{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="follow-bench-"))
    raw = raw_config(tmp / "state", "follow" if mode == "follow" else "scheduled", every, heartbeat)
    config_file = tmp / "mcrepl.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    config = McreplConfig.model_validate(raw)
    schema = config.datasets[DATASET].key_schema()
    writers = _adapters(config, endpoints, namespace)          # the application's clients
    readers_ad = _adapters(config, endpoints, namespace)       # the independent readers' own clients
    env = {**os.environ, "MCREPL_LOCAL_ENDPOINTS": json.dumps(endpoints), "MCREPL_NAMESPACE": namespace}
    flag = "--follow" if mode == "follow" else "--schedule"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mcrepl"), "sync", flag, "--config",
                             str(config_file), "--log-level", "error"], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    written: list[tuple[str, float]] = []
    done = threading.Event()
    try:
        # warm-up: one record through to both replicas before the clock starts
        warm = document(schema, {"customer_id": "warmup", "pad": PAD})
        writers[PRIMARY].write_native([warm])
        deadline = time.monotonic() + 120
        while any(readers_ad[r].read(warm.key) is None for r in REPLICAS):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{mode}: the warm-up record never arrived: {proc.stderr.read().decode()[-800:] if proc.poll() is not None else ''}")
            time.sleep(0.05)
        probes = {COSMOS: cosmos_present(config.target(DATASET, COSMOS, endpoints, namespace), endpoints["cosmos"]),
                  GCS: gcs_present(config.target(DATASET, GCS, endpoints, namespace), endpoints["gcs"])}
        sampled: list[tuple[str, float]] = []           # every --sample'th record, in write order
        readers = {r: Reader(probes[r], sampled, done, retry_s) for r in REPLICAS}
        for reader in readers.values():
            reader.start()
        cpu_before, started = tree_cpu_seconds(proc.pid), time.monotonic()
        total = int(rate * seconds)
        slots = [None] * total                  # (key, write time) by sequence number
        counter = iter(range(total))
        lock = threading.Lock()

        def write_loop() -> None:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                due = started + n / rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                record = document(schema, {"customer_id": f"r{n:07d}", "seq": n, "pad": PAD})
                at = time.time()
                writers[PRIMARY].write_native([record])
                slots[n] = (record.key.id, at)
                with lock:                      # readers see keys in order, once written
                    while len(written) < total and slots[len(written)] is not None:
                        written.append(slots[len(written)])  # type: ignore[arg-type]
                        if (len(written) - 1) % sample == 0:
                            sampled.append(written[-1])

        pool = [threading.Thread(target=write_loop, daemon=True) for _ in range(WRITER_THREADS)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        n = len(written)
        wrote_for = time.monotonic() - started
        done.set()
        for reader in readers.values():
            reader.give_up_at = time.monotonic() + 120
            reader.join()
        cpu = tree_cpu_seconds(proc.pid) - cpu_before
    finally:
        done.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    state = StateStore(tmp / "state" / "state.db", audit=None)
    since_ms = int((time.time() - wrote_for - 130) * 1000)
    result: dict[str, Any] = {"mode": mode, "rate": rate, "seconds": round(wrote_for, 1), "written": n,
                              "sampled": len(sampled), "reader_retry_s": retry_s, "load_average": round(os.getloadavg()[0], 1),
                              "achieved_rate": round(n / wrote_for, 1),
                              "cpu_ms_per_record": round(1000 * cpu / max(n, 1), 2), "replicas": {}}
    for r, reader in readers.items():
        hb = state.heartbeats.summary(DATASET, r, since_ms)
        lags = reader.lags()
        result["replicas"][r] = {
            "seen": len(lags), "p50": percentile(lags, 0.5), "p95": percentile(lags, 0.95),
            "p99": percentile(lags, 0.99), "max": max(lags) if lags else float("nan"),
            "heartbeat_p50": hb.p50, "heartbeat_p99": hb.p99, "heartbeats": hb.samples}
    state.close()
    for adapter in writers.values():
        adapter.drop()
        adapter.close()
    for adapter in readers_ad.values():
        adapter.close()
    return result


def print_table(results: list[dict[str, Any]], every: str) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title="end-to-end lag: writer's timestamp → readable at the replica (independent reader)")
    for col in ("mode", "w/s (achieved)", "replica", "store ceiling w/s", "timed/sampled", "p50 s", "p95 s",
                "p99 s", "max s", "heartbeat p50/p99 s", "CPU ms/record", "load avg"):
        table.add_column(col)
    for res in results:
        mode = "follow" if res["mode"] == "follow" else f"scheduled (every {every})"
        for replica, r in res["replicas"].items():
            hb = "-" if r["heartbeat_p99"] is None else f"{r['heartbeat_p50']:.3f} / {r['heartbeat_p99']:.3f}"
            ceiling = res.get("ceilings", {}).get(replica)
            table.add_row(mode, f"{res['rate']:g} ({res['achieved_rate']:g})", replica,
                          "-" if ceiling is None else f"{ceiling:.0f}", f"{r['seen']}/{res['sampled']}",
                          f"{r['p50']:.3f}", f"{r['p95']:.3f}", f"{r['p99']:.3f}", f"{r['max']:.3f}", hb,
                          f"{res['cpu_ms_per_record']:.2f}", f"{res['load_average']:g}")
    Console(width=max(230, Console().width)).print(table)
    for res in results:
        if res["mode"] == "follow" and res["rate"] == 100:
            for replica, r in res["replicas"].items():
                met = r["seen"] == res["sampled"] and r["p99"] < 1.0
                ceiling = res.get("ceilings", {}).get(replica)
                below = f"; the store's plain-write ceiling was {ceiling:.0f} w/s" if ceiling is not None else ""
                print(f"goal p99 < 1 s at 100 w/s (follow), {replica}: p99 {r['p99']:.3f} s -> "
                      f"{'met' if met else 'NOT met'}{below} (load average {res['load_average']:g})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="steady writing per run (default 60)")
    parser.add_argument("--rates", default="50,100,200", help="writes/s, comma-separated")
    parser.add_argument("--modes", default="follow,scheduled", help="follow and/or scheduled")
    parser.add_argument("--schedule-every", default="10s", help="the scheduled mode's schedule (default 10s)")
    parser.add_argument("--heartbeat", default="500ms", help="heartbeat interval (default 500ms)")
    parser.add_argument("--sample", type=int, default=5, help="time every Nth record at each replica (default 5)")
    parser.add_argument("--retry-every", type=float, default=0.02,
                        help="seconds before a reader reads a key it missed again (default 0.02: 50 reads/s "
                             "per replica at most, so the readers' own load stays small)")
    parser.add_argument("--ceiling-seconds", type=float, default=4.0,
                        help="how long each replica's plain-write ceiling is measured before each run (0: not)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    opts = parser.parse_args(argv)
    from mcrepl.orchestrator.localstack import EMULATOR_COSMOS_KEY, LocalStack
    os.environ.setdefault("MCREPL_COSMOS_KEY", EMULATOR_COSMOS_KEY)
    results = []
    with LocalStack(("dynamodb", "cosmos", "gcs")) as stack:
        endpoints = stack.endpoints
        print(f"local stack: {endpoints}", file=sys.stderr)
        for mode in opts.modes.split(","):
            for rate in (float(r) for r in opts.rates.split(",")):
                ceilings = {r: write_ceiling(r, endpoints, opts.ceiling_seconds) for r in REPLICAS} \
                    if opts.ceiling_seconds > 0 else {}
                results.append(measure(mode, rate, opts.seconds, endpoints, opts.schedule_every, opts.heartbeat,
                                       opts.sample, opts.retry_every))
                results[-1]["ceilings"] = ceilings
                print(json.dumps(results[-1]), file=sys.stderr)
    print_table(results, opts.schedule_every)
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    from mcrepl.orchestrator.localstack import exit_cleanly_on_sigterm
    exit_cleanly_on_sigterm()
    main()
