"""Steady-state probes: is the system healthy enough, within a tolerance, within a window?

Each probe polls until its tolerance holds or ``within`` passes, and reports the last
value it saw:

* ``max_lag`` — every replica is at most ``changes`` changes behind the primary's log;
* ``divergence`` — a verify of every location (primary first) finds at most ``max`` keys;
* ``write_success_rate`` — of the writes started in the last ``window``, at least ``min``
  were acknowledged (no writes in the window: not applicable, reported and passed).
"""

from __future__ import annotations

import time
from typing import Any

from mcrepl.orchestrator.verify import compare_adapters

from .spec import Probe


def _value(run: Any, probe: Probe) -> tuple[float | None, bool]:
    if probe.probe == "max_lag":
        lags = run.sampler.lag()
        reachable = [changes for loc, (changes, _) in lags.items() if loc not in run.down]
        worst = max(reachable, default=0)
        return worst, worst <= (probe.changes or 0)
    if probe.probe == "divergence":
        primary, _ = run.pointer()
        ordered = {primary: run.direct[primary], **{k: v for k, v in run.direct.items() if k != primary}}
        found = compare_adapters(run.dataset, ordered).divergent
        return found, found <= (probe.max or 0)
    since = time.time() - probe.window.total_seconds()
    recent = [op for op in run.history.ops() if op.started >= since and op.writer == "app"]
    if not recent:
        return None, True
    rate = sum(op.status == "ok" for op in recent) / len(recent)
    return round(rate, 3), rate >= (probe.min or 0)


def check_probe(run: Any, probe: Probe) -> dict[str, Any]:
    """Poll ``probe`` until it holds or its ``within`` window ends."""
    end = time.monotonic() + probe.within.total_seconds()
    while True:
        try:
            value, ok = _value(run, probe)
            error = None
        except Exception as exc:  # noqa: BLE001 - an unreachable store fails the probe, not the drill
            value, ok, error = None, False, f"{type(exc).__name__}: {exc}"
        if ok or time.monotonic() >= end:
            tolerance = {"max_lag": probe.changes, "divergence": probe.max,
                         "write_success_rate": probe.min}[probe.probe]
            return {"probe": probe.probe, "tolerance": tolerance, "value": value, "passed": ok,
                    "note": error or ("no writes in the window" if value is None and ok else None)}
        time.sleep(0.25)


def check_steady_state(run: Any, probes: list[Probe]) -> dict[str, Any]:
    """Every probe's result and whether the hypothesis held."""
    results = [check_probe(run, p) for p in probes]
    return {"passed": all(r["passed"] for r in results), "probes": results}
