"""The RPO estimate: what a promotion of a replica would lose now, from heartbeat arrivals.

Read from the state file alone (``status``, ``failover status``, the metrics). Over the
last ``sync.follow.lag_window`` the heartbeat lags of a replica give p50 and p99; the
newest heartbeat it received gives a lower bound on its lag *now* (its age, less one
heartbeat interval: the next one may not be due yet). The estimate is the larger of the
two, so a replica that stopped receiving anything shows a growing RPO at once instead of
keeping the last good p99. With no heartbeats written recently (no follower or ``sync --schedule``
running, or the dataset's heartbeat off) there is no estimate: the lane lag is all
``status`` knows.
"""

from __future__ import annotations

from typing import Any

from mcrepl.orchestrator.state import StateStore

STOPPED_AFTER = 3
"""Heartbeats older than this many intervals (plus 5 s) mean nobody is writing them."""


def rpo_estimate(config: Any, state: StateStore, dataset: str, replica: str, now: float) -> dict[str, Any]:
    """JSON-ready heartbeat lag of ``replica``: p50/p99 over the window, age, RPO estimate, objective."""
    ds = config.datasets[dataset]
    objective = ds.sync.lag_objective.total_seconds() if ds.sync.lag_objective is not None else None
    window = config.sync.follow.lag_window.total_seconds()
    now_ms = int(now * 1000)
    out: dict[str, Any] = {"lag_p50": None, "lag_p99": None, "lag_samples": 0, "heartbeat_age": None,
                           "rpo_estimate": None, "lag_objective": objective, "objective_met": None,
                           "heartbeat": "off"}
    sent = state.heartbeats.last_sent(dataset)
    if sent is None:
        return out
    last_ms, every, _ = sent
    summary = state.heartbeats.summary(dataset, replica, now_ms - int(window * 1000))
    out.update(lag_p50=summary.p50, lag_p99=summary.p99, lag_samples=summary.samples)
    if summary.newest_written_ms is not None:
        out["heartbeat_age"] = round(max(0, now_ms - summary.newest_written_ms) / 1000, 3)
    if (now_ms - last_ms) / 1000 > STOPPED_AFTER * every + 5:
        out["heartbeat"] = f"stopped {(now_ms - last_ms) / 1000:.0f}s ago"
        return out
    out["heartbeat"] = f"every {every:g}s"
    if out["heartbeat_age"] is None:
        # written, never arrived: at least as old as the oldest heartbeat we know was sent
        return out
    estimate = max(summary.p99 or 0.0, out["heartbeat_age"] - every)
    out["rpo_estimate"] = round(estimate, 3)
    if objective is not None:
        out["objective_met"] = estimate <= objective
    return out
