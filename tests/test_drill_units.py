"""Drill building blocks without emulators: the spec, the checker's arithmetic, the router's
fencing and the sync engine's split-brain guard (on the in-memory reference adapter)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from mcrepl.adapters.base import ConfigError, KeyAttribute, KeySchema, Record, Version, document, tombstone_of
from mcrepl.adapters.memory import MemoryAdapter
from mcrepl.failover.checker import Convergence, Findings, analyse, rpo_snapshot
from mcrepl.failover.history import History, Op
from mcrepl.failover.router import Clocks, WriteRouter
from mcrepl.failover.spec import load_drill
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine

DRILLS = sorted((Path(__file__).parent.parent / "examples" / "drills").glob("*.yaml"))
SCHEMA = KeySchema(KeyAttribute("id"))
A, B = "dynamodb:eu-west-1", "dynamodb:eu-central-1"


# -- spec ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DRILLS, ids=lambda p: p.stem)
def test_every_example_drill_validates(path: Path) -> None:
    spec = load_drill(path)
    assert spec.method and spec.topology.replicas
    assert spec.effective_thresholds.lost == (0 if spec.zero_loss else spec.thresholds.lost)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drill.yaml"
    path.write_text(text)
    return path


def test_unknown_location_names_the_step_and_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, "title: t\ntopology: {primary: 'dynamodb:eu-west-1', replicas: ['gcs:eu']}\n"
                            "method: [{action: fault, location: 'cosmos:westeurope'}]\n")
    with pytest.raises(ConfigError) as err:
        load_drill(path)
    assert "method[0]" in str(err.value) and "use one of dynamodb:eu-west-1, gcs:eu" in str(err.value)


def test_bad_action_and_fence_mode_mismatch_are_explained(tmp_path: Path) -> None:
    path = _write(tmp_path, "title: t\ntopology: {primary: 'dynamodb:a', replicas: ['gcs:b']}\n"
                            "method: [{action: explode}]\n")
    with pytest.raises(ConfigError) as err:
        load_drill(path)
    assert "drill.yaml:method[0]:" in str(err.value) and "fix:" in str(err.value)
    path = _write(tmp_path, "title: t\nfault_mode: fence\ntopology: {primary: 'dynamodb:a', replicas: ['gcs:b']}\n"
                            "method: [{action: fault, location: 'gcs:b', mode: blackhole}]\n")
    with pytest.raises(ConfigError, match="fault_mode is 'fence'"):
        load_drill(path)


# -- checker ---------------------------------------------------------------------------------

def _op(i: int, key: str, version: Version, *, kind: str = "update", status: str = "ok", target: str = A,
        at: float = 100.0) -> Op:
    return Op(i, "app", kind, key, version.token, version.origin, 1, "h", target, at, at + 0.01, status, None)


def test_rpo_lost_recovered_and_resurrected_are_counted_from_vectors() -> None:
    v1, v2, v3 = Version(1000, 0, A), Version(2000, 0, A), Version(3000, 0, A)
    rec_v1 = document(SCHEMA, {"id": "k1", "n": 1}).stamped(v1)
    ops = [_op(1, "k1", v1), _op(2, "k1", v2, at=101), _op(3, "k2", v1, at=99),
           _op(4, "k3", v3, kind="delete", at=99)]
    # at promotion the new primary had k1 at v1 only, and nothing of k2/k3
    snap = rpo_snapshot(ops, B, {"k1": rec_v1, "k2": None, "k3": None}, at=110.0, fault_at=105.0)
    assert sorted(snap.missing) == [2, 3]          # the delete of an absent key loses nothing
    assert snap.seconds == pytest.approx(105.0 - 99.01)
    # finally: k1 reflects v2 (recovered), k2 vanished (lost), k3 is live at an older version (resurrected)
    final = {"k1": document(SCHEMA, {"id": "k1", "n": 2}).stamped(v2),
             "k2": None, "k3": document(SCHEMA, {"id": "k3"}).stamped(v1)}
    f = analyse(ops, final, [snap], rto_from=None, convergence=Convergence(None, 200.0, 1), healed_at=190.0)
    assert (f.acknowledged, f.lost, f.recovered, f.resurrected) == (4, 1, 1, 1)
    assert f.lost_keys == ["k2"] and f.resurrected_keys == ["k3"] and f.convergence_seconds == 10.0


def test_a_refused_write_found_in_the_final_state_is_unexpected() -> None:
    v1, v2 = Version(1000, 0, A), Version(2000, 0, A)
    ops = [_op(1, "k1", v1), _op(2, "k1", v2, status="fenced")]
    final = {"k1": document(SCHEMA, {"id": "k1"}).stamped(v2, {A: v2.token})}
    f = analyse(ops, final, [], None, Convergence(None, None, 1), None)
    assert f.unexpected == 1 and f.unexpected_keys == ["k1"] and f.lost == 0


def test_a_delete_mcrepl_made_rolls_back_unacknowledged_writes_and_loses_acknowledged_ones() -> None:
    """The split-brain drill under load: an insert sent as the region was cut off timed out,
    landed at the fenced primary, and was undone by a delete stamped by mcrepl. That is the
    key's acknowledged state (absent), not unexpected content; the same delete over an
    acknowledged insert (with no acknowledged delete after it) loses that write."""
    key = SCHEMA.parse_id("k1")
    v1, v2, v3 = Version(1000, 0, f"{A}/app"), Version(2000, 0, f"{A}/app"), Version(3000, 0, f"{B}#mcrepl")
    undo = tombstone_of(SCHEMA, key, v3, {f"{A}/app": v1.token, v3.origin: v3.token})

    def judged(ops: list[Op], final: Record | None) -> Findings:
        return analyse(ops, {"k1": final}, [], None, Convergence(None, None, 1), None)

    rolled_back = judged([_op(1, "k1", v1, kind="insert", status="timeout")], undo)
    assert (rolled_back.unexpected, rolled_back.lost) == (0, 0)
    discarded = judged([_op(1, "k1", v1, kind="insert")], undo)
    assert (discarded.unexpected, discarded.lost, discarded.lost_keys) == (0, 1, ["k1"])
    undo_both = tombstone_of(SCHEMA, key, v3, {f"{A}/app": v2.token, v3.origin: v3.token})
    deleted_after = judged([_op(1, "k1", v1, kind="insert"), _op(2, "k1", v2, kind="delete", at=101)], undo_both)
    assert (deleted_after.unexpected, deleted_after.lost) == (0, 0)
    assert judged([_op(1, "k1", v1, kind="insert", status="timeout")], None).unexpected == 0


# -- router fencing and the engine's split-brain guard ----------------------------------------

def _config(ns: str) -> McreplConfig:
    return McreplConfig.model_validate({
        "profile": "local", "datasets": {"acct": {"key": {"partition": "id"}, "primary": A, "replicas": [B]}},
        "sync": {"batch_size": 50}})


def _engine(config: McreplConfig, state: StateStore, ns: str) -> SyncEngine:
    return SyncEngine(config, state, namespace=ns, adapter_factory=MemoryAdapter)


def _live(adapter: MemoryAdapter, key: str) -> bool:
    record = adapter.read(SCHEMA.parse_id(key))
    return record is not None and not record.tombstone


def test_a_writer_pinned_to_a_demoted_epoch_is_fenced(tmp_path: Path) -> None:
    ns = f"u{uuid.uuid4().hex[:6]}-"
    config, state, history = _config(ns), StateStore(tmp_path / "s.db"), History(tmp_path / "h.db")
    adapters = {loc: MemoryAdapter(config.target("acct", loc, None, ns)) for loc in (A, B)}
    state.primary("acct", A)
    _engine(config, state, ns).promote("acct", B, force=True)
    for fencing, expected in ((True, "fenced"), (False, "ok")):
        zombie = WriteRouter("stale", "acct", A, state, adapters, history, SCHEMA, Clocks(), fencing=fencing,
                             pinned=(A, 1))
        assert zombie.write("insert", "k1", {"n": 1}) == expected
    follower = WriteRouter("app", "acct", A, state, adapters, history, SCHEMA, Clocks())
    assert follower.write("update", "k1", {"n": 2}) == "ok"
    assert [op.target for op in history.ops()][-1] == B


def test_writes_that_landed_on_a_demoted_primary_are_reconciled_not_dropped(tmp_path: Path) -> None:
    """Whether a write reached the old primary before or after its demotion cannot be told
    without trusting two hosts' clocks: whatever landed is reconciled when it rejoins —
    delivered where nothing concurrent happened, settled (and logged) where it did."""
    ns = f"u{uuid.uuid4().hex[:6]}-"
    config, state = _config(ns), StateStore(tmp_path / "s.db")
    a, b = (MemoryAdapter(config.target("acct", loc, None, ns)) for loc in (A, B))
    engine = _engine(config, state, ns)
    assert state.primary("acct", A).epoch == 1
    now_ms = int(time.time() * 1000)
    a.apply_batch([document(SCHEMA, {"id": "before"}).stamped(Version(now_ms - 5000, 0, A), epoch=1),
                   document(SCHEMA, {"id": "both"}).stamped(Version(now_ms - 5000, 0, A), epoch=1)])
    assert engine.run_once("acct").ok and b.read(SCHEMA.parse_id("before")) is not None
    engine.promote("acct", B)                               # epoch 2; epoch 1 ends now
    assert state.demoted_at("acct", 1) is not None
    late = document(SCHEMA, {"id": "late"}).stamped(Version(now_ms + 60_000, 0, A), epoch=1)   # a fast clock
    deleted = tombstone_of(SCHEMA, SCHEMA.parse_id("before"), Version(now_ms + 61_000, 0, A),
                           dict(a.read(SCHEMA.parse_id("before")).meta.vector), epoch=1)  # type: ignore[union-attr]
    a.apply_batch([late, deleted, document(SCHEMA, {"id": "both", "side": "a"}).stamped(
        Version(now_ms + 62_000, 0, A), dict(a.read(SCHEMA.parse_id("both")).meta.vector), epoch=1)])  # type: ignore[union-attr]
    b.write_native([document(SCHEMA, {"id": "both", "side": "b"})])           # concurrent, on the new primary
    report = engine.run_once("acct")                        # A rejoins: everything it holds is reconciled
    assert report.ok and engine.run_once("acct").ok
    assert _live(b, "late") and not _live(b, "before"), "what landed on A reached B, deletes included"
    (row,) = state.journal.conflicts("acct")
    assert row["key_id"] == "both" and row["resolver"] == "lww", "the concurrent write is a logged conflict"
    assert a.read(SCHEMA.parse_id("both")).body == b.read(SCHEMA.parse_id("both")).body  # type: ignore[union-attr]
    engine.close()


def test_without_fencing_capture_replicates_the_split_brain_write(tmp_path: Path) -> None:
    ns = f"u{uuid.uuid4().hex[:6]}-"
    config, state = _config(ns), StateStore(tmp_path / "s.db")
    a, b = (MemoryAdapter(config.target("acct", loc, None, ns)) for loc in (A, B))
    engine = _engine(config, state, ns)
    state.primary("acct", A)
    engine.run_once("acct")
    engine.promote("acct", B, fence=False)
    assert state.demoted_at("acct", 1) is None
    zombie = document(SCHEMA, {"id": "zombie"}).stamped(Version(int(time.time() * 1000) + 500, 0, A), epoch=1)
    a.apply_batch([zombie])
    engine.run_once("acct")
    engine.promote("acct", A, fence=False)
    engine.run_once("acct")
    assert _live(b, "zombie")                                # no guard: the stale-epoch write spreads
    engine.close()


# -- the report ------------------------------------------------------------------------------

def _report(**findings: object) -> dict:
    from mcrepl.failover.checker import Findings
    f = Findings(attempted=10, acknowledged=8, failed=2, lost=1, lost_keys=["k1"], **findings)  # type: ignore[arg-type]
    events = [{"t": 2.0, "kind": "fault", "detail": {"location": "dynamodb:eu-west-1"}},
              {"t": 2.1, "kind": "promote", "detail": {"location": "dynamodb:eu-central-1"}},
              {"t": 2.2, "kind": "heal", "detail": {"location": "all"}},
              {"t": 2.3, "kind": "rejoin", "detail": {"location": "dynamodb:eu-west-1"}},
              {"t": 9.5, "kind": "failback", "detail": {"location": "dynamodb:eu-west-1"}}]
    return {"title": "t", "description": "", "fault_mode": "proxy", "fencing": True, "zero_loss": False,
            "passed": False, "error": None, "started_at": "2026-11-25T00:00:00Z", "seconds": 10.0,
            "topology": {"dataset": "d", "namespace": "n", "primary": "dynamodb:eu-west-1",
                         "replicas": ["dynamodb:eu-central-1"], "ack": "primary"},
            "findings": f.to_dict(), "thresholds": [], "steady_state": {}, "reconciled": [], "steps": [],
            "timeline": {"bucket_seconds": 0.5, "lag": {},
                         "writes": [{"t": 1.0, "ok": 3, "failed": 0, "lost": 0},
                                    {"t": 1.5, "ok": 1, "failed": 2, "lost": 1}], "events": events}}


def test_lost_writes_are_red_markers_include_rejoin_and_labels_never_overlap() -> None:
    import re as _re
    from mcrepl.failover.html_report import render_html
    html = render_html(_report())
    assert _re.search(r'<rect class="lost"[^>]*fill="#c62828"', html), "a lost write is drawn red"
    assert _re.search(r'<rect class="ok"[^>]*fill="#4caf50"', html)
    assert 'class="failed"' in html and "#ff9800" in html, "failed (never acknowledged) writes are not red"
    labels = _re.findall(r'<text class="marker" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]+)</text>', html)
    assert [t for _, _, t in labels] == ["fault eu-west-1", "promote eu-central-1", "heal", "rejoin eu-west-1",
                                         "failback eu-west-1"]
    boxes = [(float(x), float(x) + 6.5 * len(t), y) for x, y, t in labels]
    for i, (a0, a1, ay) in enumerate(boxes):
        for b0, b1, by in boxes[i + 1:]:
            assert ay != by or a1 + 4 <= b0 or b1 + 4 <= a0, f"labels overlap: {labels}"


def test_summary_says_not_measured_rather_than_n_a() -> None:
    from mcrepl.failover.report import summary
    text = summary(_report())
    assert "n/a" not in text and "RPO not measured (no promotion)" in text and "RTO not measured" in text
    assert "RPO 3 writes / 1.5s" in summary(_report(rpo_count=3, rpo_seconds=1.5))


def test_the_timeline_counts_lost_writes_where_they_were_made(tmp_path: Path) -> None:
    import time as _time
    from mcrepl.failover.checker import Findings
    from mcrepl.failover.history import History
    from mcrepl.failover.report import _timeline
    history = History(tmp_path / "history.sqlite")
    t0 = _time.time()
    for key in ("a", "b", "c"):
        history.finish(history.attempt("app", "put", key, None, None, 1, None, "x"), "ok")
    lost_at = history.ops()[1].started
    timeline = _timeline(history, t0, Findings(lost=1, lost_keys=["b"], lost_at=[lost_at]))
    history.close()
    (bucket,) = timeline["writes"]
    assert (bucket["ok"], bucket["lost"]) == (2, 1), "the lost write moves from green to red in its own bucket"
