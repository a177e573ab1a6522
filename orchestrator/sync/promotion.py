"""Promotion: make another location the primary, under a new epoch, without losing what was logged.

The steps, each safe to repeat (a promotion interrupted half-way is finished by running
it again):

1. **drain** — the target's lane applies every logged change it has not received, so
   what was captured from the old primary is on the new one before it takes writes;
2. **position** — the target's capture position is taken *now*, so its first capture
   reads only what happens from here on (a position the store cannot give means a full
   scan instead: slower, never lossy);
3. **switch** — in one transaction: the pointer moves and the epoch (fencing token) goes
   up, the old epoch's end is recorded (the split-brain guard), the capture position is
   saved, an anti-entropy verify is requested for the next pass, and the step is audited.

A forced promotion skips what could not be drained and reports it: the entries stay in
the log and the new primary's own lane writes them as soon as it can, so they are late,
not lost. The demoted primary rejoins as a replica on the next pass (see
:func:`.attach.rejoin`), where writes it took that were never captured are reconciled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcrepl.adapters.base import ConfigError, McreplError
from mcrepl.orchestrator.state import decode_record

from .attach import AttachResult, recover, unreconciled_epochs

if TYPE_CHECKING:
    from .engine import SyncEngine

log = logging.getLogger("mcrepl.sync.promotion")
MAX_LISTED_KEYS = 1000


class PromotionRefused(McreplError):
    """The target could not receive everything logged, and the promotion was not forced."""


@dataclass
class PromotionResult:
    """What a promotion did; ``undrained`` changes are delivered later by the new primary's lane."""

    dataset: str
    previous: str
    location: str
    epoch: int
    drained: int = 0
    undrained: int = 0
    undrained_keys: list[str] = field(default_factory=list)
    already: bool = False
    full_scan: bool = False
    compared: bool = False                   # compared with the old primary before the switch
    repaired: int = 0                        # keys that comparison found different and repaired
    recovered: int = 0                       # a former primary's unlogged changes, logged before the drain
    missing_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def promote(engine: "SyncEngine", dataset: str, location: str, *, force: bool = False,
            fence: bool = True, verify: bool = True) -> PromotionResult:
    """Make ``location`` the primary of ``dataset`` (see the module docstring)."""
    state, config = engine.state, engine.config
    pointer = engine.pointer(dataset, check_config=False)     # promoting is how a config edit takes effect
    if pointer.location == location:
        return PromotionResult(dataset, location, location, pointer.epoch, already=True)
    locations = [r.at for r in config.datasets[dataset].locations]
    if location not in locations:
        raise ConfigError(f"{location} is not a location of dataset {dataset!r}", path=f"datasets.{dataset}",
                          fix=f"promote one of {', '.join(l for l in locations if l != pointer.location)}")
    if not state.lanes.exists(dataset, location) and not force:
        raise PromotionRefused(f"{location} has never been attached to {dataset!r}, so it may hold none of its "
                               "data (fix: run 'mcrepl sync --once' first, or pass --force)")
    target = config.target(dataset, location, engine.local_endpoints, engine.namespace)
    result = PromotionResult(dataset, pointer.location, location, pointer.epoch)
    problem = _drain(engine, target, pointer, result)
    if problem is None and verify and not force:
        problem = _compare_with_primary(engine, dataset, pointer, location, result)
    offset = state.lanes.get(dataset, location).offset
    result.undrained = max(state.log.head(dataset) - offset, 0)
    if result.undrained:
        result.undrained_keys = _keys_after(state, dataset, offset)
        problem = problem or f"{result.undrained} logged changes were not applied to it"
    if problem is not None and not force:
        raise PromotionRefused(f"{location} is not ready to be primary: {problem} (fix: make it reachable and "
                               "run the promotion again, or pass --force: logged changes it lacks are then "
                               "delivered when it can take them)")
    cursor = None
    try:
        cursor = engine.adapter(target).current_cursor()
    except Exception as exc:  # noqa: BLE001 - a full scan is the lossless fallback
        log.warning("no capture position from %s (%s): its first capture scans it fully", location, exc)
        result.full_scan = True
    with state.transaction():
        new = state.set_primary(dataset, location, fence=fence)
        state.log.save_cursor(dataset, location, cursor)
        state.log.hand_over(dataset, pointer.location, location, offset)
        # the operator acted on the config as it stands: its primary: line is taken as read
        state.set_meta(f"configured_primary:{dataset}", config.datasets[dataset].primary.at)
        state.request_verify(dataset)
        state.audit.add("promote", {"dataset": dataset, "from": pointer.location, "to": location,
                                    "epoch": new.epoch, "drained": result.drained, "undrained": result.undrained,
                                    "undrained_keys": result.undrained_keys, "forced": force, "fenced": fence,
                                    "recovered": result.recovered, "missing_keys": result.missing_keys,
                                    "compared": result.compared, "repaired": result.repaired})
    state.audit.flush()
    result.epoch = new.epoch
    log.warning("promoted %s to primary of %s (epoch %d, was %s): %d changes drained, %d undrained",
                location, dataset, new.epoch, pointer.location, result.drained, result.undrained)
    return result


def _drain(engine: "SyncEngine", target: Any, pointer: Any, result: PromotionResult) -> str | None:
    """Apply every logged change the target lacks (after recovering its own, for a former primary).

    Returns what stopped it, if anything did.
    """
    state, dataset, location = engine.state, target.dataset, target.replica
    offset = state.lanes.get(dataset, location).offset
    horizon = state.log.horizon(dataset)
    if state.lanes.exists(dataset, location) and offset < horizon:
        return (f"the log no longer holds entries {offset + 1}..{horizon} it never received (its lane was silent "
                "longer than sync.max_replica_outage); forced, anti-entropy compares it with the others afterwards")
    try:
        lane = engine.lane_applier(target, engine.settling(dataset, pointer))
        former = unreconciled_epochs(state, dataset, location, pointer.epoch) or state.epochs_of(dataset, location)
        if former:
            # a former primary: what it took that was never logged comes first (before it rejoined,
            # or late, after it did: an application that had not heard of the promotion)
            recovered = AttachResult("recover", offset)
            recover(lane, former, recovered)
            result.recovered, result.missing_keys = recovered.recovered, recovered.missing
        while (outcome := lane.apply_next(offset)) is not None:
            result.drained += outcome.new_offset - offset
            offset = outcome.new_offset
    except Exception as exc:  # noqa: BLE001 - reported by the caller; refused unless forced
        return f"{type(exc).__name__}: {exc}"
    return None


def _compare_with_primary(engine: "SyncEngine", dataset: str, pointer: Any, location: str,
                          result: PromotionResult) -> str | None:
    """Compare the drained target with the primary, repairing what differs (lanes cannot see a
    replica that lost data behind mcrepl's back: restored from a backup, emptied)."""
    try:
        summary, plan = engine.compare_pair(dataset, pointer, location)
    except Exception as exc:  # noqa: BLE001 - an unanswered comparison is not a clean one
        return f"it could not be compared with {pointer.location}: {type(exc).__name__}: {exc}"
    result.compared, result.repaired = True, summary.repaired
    # changes the old primary took that capture has not read yet are not the target's to hold
    # (its rejoin reconciles them); anything else still different is
    only_in_flight = not plan.writes and summary.remaining <= plan.in_flight
    if not summary.converged and not only_in_flight:
        return f"{summary.remaining} keys still differ from {pointer.location} after repair ({summary.detail})"
    return None


def _keys_after(state: Any, dataset: str, offset: int) -> list[str]:
    rows = state.db.rows("SELECT DISTINCT key, meta FROM capture_log WHERE dataset=? AND seq>? LIMIT ?",
                         (dataset, offset, MAX_LISTED_KEYS))
    return sorted({decode_record(r["key"], r["meta"], "none", None).key.id for r in rows})
