"""A self-contained HTML drill report: inline CSS and an inline SVG timeline, no scripts, no links.

The timeline has two panels sharing one time axis: writes per bucket (stacked bars: green
acknowledged and kept, orange failed or timed out — expected during a fault — and red
acknowledged but lost, or unexpected in the final state), and each replica's lag in changes
(lines). Vertical markers show faults, heals, promotions, failbacks and rejoins at the time
they took effect; their labels are placed in rows so that none overlaps another. Below it: the verdict, the thresholds, the
findings, the steady-state probes, divergences by key and kind, and the steps.
"""

from __future__ import annotations

from html import escape
from typing import Any

W, LEFT, RIGHT = 1120, 64, 24
TOP, PANEL_H, GAP, AXIS_H = 70, 170, 46, 34
LINE_COLOURS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b")
MARKERS = {"fault": ("#d62728", "6 4", "fault"), "heal": ("#2ca02c", "6 4", "heal"),
           "promote": ("#6a3d9a", "", "promote"), "failback": ("#1f5fbf", "", "failback"),
           "rejoin": ("#00897b", "", "rejoin"),
           "stale_writer": ("#e377c2", "2 3", "stale writer"), "converged": ("#17becf", "2 3", "converged")}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1180px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.verdict{display:inline-block;padding:4px 12px;border-radius:4px;font-weight:700;color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}.muted{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4} td.ok{color:#2e7d32;font-weight:600} td.bad{color:#c62828;font-weight:600}
svg text{font-family:system-ui,sans-serif}.grid{display:grid;grid-template-columns:1fr 1fr;gap:24px}
"""


def _x(t: float, t_max: float) -> float:
    return LEFT + (W - LEFT - RIGHT) * (t / t_max if t_max > 0 else 0)


def _svg(report: dict[str, Any]) -> str:
    tl = report["timeline"]
    bucket = tl["bucket_seconds"]
    writes, lag, events = tl["writes"], tl["lag"], tl["events"]
    t_max = max([report["seconds"], *[w["t"] + bucket for w in writes], *[e["t"] for e in events], 1.0])
    top2 = TOP + PANEL_H + GAP
    height = top2 + PANEL_H + AXIS_H + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
             'role="img" aria-label="drill timeline">', '<rect width="100%" height="100%" fill="#fff"/>']
    # panel 1: writes per bucket
    peak = max([w["ok"] + w["failed"] + w.get("lost", 0) for w in writes] + [1])
    parts += _panel(TOP, "writes per %gs (green: acknowledged and kept, orange: failed/timed out/fenced, "
                    "red: acknowledged but lost, or unexpected)" % bucket, peak)
    bar_w = max(1.0, _x(bucket, t_max) - LEFT - 1)
    for w in writes:
        x, base = _x(w["t"], t_max), TOP + PANEL_H
        for kind, colour in (("ok", "#4caf50"), ("failed", "#ff9800"), ("lost", "#c62828")):
            h = PANEL_H * w.get(kind, 0) / peak
            if h:
                parts.append(f'<rect class="{kind}" x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" '
                             f'height="{h:.1f}" fill="{colour}"/>')
                base -= h
    # panel 2: lag lines
    lag_peak = max([s[1] for series in lag.values() for s in series] + [1])
    parts += _panel(top2, "replica lag (changes behind the primary's log)", lag_peak)
    for i, (location, series) in enumerate(sorted(lag.items())):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        points = " ".join(f"{_x(t, t_max):.1f},{top2 + PANEL_H - PANEL_H * c / lag_peak:.1f}" for t, c, _ in series)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        lx = LEFT + 10 + i * 230
        parts.append(f'<rect x="{lx}" y="{top2 + 8}" width="14" height="4" fill="{colour}"/>'
                     f'<text x="{lx + 20}" y="{top2 + 14}" font-size="12">{escape(location)}</text>')
    # time axis
    axis_y = top2 + PANEL_H
    step = _nice_step(t_max)
    t = 0.0
    while t <= t_max + 1e-9:
        x = _x(t, t_max)
        parts.append(f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}" stroke="#444"/>'
                     f'<text x="{x:.1f}" y="{axis_y + 18}" font-size="11" text-anchor="middle">{t:g}s</text>')
        t += step
    # event markers across both panels; each label takes the lowest row where it overlaps no other
    marked = [e for e in events if e["kind"] in MARKERS]
    for e, (x0, x1, row) in zip(marked, label_rows([_label(e) for e in marked],
                                                    [_x(e["t"], t_max) for e in marked])):
        colour, dash, _ = MARKERS[e["kind"]]
        x = _x(e["t"], t_max)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        y = TOP - 12 - LABEL_ROW_H * row
        parts.append(f'<line x1="{x:.1f}" y1="{y + 3}" x2="{x:.1f}" y2="{axis_y}" stroke="{colour}" '
                     f'stroke-width="1.5"{dash_attr}/>')
        parts.append(f'<text class="marker" x="{x0:.1f}" y="{y}" font-size="11" fill="{colour}">'
                     f'{escape(_label(e))}</text>')
    parts.append(f'<text x="{W / 2}" y="{height - 8}" font-size="12" text-anchor="middle">seconds since the drill '
                 'started</text></svg>')
    return "\n".join(parts)


LABEL_ROW_H, CHAR_W, LABEL_ROWS = 13, 6.5, 4


def _label(e: dict[str, Any]) -> str:
    where = e["detail"].get("location", "")
    return f"{MARKERS[e['kind']][2]} {where.split(':')[-1] if where and where != 'all' else ''}".strip()


def label_rows(labels: list[str], xs: list[float]) -> list[tuple[float, float, int]]:
    """(left, right, row) of each marker label: beside its marker (left of it near the right
    edge), in the lowest row where it overlaps no label already placed; past the last row,
    the row whose labels end furthest left."""
    placed: list[list[tuple[float, float]]] = [[] for _ in range(LABEL_ROWS)]
    out = []
    for text, x in zip(labels, xs):
        width = CHAR_W * len(text)
        x0 = x - 3 - width if x + 3 + width > W - RIGHT else x + 3
        x1 = x0 + width
        free = [r for r in range(LABEL_ROWS) if all(x1 + 4 <= a or x0 >= b + 4 for a, b in placed[r])]
        row = free[0] if free else min(range(LABEL_ROWS), key=lambda r: max(b for _, b in placed[r]))
        placed[row].append((x0, x1))
        out.append((x0, x1, row))
    return out


def _panel(top: float, title: str, peak: float) -> list[str]:
    return [f'<rect x="{LEFT}" y="{top}" width="{W - LEFT - RIGHT}" height="{PANEL_H}" fill="#fafafa" stroke="#ccc"/>',
            f'<text x="{LEFT}" y="{top + PANEL_H + 30}" font-size="12" fill="#444">{escape(title)}</text>',
            f'<text x="{LEFT - 6}" y="{top + 10}" font-size="11" text-anchor="end">{peak:g}</text>',
            f'<text x="{LEFT - 6}" y="{top + PANEL_H}" font-size="11" text-anchor="end">0</text>']


def _nice_step(t_max: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300):
        if t_max / step <= 14:
            return float(step)
    return 600.0


def _table(headers: list[str], rows: list[list[Any]], classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            cls = classes[i][j] if classes and classes[i][j] else ""
            cells.append(f'<td class="{cls}">{escape("n/a" if cell is None else str(cell))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(report: dict[str, Any]) -> str:
    """The full report page."""
    f = report["findings"]
    verdict = '<span class="verdict pass">PASSED</span>' if report["passed"] else \
        '<span class="verdict fail">FAILED</span>'
    topo = report["topology"]
    thresholds = _table(["threshold", "what", "value", "limit", "verdict"],
                        [[t["name"], t["description"], t["value"], t["limit"],
                          "pass" if t["passed"] else f"FAIL{' (' + t['note'] + ')' if t.get('note') else ''}"]
                         for t in report["thresholds"]],
                        [["", "", "", "", "ok" if t["passed"] else "bad"] for t in report["thresholds"]])
    keys = ("attempted", "acknowledged", "failed", "timeouts", "fenced", "lost", "recovered", "resurrected",
            "unexpected", "indeterminate_landed", "rpo_count", "rpo_seconds", "rto_seconds",
            "convergence_seconds", "divergent")
    findings = _table(["finding", "value"], [[k.replace("_", " "), f[k]] for k in keys])
    probes = []
    for when, s in report["steady_state"].items():
        for p in s.get("probes", []):
            probes.append([when, p["probe"], p["tolerance"], p["value"], "pass" if p["passed"] else "FAIL",
                           p.get("note") or ""])
    divergences = _table(["key", "kind", "reference", "other", "reference version", "other version"],
                         [[d["key"], d["kind"], d["reference"], d["other"], d["reference_version"],
                           d["other_version"]] for d in f["divergences"]]) if f["divergences"] else \
        "<p>None: every location holds the same keys, versions and contents.</p>"
    named = "".join(f"<p><b>{escape(label)}:</b> {escape(', '.join(f[k]))}</p>"
                    for label, k in (("lost keys", "lost_keys"), ("resurrected keys", "resurrected_keys"),
                                     ("unexpected keys", "unexpected_keys")) if f[k])
    reconciled = _table(["from", "into", "recovered", "missing", "writes"],
                        [[r["from"], r["into"], r["recovered"], r["missing"],
                          r["writes"]] for r in report["reconciled"]]) if report["reconciled"] else ""
    steps = _table(["#", "action", "label", "seconds"], [[s["index"], s["action"], s["label"], s["seconds"]]
                                                          for s in report["steps"]])
    error = f'<p class="bad"><b>error:</b> {escape(report["error"])}</p>' if report["error"] else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(report['title'])} — mcrepl drill</title>
<style>{CSS}</style></head><body>
<h1>{escape(report['title'])} {verdict}</h1>
<p class="muted">{escape(report['description'])}</p>
<p class="muted">started {escape(report['started_at'])} · {report['seconds']:.1f}s · fault mode {escape(report['fault_mode'])}
· fencing {'on' if report['fencing'] else 'OFF'} · ack {escape(topo['ack'])} · primary {escape(topo['primary'])}
→ replicas {escape(', '.join(topo['replicas']))} · namespace {escape(topo['namespace'])}</p>
{error}
<h2>Timeline</h2>
{_svg(report)}
<div class="grid"><div><h2>Thresholds</h2>{thresholds}</div><div><h2>Findings</h2>{findings}</div></div>
<h2>Divergences at the end</h2>{divergences}{named}
{('<h2>Failback reconciliation</h2>' + reconciled) if reconciled else ''}
<h2>Steady-state hypothesis</h2>{_table(["when", "probe", "tolerance", "value", "verdict", "note"], probes)}
<h2>Method</h2>{steps}
</body></html>
"""
