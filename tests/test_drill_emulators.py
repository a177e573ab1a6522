"""Every example drill end-to-end on the local emulators, and the proof that the checker can fail.

Each drill builds its own namespaced topology (unique table, database and bucket names),
puts a fault proxy in front of every location and drops everything afterwards.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcrepl.failover.endpoints import services_for
from mcrepl.failover.runner import run_drill
from mcrepl.failover.spec import load_drill

ROOT = Path(__file__).parent.parent
DRILLS = sorted((ROOT / "examples" / "drills").glob("*.yaml"))


def _diagnosis(report_dir: Path, report: dict[str, Any]) -> str:
    """What a failed drill did to the keys it names, for a failure seen once under CI load.

    pytest keeps only the last few temporary directories, so the history (every op on
    those keys), the events, and the state's log entries and conflicts for them go into
    the assertion message itself (the log itself is usually truncated by then: the heads
    say what it last held). Hashes and versions only: drills write no secrets.
    """
    findings = report["findings"]
    keys = sorted({*findings["lost_keys"], *findings["resurrected_keys"], *findings["unexpected_keys"],
                   *(d["key"] for d in findings["divergences"])})[:5]
    lines = [f"findings: { {k: v for k, v in findings.items() if not k.endswith('_at')} }"]
    with sqlite3.connect(report_dir / "history.sqlite") as history:
        t0 = history.execute("SELECT MIN(started) FROM ops").fetchone()[0] or 0.0
        lines += [f"event t={at - t0:.3f} {kind} {detail}"
                  for at, kind, detail in history.execute("SELECT at, kind, detail FROM events ORDER BY id")]
        for key in keys:
            lines += [f"op {key} t={started - t0:.3f}..{(finished or started) - t0:.3f} {writer} {kind} -> {target} "
                      f"{status} version={version} epoch={epoch} {error or ''}"
                      for writer, kind, target, status, version, epoch, started, finished, error in history.execute(
                          "SELECT writer, kind, target, status, version, epoch, started, finished, error FROM ops "
                          "WHERE key=? ORDER BY started", (key,))]
    for state_file in sorted(report_dir.rglob("state.sqlite")) + sorted(report_dir.rglob("state.db")):
        with sqlite3.connect(state_file) as state:
            for key in keys:
                lines += [f"log {state_file.name} {key} seq={seq} meta={meta} at={at - t0:.3f}"
                          for seq, meta, at in state.execute(
                              "SELECT seq, meta, captured_at FROM capture_log WHERE key LIKE ? ORDER BY seq",
                              (f"%{key}%",))]
                lines += [f"head {state_file.name} {key} meta={meta}"
                          for (meta,) in state.execute("SELECT meta FROM heads WHERE key_id LIKE ?", (f"%{key}%",))]
                lines += [f"conflict {key} {replica} incoming={incoming} stored={stored} winner={winner} "
                          f"t={at - t0:.3f}"
                          for replica, incoming, stored, winner, at in state.execute(
                              "SELECT replica, incoming, stored, winner, at FROM conflicts WHERE key_id LIKE ? "
                              "ORDER BY id", (f"%{key}%",))]
    return "\n".join(lines)


def _endpoints(local_stack: Any, spec: Any) -> dict[str, str]:
    return {name: local_stack.endpoint(name) for name in services_for(spec)}


@pytest.mark.slow
@pytest.mark.parametrize("path", DRILLS, ids=lambda p: p.stem)
def test_example_drill_passes_its_thresholds(path: Path, local_stack: Any, tmp_path: Path) -> None:
    spec = load_drill(path)
    outcome = run_drill(spec, _endpoints(local_stack, spec), tmp_path)
    report = outcome.report
    failed = [t for t in report["thresholds"] if not t["passed"]]
    assert outcome.passed, (f"{report['error']} / thresholds failed: {failed} / steady: {report['steady_state']}"
                            f"\n{_diagnosis(outcome.report_dir, report)}")
    findings = report["findings"]
    assert findings["acknowledged"] > 0 and findings["divergent"] == 0
    if spec.zero_loss:
        assert findings["lost"] == 0
    if any(step.action == "promote" for step in spec.method):
        assert findings["rpo_count"] is not None and findings["rto_seconds"] is not None
        assert findings["rpo_count"] <= (spec.thresholds.rpo_count if spec.thresholds.rpo_count is not None else 10**6)
    if spec.title.startswith("Split-brain"):
        assert findings["fenced"] > 0                     # the stale writer was refused
    saved = json.loads(outcome.json_path.read_text())
    assert saved["passed"] is True
    html = outcome.html_path.read_text()
    assert "<svg" in html and "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


@pytest.mark.slow
def test_split_brain_without_fencing_fails_and_names_the_divergence(local_stack: Any, tmp_path: Path) -> None:
    path = ROOT / "examples" / "drills" / "split-brain.yaml"
    spec = load_drill(path, {"fencing": False})
    outcome = run_drill(spec, _endpoints(local_stack, spec), tmp_path)
    report = outcome.report
    assert not outcome.passed
    findings = report["findings"]
    # the zombie's writes land; when the demoted primary rejoins they meet the new primary's
    # concurrent writes, the conflicts are settled (logged) and the copies converge, but
    # last-writer-wins discards acknowledged writes on one side: the drill fails on them
    assert findings["fenced"] == 0 and findings["lost"] > 0 and findings["lost_keys"]
    assert findings["divergent"] == 0, \
        f"converged: every conflict was settled, none left divergent\n{_diagnosis(tmp_path, report)}"
    failed = {t["name"] for t in report["thresholds"] if not t["passed"]}
    assert "lost" in failed
    # what a failing drill test prints: each named key's ops and the log's head for it (and its
    # conflicts, when a settlement discarded the write; a rolled-back zombie write has none)
    diagnosis = _diagnosis(tmp_path, report)
    lost = findings["lost_keys"][0]
    assert f"op {lost} " in diagnosis and f"head state.sqlite {lost} " in diagnosis and "event " in diagnosis
    # the CLI reads the same report back and exits 1
    cli = subprocess.run([sys.executable, "-m", "mcrepl.orchestrator.cli", "drill", "report", str(tmp_path)],
                         capture_output=True, text=True)
    assert cli.returncode == 1, cli.stderr
    assert "FAILED" in cli.stdout and findings["lost_keys"][0] in cli.stdout
