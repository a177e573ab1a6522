"""``mcrepl failover status``: what an operator needs before choosing where to promote.

Read from the state file alone, so it answers instantly while a region is down: the
primary and its epoch; per replica its lag (changes and seconds), what promoting it now
would cost (RPO estimate), and whether it is ready; which locations' epoch records are
behind (fencing pending); the last comparison of the copies; the DNS write record.

The RPO estimate has two parts, because the capture log is in the state file and
survives the primary: ``to_drain`` — logged changes the replica lacks, applied to it by
the promotion (lost only if it cannot take them and the promotion is forced) — and
``uncaptured_seconds`` — time since capture last read the primary: writes made there
since are in no log; they come back when the old primary rejoins, and are lost only if
it never does. With heartbeats (follow mode, ``sync --schedule``) ``heartbeat_lag`` adds the measured figure: heartbeat lag p50/p99
over the last minutes and the RPO estimate in seconds derived from it (docs/sync.md).
"""

from __future__ import annotations

import time
from typing import Any

from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync.breaker import breaker_state
from mcrepl.orchestrator.sync.rpo import rpo_estimate
from mcrepl.orchestrator.sync.status import lane_lag

from .dns import record_of
from .fencing import pending_locations


def dataset_status(config: McreplConfig, state: StateStore, dataset: str, now: float | None = None) -> dict[str, Any]:
    """The failover view of one dataset; JSON-ready."""
    now = time.time() if now is None else now
    ds = config.datasets[dataset]
    pointer = state.primary(dataset, ds.primary.at)
    totals = state.log.totals(dataset)
    last_capture = totals["last_capture_at"]
    uncaptured = round(now - last_capture, 1) if last_capture else None
    locations = [r.at for r in ds.locations]
    replicas = [_replica(config, state, dataset, loc, now, uncaptured) for loc in locations if loc != pointer.location]
    verified = state.last_verify(dataset)
    dns = record_of(config, dataset)
    return {
        "dataset": dataset, "primary": pointer.location, "epoch": pointer.epoch,
        "configured_primary": ds.primary.at,
        "demoted": sorted(({"epoch": e, "at": state.demoted_at(dataset, e)} for e in range(1, pointer.epoch)
                           if state.demoted_at(dataset, e) is not None), key=lambda d: d["epoch"]),
        "log_head": state.log.head(dataset), "last_capture_age_seconds": uncaptured,
        "replicas": replicas,
        "fencing_pending": pending_locations(state, dataset, locations),
        "last_verify": None if verified is None else {
            "converged": bool(verified["converged"]), "divergent": verified["divergent"],
            "age_seconds": round(now - verified["finished_at"], 1)},
        "dns": None if dns is None else {"fqdn": dns[0], "routing": dns[1]},
    }


def _replica(config: McreplConfig, state: StateStore, dataset: str, location: str, now: float,
             uncaptured: float | None) -> dict[str, Any]:
    lane = state.lanes.get(dataset, location)
    attached = state.lanes.exists(dataset, location)
    changes, seconds = lane_lag(state, dataset, lane.offset, now)
    breaker = breaker_state(lane, now, config.sync.breaker_reset.total_seconds())
    blockers = []
    if not attached:
        blockers.append("never attached (run 'mcrepl sync --once')")
    elif lane.offset < state.log.horizon(dataset):
        blockers.append("behind the log's horizon: needs a backfill")
    bounds = config.failover
    if bounds.max_lag_changes is not None and changes > bounds.max_lag_changes:
        blockers.append(f"{changes} changes behind (max_lag_changes {bounds.max_lag_changes})")
    if bounds.max_lag is not None and seconds > bounds.max_lag.total_seconds():
        blockers.append(f"lag {seconds:.0f}s (max_lag {bounds.max_lag.total_seconds():.0f}s)")
    if breaker != "closed":
        blockers.append(f"breaker {breaker}: {lane.last_error or 'recent failures'}")
    return {"location": location, "lag_changes": changes, "lag_seconds": seconds,
            "caught_up_at": lane.caught_up_at, "breaker": breaker, "last_error": lane.last_error,
            "rpo_estimate": {"to_drain": changes, "uncaptured_seconds": uncaptured},
            "heartbeat_lag": rpo_estimate(config, state, dataset, location, now),
            "ready": not blockers, "blockers": blockers}


def failover_status(config: McreplConfig, state: StateStore, dataset: str | None = None) -> list[dict[str, Any]]:
    """:func:`dataset_status` of ``dataset`` or of every dataset."""
    names = [dataset] if dataset else list(config.datasets)
    return [dataset_status(config, state, name) for name in names]


__all__ = ["dataset_status", "failover_status"]
