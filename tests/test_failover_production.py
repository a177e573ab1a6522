"""Production failover end to end on the local stack (issue 14, "Done when").

A DynamoDB → DynamoDB + GCS topology on moto and fake-gcs-server, driven through the
``mcrepl`` CLI as on-call would and written to through :class:`mcrepl.client.FencedWriter`
as an application would: promote, write, sync, verify, status; a writer pinned to the old
epoch refused by DynamoDB itself; failback with nothing lost; a promotion SIGKILLed in the
middle of its drain finished by running it again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import ReplicaAdapter, document
from mcrepl.adapters.base.fence import StaleEpoch
from mcrepl.client import FencedWriter
from mcrepl.orchestrator.config import McreplConfig

from .cli_process import run_cli

WEST, CENTRAL, GCS = "dynamodb:eu-west-1", "dynamodb:eu-central-1", "gcs:europe-west1"


class Topology:
    """One dataset of the issue's topology, its config file, and the CLI run as a subprocess."""

    def __init__(self, tmp: Path, endpoints: dict[str, str], **sync: Any) -> None:
        self.dataset = f"fo-{uuid.uuid4().hex[:8]}"
        self.endpoints = endpoints
        self.raw: dict[str, Any] = {
            "version": 1, "profile": "local", "state_dir": str(tmp / "state"),
            "providers": {"dynamodb": {"endpoint": "local"}, "gcs": {"endpoint": "local", "auth": "anonymous"}},
            "datasets": {self.dataset: {"key": {"partition": "id"}, "primary": WEST, "replicas": [CENTRAL, GCS]}},
            # long enough for a scan of the emulator under a loaded CI machine (each request's read
            # timeout is bounded by it); an unreachable endpoint is refused at once anyway
            "sync": {"retry_deadline": "15s", **sync}}
        self.path = tmp / "mcrepl.yaml"
        self.write_config(self.raw)
        self.config = McreplConfig.model_validate(self.raw)
        self.stores: dict[str, ReplicaAdapter] = {}
        for location in (WEST, CENTRAL, GCS):
            adapter = open_adapter(self.config.target(self.dataset, location, endpoints))
            adapter.ensure_ready()
            self.stores[location] = adapter
        self.schema = self.config.datasets[self.dataset].key_schema()

    def write_config(self, raw: dict[str, Any], path: Path | None = None) -> Path:
        path = path or self.path
        path.write_text(yaml.safe_dump(raw))
        return path

    def env(self) -> dict[str, str]:
        return {**os.environ, "MCREPL_LOCAL_ENDPOINTS": json.dumps(self.endpoints)}

    def cli(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli([*args, "-c", str(config or self.path)], env=self.env())

    def ok(self, *args: str) -> str:
        done = self.cli(*args)
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def seed(self, count: int, start: int = 0, **extra: Any) -> None:
        self.stores[WEST].write_native([document(self.schema, {"id": f"k{i:05d}", "n": i, **extra})
                                        for i in range(start, start + count)])

    def writer(self, **kw: Any) -> FencedWriter:
        return FencedWriter(self.config, self.dataset, local_endpoints=self.endpoints, **kw)

    def bodies(self, location: str) -> dict[str, Any]:
        return {d.key_id: d for d in self.stores[location].list_digests() if not d.tombstone}

    def close(self) -> None:
        for adapter in self.stores.values():
            adapter.drop()
            adapter.close()


@pytest.fixture()
def topology(local_stack: Any, tmp_path: Path) -> Any:
    endpoints = {name: local_stack.endpoint(name) for name in ("dynamodb", "gcs")}
    topo = Topology(tmp_path, endpoints)
    try:
        yield topo
    finally:
        topo.close()


def _status(topo: Topology) -> dict[str, Any]:
    (row,) = json.loads(topo.ok("failover", "status", "-d", topo.dataset, "--format", "json"))
    return row


def test_promote_fenced_writes_sync_verify_and_failback(topology: Topology) -> None:
    topo = topology
    topo.seed(30)
    topo.ok("sync", "--once")
    armed = json.loads(topo.ok("failover", "fence", "-d", topo.dataset, "--format", "json"))
    assert {(f["location"], f["status"], f["epoch"]) for f in armed} == \
        {(WEST, "published", 1), (CENTRAL, "published", 1), (GCS, "published", 1)}
    follower = topo.writer(writer="app")
    assert follower.primary == (WEST, 1)
    for i in range(5):
        assert follower.put({"id": f"w{i}", "phase": "before"}).location == WEST

    report = json.loads(topo.ok("failover", "promote", CENTRAL, "-d", topo.dataset, "--yes", "--format", "json"))
    assert (report["previous"], report["location"], report["epoch"]) == (WEST, CENTRAL, 2)
    assert {f["location"]: f["status"] for f in report["fences"]} == \
        {WEST: "published", CENTRAL: "published", GCS: "published"}
    assert report["rpo"]["count"] == 0 and report["dns"]["status"] == "none"

    # the follower is refused at the old primary, re-reads the epoch records and moves on
    after = [follower.put({"id": f"a{i}", "phase": "after"}) for i in range(10)]
    assert {(r.location, r.epoch) for r in after} == {(CENTRAL, 2)}
    # a writer cut off in the lost region, still pinned to epoch 1: DynamoDB refuses it
    with topo.writer(writer="zombie", pin=(WEST, 1)) as zombie:
        with pytest.raises(StaleEpoch) as refused:
            zombie.put({"id": "zombie-1", "phase": "stale"})
    assert refused.value.landed is False and refused.value.current is not None
    assert refused.value.current.epoch == 2
    assert topo.stores[WEST].read(topo.schema.parse_id("zombie-1")) is None

    topo.ok("sync", "--once")
    topo.ok("verify")                                        # exit 0: every replica equal
    status = _status(topo)
    assert (status["primary"], status["epoch"]) == (CENTRAL, 2) and status["fencing_pending"] == []
    assert status["demoted"][0]["epoch"] == 1

    back = json.loads(topo.ok("failover", "failback", "-d", topo.dataset, "--yes", "--format", "json"))
    assert back["switch"]["location"] == WEST and back["switch"]["epoch"] == 3
    for i in range(3):
        assert follower.put({"id": f"b{i}", "phase": "back"}).location == WEST
    topo.ok("sync", "--once")
    topo.ok("verify")
    expected = {f"k{i:05d}" for i in range(30)} | {f"w{i}" for i in range(5)} | {f"a{i}" for i in range(10)} | \
        {f"b{i}" for i in range(3)}
    for location in (WEST, CENTRAL, GCS):
        assert set(topo.bodies(location)) == expected, location
    assert (_status(topo)["primary"], _status(topo)["epoch"]) == (WEST, 3)
    follower.close()


def test_a_promotion_killed_mid_drain_completes_when_run_again(local_stack: Any, tmp_path: Path) -> None:
    endpoints = {name: local_stack.endpoint(name) for name in ("dynamodb", "gcs")}
    topo = Topology(tmp_path, endpoints, batch_size=20, breaker_failures=1)
    try:
        topo.seed(20)
        topo.ok("sync", "--once")
        # eu-central-1 unreachable while 2,000 more changes are captured: its lane falls behind
        cut = json.loads(json.dumps(topo.raw))
        cut["datasets"][topo.dataset]["replicas"][0] = {"at": CENTRAL, "endpoint": "http://127.0.0.1:9"}
        topo.seed(2000, start=20, wave=2)
        assert topo.cli("sync", "--once", config=topo.write_config(cut, tmp_path / "cut.yaml")).returncode == 3
        db = Path(topo.config.state_dir) / "state.db"
        head, offset = _lane(db, topo.dataset, CENTRAL)
        assert head - offset == 2000

        proc = subprocess.Popen([sys.executable, "-m", "mcrepl.orchestrator.cli", "failover", "promote", CENTRAL,
                                 "-d", topo.dataset, "--yes", "-c", str(topo.path)], env=topo.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            _, moved = _lane(db, topo.dataset, CENTRAL)
            if offset < moved < head:
                break                                        # mid-drain
            time.sleep(0.01)
        assert proc.poll() is None, "the promotion finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _, partial = _lane(db, topo.dataset, CENTRAL)
        assert offset < partial < head and _epoch(db, topo.dataset) == 1, "killed half-way, pointer not moved"

        report = json.loads(topo.ok("failover", "promote", CENTRAL, "-d", topo.dataset, "--yes", "--format", "json"))
        assert report["epoch"] == 2 and report["already"] is False
        assert report["promotion"]["undrained"] == 0
        again = json.loads(topo.ok("failover", "promote", CENTRAL, "-d", topo.dataset, "--yes", "--format", "json"))
        assert again["already"] is True and again["epoch"] == 2
        topo.ok("sync", "--once")
        topo.ok("verify")
        assert len(topo.bodies(CENTRAL)) == 2020
        assert (_status(topo)["primary"], _status(topo)["epoch"]) == (CENTRAL, 2)
    finally:
        topo.close()


def test_promote_refuses_a_target_behind_the_lag_bound(topology: Topology, tmp_path: Path) -> None:
    topo = topology
    topo.seed(5)
    topo.ok("sync", "--once")
    cut = json.loads(json.dumps(topo.raw))
    cut["datasets"][topo.dataset]["replicas"][0] = {"at": CENTRAL, "endpoint": "http://127.0.0.1:9"}
    cut["sync"]["breaker_failures"] = 1
    topo.seed(30, start=5)
    topo.cli("sync", "--once", config=topo.write_config(cut, tmp_path / "cut.yaml"))
    bounded = json.loads(json.dumps(topo.raw))
    bounded["failover"] = {"max_lag_changes": 10}
    path = topo.write_config(bounded, tmp_path / "bounded.yaml")
    refused = topo.cli("failover", "promote", CENTRAL, "-d", topo.dataset, "--yes", config=path)
    assert refused.returncode == 2 and "30 changes behind" in refused.stderr and "max_lag_changes" in refused.stderr
    dry = topo.cli("failover", "promote", CENTRAL, "-d", topo.dataset, "--dry-run", "--force", "--format", "json",
                   config=path)
    assert dry.returncode == 0 and json.loads(dry.stdout)["lag"]["changes"] == 30
    assert _status(topo)["epoch"] == 1, "neither the refusal nor the dry run moved the primary"


def _lane(db: Path, dataset: str, location: str) -> tuple[int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        head = conn.execute("SELECT head_seq FROM datasets WHERE dataset=?", (dataset,)).fetchone()
        lane = conn.execute("SELECT offset FROM lanes WHERE dataset=? AND replica=?", (dataset, location)).fetchone()
    return (int(head[0]) if head else 0), (int(lane[0]) if lane else 0)


def _epoch(db: Path, dataset: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT epoch FROM primary_pointer WHERE dataset=?", (dataset,)).fetchone()[0])
