"""Per dataset and replica: how far behind each lane is, read from the state file alone.

No store is contacted, so ``mcrepl status`` answers instantly even while a replica is
down. Lag in seconds is measured from the capture time of the oldest log entry the lane
has not acknowledged (0 when drained); lag in changes counts those entries. A lane whose
offset lies behind the log's horizon (or that has none yet) says ``needs backfill``: the
log alone can no longer bring it up to date. Whether the copies agree is not a lane's to
say: ``last_verify`` is the dataset's latest comparison of the copies, with its age.
"""

from __future__ import annotations

import math
import time
from typing import Any

from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.state import StateStore

from .breaker import breaker_state
from .rpo import rpo_estimate


def lane_lag(state: StateStore, dataset: str, offset: int, now: float | None = None) -> tuple[int, float]:
    """(changes, seconds) a lane at ``offset`` is behind the log head of ``dataset``.

    Seconds are measured from the capture time of the oldest entry after ``offset``
    (0 when drained). What ``status`` shows and what the lag gauges report after each batch.
    """
    now = time.time() if now is None else now
    behind = max(state.log.head(dataset) - offset, 0)
    oldest = state.log.oldest_captured_at(dataset, offset) if behind else None
    return behind, round(now - oldest, 3) if oldest else 0.0


def lane_status(config: McreplConfig, state: StateStore, dataset: str | None = None,
                now: float | None = None) -> list[dict[str, Any]]:
    """One row per (dataset, replica lane) of the current primary; JSON-ready values."""
    now = time.time() if now is None else now
    rows = []
    for name, ds in config.datasets.items():
        if dataset and name != dataset:
            continue
        pointer = state.primary(name, ds.primary.at)
        horizon = state.log.horizon(name)
        totals = state.log.totals(name)
        verified = state.last_verify(name)
        for ref in ds.locations:
            if ref.at == pointer.location:
                continue
            lane = state.lanes.get(name, ref.at)
            behind, lag_seconds = lane_lag(state, name, lane.offset, now)
            conflicts, quarantined = state.journal.counts(name, ref.at)
            attached = state.lanes.exists(name, ref.at) and lane.offset >= horizon
            rows.append({
                "dataset": name, "primary": pointer.location, "epoch": pointer.epoch, "replica": ref.at,
                "lane": "attached" if attached else "needs backfill",
                "lag_seconds": lag_seconds,
                "lag_changes": behind,
                "backlog_batches": math.ceil(behind / config.sync.batch_size),
                "last_checkpoint": lane.last_applied_at,
                "last_capture": totals["last_capture_at"],
                "applied": lane.applied, "replayed": lane.replayed, "stale": lane.stale,
                "withheld": lane.withheld, "retracted": lane.retracted, "conflicts": conflicts,
                "quarantined": quarantined,
                "breaker": breaker_state(lane, now, config.sync.breaker_reset.total_seconds()),
                "last_error": lane.last_error, "last_error_at": lane.last_error_at,
                "last_verify": _verify_row(verified, now),
                "heartbeat_lag": rpo_estimate(config, state, name, ref.at, now),
            })
    return rows


def _verify_row(verified: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    """The dataset's last anti-entropy comparison: its verdict and how old it is."""
    if verified is None:
        return None
    return {"converged": bool(verified["converged"]), "divergent": verified["divergent"],
            "repaired": verified["repaired"], "age_seconds": round(now - verified["finished_at"], 1),
            "summary": verified["summary"]}
