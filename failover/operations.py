"""Production failover: promote, reconcile and fail back, the code path ``mcrepl failover`` and the drills share.

:func:`promote` wraps the sync core's promotion (:func:`mcrepl.orchestrator.sync.promotion.promote`:
drain the log into the target, compare a planned target with the primary, switch the
pointer under a new epoch) with what production needs around it:

1. **lag bound** — a target further behind than ``failover.max_lag_changes`` /
   ``failover.max_lag`` is refused unless forced (draining it *is* the outage);
2. the core promotion (refused, unless forced, when anything logged could not be applied);
3. **fence** — the new epoch is published to every location's epoch record, the new
   primary first; unreachable ones stay pending (:mod:`.fencing`);
4. **route writes** — the dataset's DNS failover record is re-pointed (:mod:`.dns`);
5. **RPO** — changes captured but not applied to the new primary, with their keys, are
   recorded in the state file and the audit trail.

Every step is idempotent, so an interrupted promotion (even by SIGKILL) is finished by
running the same command again: the core promotion answers "already" once the pointer
moved, and fencing and DNS are re-applied. :func:`failback` reconciles the original
primary's unreplicated writes (through the resolver and the policy router), catches it
up, and promotes it back with the same safeguards.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from mcrepl.adapters import open_fence as default_fence
from mcrepl.adapters.base import McreplError
from mcrepl.orchestrator.sync import PromotionRefused, SyncEngine
from mcrepl.orchestrator.sync.status import lane_lag

from .dns import switch_writes
from .fencing import FenceFactory, publish

log = logging.getLogger("mcrepl.failover")


@dataclass
class PromoteReport:
    """What ``failover promote`` (or the switch of a failback) did, step by step."""

    dataset: str
    location: str
    previous: str
    epoch_before: int
    epoch: int
    dry_run: bool = False
    already: bool = False
    forced: bool = False
    lag: dict[str, Any] = field(default_factory=dict)
    rpo: dict[str, Any] = field(default_factory=dict)
    promotion: dict[str, Any] | None = None
    fences: list[dict[str, Any]] = field(default_factory=list)
    dns: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FailbackReport:
    """What ``failover failback`` did: the reconciliation, the catch-up pass and the switch back."""

    dataset: str
    original: str
    current: str
    already: bool = False
    dry_run: bool = False
    reconciled: dict[str, Any] = field(default_factory=dict)
    catch_up: dict[str, Any] = field(default_factory=dict)
    switch: PromoteReport | None = None
    after: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["switch"] = self.switch.to_dict() if self.switch else None
        return out


def lag_bound_problem(engine: SyncEngine, dataset: str, location: str) -> tuple[dict[str, Any], str | None]:
    """The target's lag ``{changes, seconds}`` and why it exceeds ``failover:`` bounds (``None``: within)."""
    state, bounds = engine.state, engine.config.failover
    changes, seconds = lane_lag(state, dataset, state.lanes.get(dataset, location).offset, engine.clock.time())
    lag = {"changes": changes, "seconds": seconds}
    if bounds.max_lag_changes is not None and changes > bounds.max_lag_changes:
        return lag, f"{location} is {changes} changes behind (failover.max_lag_changes is {bounds.max_lag_changes})"
    if bounds.max_lag is not None and seconds > bounds.max_lag.total_seconds():
        return lag, (f"{location}'s oldest unapplied change is {seconds:.0f}s old (failover.max_lag is "
                     f"{bounds.max_lag.total_seconds():.0f}s)")
    return lag, None


def promote(engine: SyncEngine, dataset: str, location: str, *, force: bool = False, fence: bool = True,
            dry_run: bool = False, local_endpoints: Mapping[str, str] | None = None,
            open_fence: FenceFactory | None = None, publish_epoch: bool = True) -> PromoteReport:
    """Make ``location`` the primary of ``dataset`` (see the module docstring); resumable.

    Raises :class:`PromotionRefused` (lag bound, or undrainable changes) unless ``force``.
    ``publish_epoch=False`` leaves the stores' epoch records alone (drills whose writers
    are fenced by the drill's own router rather than by the stores).
    """
    state = engine.state
    pointer = engine.pointer(dataset, check_config=False)
    report = PromoteReport(dataset, location, pointer.location, pointer.epoch, pointer.epoch, dry_run=dry_run,
                           forced=force)
    report.lag, problem = lag_bound_problem(engine, dataset, location)
    if pointer.location == location:
        report.already = True
        report.previous = _previous_primary(state, dataset, pointer.epoch) or location
        report.rpo = _saved_rpo(state, dataset, pointer.epoch)
    elif problem is not None and not force:
        _audit(state, "failover.refused", {"dataset": dataset, "to": location, "reason": problem})
        raise PromotionRefused(f"{location} is not ready to be primary: {problem} (fix: let sync catch it up — "
                               "'mcrepl failover status' shows its lag — or pass --force)")
    elif dry_run:
        report.epoch = pointer.epoch + 1
        report.rpo = {"count": report.lag["changes"], "keys": [], "note": "changes to drain into the target first"}
    else:
        _audit(state, "failover.promote.start", {"dataset": dataset, "from": pointer.location, "to": location,
                                                 "epoch": pointer.epoch, "forced": force, "lag": report.lag})
        result = engine.promote(dataset, location, force=force, fence=fence)
        report.promotion, report.epoch = result.to_dict(), result.epoch
        report.rpo = {"count": result.undrained, "keys": result.undrained_keys, "recovered": result.recovered,
                      "missing_keys": result.missing_keys}
        state.set_meta(f"failover_rpo:{dataset}:{result.epoch}", json.dumps(report.rpo))
    targets = _targets_new_primary_first(engine, dataset, location)
    if fence and publish_epoch and not (dry_run and report.already):
        report.fences = [o.to_dict() for o in publish(state, targets, dataset, dry_run=dry_run,
                                                      open_one=open_fence or default_fence)]
    report.dns = _switch_dns(engine, dataset, location, report.previous, dry_run, local_endpoints)
    if not dry_run:
        _audit(state, "failover.promote", {"dataset": dataset, "to": location, "from": report.previous,
                                           "epoch": report.epoch, "already": report.already,
                                           "rpo_count": report.rpo.get("count", 0),
                                           "fences": {f["location"]: f["status"] for f in report.fences},
                                           "dns": report.dns.get("status")})
    return report


def reconcile(engine: SyncEngine, dataset: str, location: str) -> dict[str, Any]:
    """Rejoin a demoted primary now: its unreplicated writes go through the resolver into the log.

    ``{"status": "already"}`` when a pass had already reconciled it.
    """
    result = engine.attach(dataset, location)
    if result is None:
        return {"status": "already", "location": location}
    outcome = {"status": "reconciled", "location": location, "recovered": result.recovered,
               "missing": result.missing_total, "missing_keys": result.missing[:100],
               "writes": result.counts.get("applied", 0), "conflicts": result.counts.get("conflicts", 0)}
    _audit(engine.state, "failover.reconcile", {"dataset": dataset, **outcome})
    return outcome


def failback(engine: SyncEngine, dataset: str, *, to: str | None = None, force: bool = False,
             dry_run: bool = False, local_endpoints: Mapping[str, str] | None = None,
             open_fence: FenceFactory | None = None) -> FailbackReport:
    """Move the primary back to ``to`` (default: the config's ``primary:``), losing nothing.

    Order: fence ``to`` at the current epoch (its stale writers stop), reconcile what it
    took that never replicated, run one sync pass so it holds everything, then
    :func:`promote` it with the same safeguards, and reconcile the location just demoted.
    """
    original = to or engine.config.datasets[dataset].primary.at
    pointer = engine.pointer(dataset, check_config=False)
    report = FailbackReport(dataset, original, pointer.location, dry_run=dry_run)
    if pointer.location == original:
        report.already = True
        report.switch = promote(engine, dataset, original, dry_run=dry_run, local_endpoints=local_endpoints,
                                open_fence=open_fence)
        return report
    if dry_run:
        report.switch = promote(engine, dataset, original, force=force, dry_run=True,
                                local_endpoints=local_endpoints, open_fence=open_fence)
        return report
    target = engine.config.target(dataset, original, engine.local_endpoints, engine.namespace)
    publish(engine.state, [target], dataset, open_one=open_fence or default_fence)
    report.reconciled = reconcile(engine, dataset, original)
    sync = engine.run_once(dataset)
    lane = sync.datasets[dataset].lanes.get(original)
    report.catch_up = {"caught_up": bool(lane and lane.caught_up),
                       "reason": lane.reason if lane else "the lane did not run"}
    report.switch = promote(engine, dataset, original, force=force, local_endpoints=local_endpoints,
                            open_fence=open_fence)
    try:
        report.after = reconcile(engine, dataset, pointer.location)
    except McreplError as exc:                # it rejoins on a later pass; nothing is lost by waiting
        report.after = {"status": "deferred", "location": pointer.location, "error": str(exc)}
    return report


def _targets_new_primary_first(engine: SyncEngine, dataset: str, location: str) -> list[Any]:
    targets = engine.config.targets(dataset, engine.local_endpoints, engine.namespace)
    return sorted(targets, key=lambda t: t.replica != location)


def _switch_dns(engine: SyncEngine, dataset: str, location: str, previous: str, dry_run: bool,
                local_endpoints: Mapping[str, str] | None) -> dict[str, Any]:
    try:
        switched = switch_writes(engine.config, dataset, location, previous, dry_run=dry_run,
                                 local_endpoints=local_endpoints or engine.local_endpoints)
    except McreplError as exc:        # the data switch stands; routing is retried by running promote again
        log.error("switching write routing of %s failed: %s", dataset, exc)
        return {"status": "failed", "detail": f"{type(exc).__name__}: {exc}"}
    return switched.to_dict()


def _previous_primary(state: Any, dataset: str, epoch: int) -> str | None:
    row = state.db.one("SELECT location FROM primary_history WHERE dataset=? AND epoch=?", (dataset, epoch - 1))
    return str(row["location"]) if row else None


def _saved_rpo(state: Any, dataset: str, epoch: int) -> dict[str, Any]:
    saved = state.get_meta(f"failover_rpo:{dataset}:{epoch}")
    return json.loads(saved) if saved else {}


def _audit(state: Any, kind: str, payload: dict[str, Any]) -> None:
    with state.transaction():
        state.audit.add(kind, payload)
    state.audit.flush()


__all__ = ["FailbackReport", "PromoteReport", "failback", "lag_bound_problem", "promote", "reconcile"]
