"""The drill report: ``report.json`` (the record) and ``report.html`` (for people), plus a summary.

The JSON holds the findings, each threshold with its value and verdict, the steady-state
probes, the timeline (writes per bucket, lag samples, events) and the divergences named
by key and kind. It never holds record values — the history keeps only hashes.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from .checker import Findings
from .history import History
from .spec import DrillSpec
from .topology import DrillTopology

BUCKET_S = 0.5
#: threshold name → (findings attribute, description)
THRESHOLDS = {
    "lost": ("lost", "acknowledged writes lost"),
    "rpo_count": ("rpo_count", "acknowledged writes missing on the new primary at promotion"),
    "rpo_seconds": ("rpo_seconds", "RPO window (s)"),
    "rto_seconds": ("rto_seconds", "RTO: fault → first acknowledged write on the new primary (s)"),
    "convergence_seconds": ("convergence_seconds", "convergence after healing (s)"),
    "resurrected": ("resurrected", "resurrected deletes"),
    "unexpected": ("unexpected", "unexpected writes in the final state"),
    "divergent": ("divergent", "keys still divergent at the deadline"),
}


def evaluate_thresholds(spec: DrillSpec, findings: Findings) -> list[dict[str, Any]]:
    """Each set threshold with the measured value; an unmeasured value fails (it can't be shown to hold)."""
    out = []
    limits = spec.effective_thresholds
    for name, (attr, text) in THRESHOLDS.items():
        limit = getattr(limits, name)
        if limit is None:
            continue
        value = getattr(findings, attr)
        ok = value is not None and value >= 0 and value <= limit
        out.append({"name": name, "description": text, "limit": limit, "value": value, "passed": ok,
                    "note": None if value is not None and value >= 0 else "not measured"})
    return out


def _timeline(history: History, t0: float, findings: Findings | None = None) -> dict[str, Any]:
    """Writes per bucket (acknowledged, failed, and — from the findings — lost or unexpected),
    lag samples and the events drawn as markers."""
    writes: dict[int, dict[str, int]] = defaultdict(lambda: {"ok": 0, "failed": 0, "lost": 0})
    for op in history.ops():
        if op.writer != "app" and op.status != "ok":
            continue
        bucket = int((op.started - t0) / BUCKET_S)
        writes[bucket]["ok" if op.status == "ok" else "failed"] += 1
    for at in [*(findings.lost_at if findings else []), *(findings.unexpected_at if findings else [])]:
        bucket = max(0, int((at - t0) / BUCKET_S))
        writes[bucket]["lost"] += 1            # an acknowledged write that did not survive, or a stray one
        if writes[bucket]["ok"]:
            writes[bucket]["ok"] -= 1
    lag: dict[str, list[list[float]]] = defaultdict(list)
    for at, location, changes, seconds in history.samples():
        lag[location].append([round(at - t0, 3), changes, seconds])
    events = [{"t": round(e.at - t0, 3), "kind": e.kind, "detail": e.detail} for e in history.events()
              if e.kind in ("fault", "heal", "promote", "failback", "rejoin", "reconcile", "stale_writer",
                            "converged", "healed", "error")]
    return {"bucket_seconds": BUCKET_S,
            "writes": [{"t": round(b * BUCKET_S, 3), **counts} for b, counts in sorted(writes.items())],
            "lag": dict(lag), "events": events}


def build_report(spec: DrillSpec, topo: DrillTopology, history: History, findings: Findings,
                 steady: dict[str, Any], reconciled: list[dict[str, Any]], steps: list[dict[str, Any]],
                 error: str | None, started: float) -> dict[str, Any]:
    """The whole report as a JSON-ready dict; ``passed`` is the drill's verdict."""
    thresholds = evaluate_thresholds(spec, findings)
    steady_ok = all(s.get("passed", True) for s in steady.values())
    passed = error is None and steady_ok and all(t["passed"] for t in thresholds)
    return {
        "title": spec.title, "description": spec.description, "fault_mode": spec.fault_mode,
        "fencing": spec.fencing, "zero_loss": spec.zero_loss, "passed": passed, "error": error,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 3),
        "topology": {"dataset": topo.dataset, "namespace": topo.namespace, "primary": spec.topology.primary,
                     "replicas": spec.topology.replicas, "ack": spec.workload.ack},
        "findings": findings.to_dict(), "thresholds": thresholds, "steady_state": steady,
        "reconciled": reconciled, "steps": steps, "timeline": _timeline(history, started, findings),
    }


def summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    f = report["findings"]
    lines = [f"drill: {report['title']} — {'PASSED' if report['passed'] else 'FAILED'} "
             f"({report['seconds']:.1f}s, fault_mode={report['fault_mode']}, fencing={report['fencing']})",
             f"  writes: attempted {f['attempted']}, acknowledged {f['acknowledged']}, failed {f['failed']}, "
             f"timed out {f['timeouts']}, fenced {f['fenced']}",
             f"  lost {f['lost']}, recovered {f['recovered']}, resurrected {f['resurrected']}, "
             f"unexpected {f['unexpected']}, indeterminate landed {f['indeterminate_landed']}",
             f"  {_rpo(f)}, RTO {_fmt(f['rto_seconds'], 's')}, "
             f"convergence {_fmt(f['convergence_seconds'], 's')}, divergent keys {_divergent(f['divergent'])}"]
    for t in report["thresholds"]:
        if not t["passed"]:
            lines.append(f"  threshold {t['name']}: {_fmt(t['value'])} > {t['limit']} ({t['description']})")
    for name, s in report["steady_state"].items():
        for p in s.get("probes", []):
            if not p["passed"]:
                lines.append(f"  steady state {name}: {p['probe']} = {_fmt(p['value'])} "
                             f"(tolerance {p['tolerance']}) {p.get('note') or ''}")
    for d in f["divergences"][:10]:
        lines.append(f"  divergent {d['key']}: {d['kind']} ({d['reference']} vs {d['other']})")
    if f["lost_keys"]:
        lines.append(f"  lost writes on keys: {', '.join(f['lost_keys'][:20])}")
    if f["resurrected_keys"]:
        lines.append(f"  resurrected keys: {', '.join(f['resurrected_keys'][:20])}")
    if report["error"]:
        lines.append(f"  error: {report['error']}")
    return "\n".join(lines)


def _fmt(v: Any, unit: str = "") -> str:
    """A measured value with its unit, or ``not measured`` (never ``n/as``)."""
    return "not measured" if v is None else f"{v}{unit}"


def _rpo(f: dict[str, Any]) -> str:
    if f["rpo_count"] is None:
        return "RPO not measured (no promotion)"
    return f"RPO {f['rpo_count']} writes / {_fmt(f['rpo_seconds'], 's')}"


def _divergent(n: int) -> str:
    return "unknown (verify never answered)" if n < 0 else str(n)


def write_report(report: dict[str, Any], report_dir: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html``; returns their paths."""
    from .html_report import render_html

    from mcrepl.orchestrator.observability.redaction import redact

    report = redact(report)       # step errors carry store messages; no credential reaches a file
    json_path = report_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=False, default=str), encoding="utf-8")
    html_path = report_dir / "report.html"
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def load_report(report_dir: str | Path) -> dict[str, Any]:
    """Read a written report back (``mcrepl drill report DIR``)."""
    path = Path(report_dir) / "report.json"
    return json.loads(path.read_text(encoding="utf-8"))
