"""The hybrid logical clock never goes backwards, and neither does its persisted state."""

from __future__ import annotations

from pathlib import Path

from mcrepl.adapters.base import Version
from mcrepl.orchestrator.hlc import ClockState, HybridLogicalClock
from mcrepl.orchestrator.state import StateStore


def test_ticks_follow_wall_time_and_increase() -> None:
    now = [1_000]
    clock = HybridLogicalClock("dynamodb:eu-west-1", now_ms=lambda: now[0])
    first = clock.tick()
    second = clock.tick()
    now[0] = 2_000
    third = clock.tick()
    assert (first.wall_ms, first.counter) == (1_000, 0)
    assert (second.wall_ms, second.counter) == (1_000, 1)
    assert (third.wall_ms, third.counter) == (2_000, 0)
    assert first.token < second.token < third.token


def test_wall_clock_stepping_back_bumps_the_counter() -> None:
    now = [5_000]
    clock = HybridLogicalClock("a", now_ms=lambda: now[0])
    before = clock.tick()
    now[0] = 3_000                                  # NTP stepped the clock back
    after = clock.tick()
    assert after > before
    assert (after.wall_ms, after.counter) == (5_000, 1)


def test_observe_moves_past_a_version_from_elsewhere() -> None:
    clock = HybridLogicalClock("a", now_ms=lambda: 1_000)
    seen = Version(9_000, 7, "z")                   # made by a replica whose clock runs ahead
    clock.observe(seen)
    nxt = clock.tick()
    assert nxt > seen and nxt.token > seen.token
    clock.observe(Version(10, 0, "old"))            # older versions change nothing
    assert clock.tick() > nxt


def test_persisted_state_survives_restart_and_never_regresses(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    clock = HybridLogicalClock("a", state.load_clock(), now_ms=lambda: 50_000)
    issued = [clock.tick() for _ in range(3)]
    state.save_clock(clock.state)
    state.save_clock(ClockState(1, 0))              # a stale save must not move it back
    state.close()
    reopened = StateStore(tmp_path / "state.db")
    restarted = HybridLogicalClock("a", reopened.load_clock(), now_ms=lambda: 10)  # clock far behind
    assert restarted.tick() > issued[-1]
