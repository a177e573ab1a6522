"""Per-lane circuit breaker, derived from the lane row so it survives restarts.

``closed``: batches flow. After ``failures`` consecutive failed batches it is ``open``:
the lane is skipped (only that lane) until ``reset`` has passed, then ``half-open``: one
probe batch runs; success closes it, failure opens it again for another ``reset``.
"""

from __future__ import annotations

from typing import Literal

from mcrepl.orchestrator.state import LaneState

BreakerState = Literal["closed", "open", "half-open"]


def breaker_state(lane: LaneState, now: float, reset_s: float) -> BreakerState:
    """The breaker state of ``lane`` at time ``now``.

    The opening time is wall time (it must survive a restart); a wall clock stepped back
    since (NTP, a VM restore) makes the elapsed time negative, which counts as elapsed:
    a probe batch is tried rather than the lane staying shut for as long as the step.
    """
    if lane.breaker_opened_at is None:
        return "closed"
    elapsed = now - lane.breaker_opened_at
    return "half-open" if elapsed >= reset_s or elapsed < 0 else "open"


def opens_after_failure(lane: LaneState, state: BreakerState, threshold: int) -> bool:
    """Whether one more failed batch (on top of ``lane``'s count) opens the breaker."""
    return state == "half-open" or lane.breaker_failures + 1 >= threshold
