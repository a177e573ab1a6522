"""Verify and repair across every pair of stores, against the emulators."""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mcrepl.adapters.base import Digest, RecordKey, tombstone_of
from mcrepl.orchestrator.cli import app
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine
from mcrepl.orchestrator.verify import DivergenceKind, compare_adapters, iter_divergences
from mcrepl.orchestrator.verify.compare import classify
from mcrepl.orchestrator.verify.merkle import DigestIndex, KeyRow

from .contract.backends import BACKENDS
from mcrepl.testing.records import SCHEMA, doc, stamped, version

STORES = {b.id: b for b in BACKENDS if b.id in ("moto", "cosmos-emulator", "fake-gcs")}
PAIRS = list(itertools.combinations(STORES, 2))


def row(key: str, v: str | None, h: str, tomb: bool = False) -> KeyRow:
    return KeyRow(key, v, h, tomb)


@pytest.mark.parametrize("ref, other, kind", [
    (row("k", "2", "a"), None, DivergenceKind.MISSING),
    (None, row("k", "2", "a"), DivergenceKind.EXTRA),
    (row("k", "2", "a"), row("k", "2", "b"), DivergenceKind.CONTENT),
    (row("k", None, "a"), row("k", "2", "b"), DivergenceKind.CONTENT),
    (row("k", "3", "a"), row("k", "2", "b"), DivergenceKind.STALE),
    (row("k", "3", "", True), row("k", "2", "b"), DivergenceKind.RESURRECTED),
    (row("k", "1", "", True), row("k", "2", "b"), DivergenceKind.TOMBSTONE_STALE),
])
def test_classification(ref: KeyRow | None, other: KeyRow | None, kind: DivergenceKind) -> None:
    assert classify(ref, other, "A", "B").kind is kind


@pytest.mark.parametrize("ref, other", [
    (row("k", "2", "a"), row("k", None, "a")),          # same body, native on one side
    (row("k", "2", "", True), None),                    # tombstone vs purged
    (row("k", "2", "", True), row("k", "3", "", True)),
])
def test_agreement(ref: KeyRow | None, other: KeyRow | None) -> None:
    assert classify(ref, other, "A", "B") is None


def test_identical_replicas_compare_one_range_digest() -> None:
    digests = [Digest(f"k{i}", "v", f"h{i}", False) for i in range(5000)]
    with DigestIndex() as index:
        index.load("a", digests)
        index.load("b", reversed(digests))
        assert index.differing_buckets("a", "b") == ([], 1)
        index.load("c", digests[:-1] + [Digest("k4999", "v", "other", False)])
        buckets, compared = index.differing_buckets("a", "c")
        assert len(buckets) == 1 and compared == 1 + 16 * 3


@pytest.fixture(params=PAIRS, ids=[f"{a}~{b}" for a, b in PAIRS])
def pair(request, local_stack):
    a, b = (STORES[n] for n in request.param)
    eps = local_stack.endpoints
    stores = {a.id: a.open(eps), b.id: b.open(eps)}
    yield stores
    for s in stores.values():
        s.drop()
        s.close()


def inject_every_divergence(ref, other) -> dict[str, DivergenceKind]:
    """A shared base of 30 records, then one key per kind of divergence."""
    base = [stamped(f"same{i}", version(), None, n=i, tags={"a", "b"}) for i in range(30)]
    ref.apply_batch(base)
    other.apply_batch(base)
    ref.apply_batch([stamped("lost")])                                  # never reached the other
    other.apply_batch([stamped("extra")])                               # only on the other
    other.write_native([doc("same1", n=-1, tags={"a", "b"})])          # body edited in place
    old, new = stamped("stale", version(), None, n=1), stamped("stale", version(), None, n=2)
    ref.apply_batch([new])
    other.apply_batch([old])
    live = stamped("zombie", version(), None, n=1)
    other.apply_batch([live])
    ref.apply_batch([tombstone_of(SCHEMA, live.key, version())])        # deleted after the other copied it
    return {"lost": DivergenceKind.MISSING, "extra": DivergenceKind.EXTRA, "same1": DivergenceKind.CONTENT,
            "stale": DivergenceKind.STALE, "zombie": DivergenceKind.RESURRECTED}


def test_identical_replicas_verify_clean(pair) -> None:
    ref, other = pair.values()
    recs = [stamped(f"k{i}", version(), None, n=i) for i in range(40)]
    ref.apply_batch(recs)
    other.apply_batch(recs)
    report = compare_adapters("contract", pair)
    assert report.clean and report.keys == {name: 40 for name in pair}
    assert report.pairs[0].ranges_compared == 1


def engine_over(stores: dict, tmp_path: Path) -> SyncEngine:
    """A sync engine whose dataset ``contract`` lives in ``stores`` (the first is the primary)."""
    by_location = {a.target.replica: a for a in stores.values()}
    locations = list(by_location)
    config = McreplConfig.model_validate({
        "version": 1, "profile": "local", "state_dir": str(tmp_path / "state"),
        "datasets": {"contract": {"key": {"partition": "pk"}, "primary": locations[0], "replicas": locations[1:]}}})
    return SyncEngine(config, StateStore(tmp_path / "state" / "state.db"),
                      adapter_factory=lambda target: by_location[target.replica])


def test_every_divergence_is_found_and_repaired(pair, tmp_path: Path) -> None:
    ref, other = pair.values()
    expected = inject_every_divergence(ref, other)
    report = compare_adapters("contract", pair)
    found = {d.key_id: d.kind for d in iter_divergences(report)}
    assert found == expected
    stale = next(d for d in iter_divergences(report) if d.key_id == "stale")
    assert stale.newer == next(iter(pair))

    engine = engine_over(pair, tmp_path)
    before = {n: sorted(a.list_digests(), key=lambda d: d.key_id) for n, a in pair.items()}
    dry, verdict = engine.repair("contract", dry_run=True)
    assert len(dry.writes) == 5 and not verdict.converged
    assert {n: sorted(a.list_digests(), key=lambda d: d.key_id) for n, a in pair.items()} == before, \
        "planning (a dry run) writes nothing"

    plan, verdict = engine.repair("contract")
    assert len(plan.writes) == 5 and verdict.converged and verdict.repaired == 5
    after = compare_adapters("contract", pair)
    assert after.clean, [d.to_dict() for d in iter_divergences(after)]
    again, _ = engine.repair("contract")
    assert again.writes == []
    assert other.read(RecordKey(("zombie",))).tombstone, "the delete wins: not resurrected"
    assert other.read(RecordKey(("stale",))).body["n"] == 2
    audit = [e["kind"] for e in engine.state.audit.sink.entries()]  # type: ignore[union-attr]
    assert audit.count("repair") == 1 and "batch" in audit, "repairs are logged and delivered by the lanes"


# --- thresholds and the alert hook, through the CLI --------------------------------------

class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def write_config(tmp_path: Path, eps: dict, hook_url: str, alert_file: Path, max_divergent: int) -> Path:
    cfg = {
        "version": 1, "profile": "local", "state_dir": str(tmp_path / "state"),
        "providers": {"dynamodb": {"endpoint": eps["dynamodb"]},
                      "gcs": {"endpoint": eps["gcs"], "auth": "anonymous"}},
        "datasets": {"orders": {"key": {"partition": "pk"}, "primary": "dynamodb:eu-west-1",
                                "replicas": [{"at": "gcs:europe-west1", "resource": f"v-{tmp_path.name[-20:].lower()}"}],
                                "verify": {"max_divergent": max_divergent}}},
        "verify": {"alert": {"webhook": hook_url, "command": f"tee {alert_file}"}},
    }
    path = tmp_path / "mcrepl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_threshold_breach_exits_nonzero_and_alerts(tmp_path: Path, local_stack, webhook) -> None:
    from mcrepl.adapters import open_adapter
    from mcrepl.orchestrator.config import load_config
    url, received = webhook
    alert_file = tmp_path / "alert.json"
    eps = local_stack.endpoints
    path = write_config(tmp_path, eps, url, alert_file, max_divergent=1)
    cfg = load_config(path)
    stores = [open_adapter(t) for t in cfg.targets("orders")]
    for s in stores:
        s.ensure_ready()
    try:
        shared = [stamped(f"o{i}", version(), None, n=i) for i in range(10)]
        for s in stores:
            s.apply_batch(shared)
        runner = CliRunner()
        clean = runner.invoke(app, ["verify", "-c", str(path), "--format", "json"])
        assert clean.exit_code == 0, clean.output
        assert json.loads(clean.output)[0]["clean"] is True and received == []

        stores[0].apply_batch([stamped("only-primary-1"), stamped("only-primary-2")])
        breached = runner.invoke(app, ["verify", "-c", str(path), "--format", "json"])
        assert breached.exit_code == 1, breached.output
        report = json.loads(breached.output)[0]
        assert report["divergent"] == 2 and report["breaches"]
        assert received and received[0]["report"]["divergent"] == 2
        assert json.loads(alert_file.read_text())["event"] == "mcrepl.verify.breach"

        dry = runner.invoke(app, ["repair", "-c", str(path), "-d", "orders", "--dry-run", "--format", "json"])
        assert dry.exit_code == 0 and json.loads(dry.output)["plan"]["keys"] == 2
        fixed = runner.invoke(app, ["repair", "-c", str(path), "-d", "orders"])
        assert fixed.exit_code == 0, fixed.output
        again = runner.invoke(app, ["repair", "-c", str(path), "-d", "orders"])
        assert "nothing to repair" in again.output
        assert runner.invoke(app, ["verify", "-c", str(path), "--no-alert"]).exit_code == 0
    finally:
        for s in stores:
            s.drop()
            s.close()


def test_key_written_natively_on_a_replica_only_is_repaired(tmp_path: Path) -> None:
    import dataclasses
    memory = next(b for b in BACKENDS if b.id == "memory")
    primary = memory.open({})
    replica = type(primary)(dataclasses.replace(memory.target({}), replica="gcs:europe-west1"))
    pair = {"primary": primary, "replica": replica}
    replica.write_native([doc("stray", n=1)])
    report = compare_adapters("contract", pair)
    assert [(d.key_id, d.kind) for d in iter_divergences(report)] == [("stray", DivergenceKind.EXTRA)]
    primary = dataclasses.replace(primary.target, replica="dynamodb:eu-west-1")
    pair["primary"] = type(replica)(primary)
    _, verdict = engine_over(pair, tmp_path).repair("contract")
    assert verdict.converged and compare_adapters("contract", pair).clean
    assert replica.read(RecordKey(("stray",))).tombstone


def test_dataset_thresholds_override_the_global_ones_field_by_field(tmp_path: Path) -> None:
    from mcrepl.orchestrator.config import load_config
    from mcrepl.orchestrator.verify import thresholds_for
    path = tmp_path / "mcrepl.yaml"
    path.write_text(yaml.safe_dump({
        "verify": {"thresholds": {"max_divergent": 5, "max_ratio": 0.5}},
        "datasets": {"orders": {"key": {"partition": "pk"}, "primary": "dynamodb:eu-west-1",
                                "replicas": ["gcs:europe-west1"], "verify": {"max_ratio": 0.01}}}}))
    t = thresholds_for(load_config(path), "orders")
    assert (t.max_divergent, t.max_ratio) == (5, 0.01)
