"""Publishing the epoch to every location's epoch record, so the stores refuse stale writers.

The state file's primary pointer is the authority; the epoch records in the stores are
its published copies (see :mod:`mcrepl.adapters.base.fence`). Publication is idempotent
and never lowers a record, so it is safe to repeat: promotion publishes to every
location it can reach, and a location that could not be reached (the lost region) is
remembered as **pending** in the state file until ``mcrepl failover fence`` (or the next
promote, failback or fence) reaches it. Each publication is audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from mcrepl.adapters import open_fence
from mcrepl.adapters.base import McreplError, ReplicaTarget
from mcrepl.adapters.base.fence import EpochFence
from mcrepl.orchestrator.state import StateStore

log = logging.getLogger("mcrepl.failover.fencing")
FenceFactory = Callable[[ReplicaTarget], EpochFence]


@dataclass(frozen=True)
class FenceOutcome:
    """One location's publication: ``published`` (now holds ``epoch``), ``ahead`` (holds a higher
    one), ``pending`` (unreachable: ``error``) or ``planned`` (dry run)."""

    location: str
    status: str
    epoch: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def published_key(dataset: str, location: str) -> str:
    """The state-file meta key holding the epoch last published at ``location``."""
    return f"fence_published:{dataset}:{location}"


def published_epoch(state: StateStore, dataset: str, location: str) -> int | None:
    """The epoch this state file last published at ``location`` (``None``: never)."""
    value = state.get_meta(published_key(dataset, location))
    return int(value) if value is not None else None


def publish(state: StateStore, targets: Iterable[ReplicaTarget], dataset: str, *, dry_run: bool = False,
            open_one: FenceFactory = open_fence) -> list[FenceOutcome]:
    """Publish the dataset's current ``(epoch, primary)`` to each target's epoch record."""
    pointer = state.current_primary(dataset)
    if pointer is None:
        raise McreplError(f"{dataset!r} has no primary pointer yet (fix: run 'mcrepl sync --once' first)")
    outcomes = []
    for target in targets:
        if dry_run:
            outcomes.append(FenceOutcome(target.replica, "planned", pointer.epoch))
            continue
        outcomes.append(_publish_one(state, target, pointer.epoch, pointer.location, open_one))
    return outcomes


def _publish_one(state: StateStore, target: ReplicaTarget, epoch: int, primary: str,
                 open_one: FenceFactory) -> FenceOutcome:
    dataset, location = target.dataset, target.replica
    fence: EpochFence | None = None
    try:
        fence = open_one(target)
        fence.ensure()
        stored = fence.publish(epoch, primary, state.clock.time())
    except McreplError as exc:
        log.warning("could not publish epoch %d of %s at %s: %s", epoch, dataset, location, exc)
        outcome = FenceOutcome(location, "pending", epoch, f"{type(exc).__name__}: {exc}")
    else:
        outcome = FenceOutcome(location, "published" if stored.epoch == epoch else "ahead", stored.epoch)
    finally:
        if fence is not None:
            fence.close()
    with state.transaction():
        if outcome.status != "pending":
            state.set_meta(published_key(dataset, location), str(outcome.epoch))
        state.audit.add("failover.fence", {"dataset": dataset, **outcome.to_dict()})
    state.audit.flush()
    return outcome


def pending_locations(state: StateStore, dataset: str, locations: Iterable[str]) -> list[str]:
    """Locations whose epoch record this state file has not brought to the current epoch."""
    pointer = state.current_primary(dataset)
    if pointer is None:
        return []
    return [loc for loc in locations if (published_epoch(state, dataset, loc) or 0) < pointer.epoch]


__all__ = ["FenceFactory", "FenceOutcome", "pending_locations", "publish", "published_epoch", "published_key"]
