"""Time as the engine sees it: one injectable source for wall time, elapsed time and sleeping.

Every component that reads time takes a :class:`Clock` instead of calling :mod:`time`
directly, so the deterministic simulation (``tests/simulation``) can step wall clocks
backwards and forwards, skew this host against the stores, and make a hung call take
ten simulated minutes without waiting for them. Wall time orders nothing by itself:
versions come from the hybrid logical clock, capture order from the stores' own
positions; wall time only stamps ``captured_at``, breaker timers and reports.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of time; :data:`SYSTEM_CLOCK` in production."""

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch (may step backwards: NTP, VM restores)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (deadlines, timeouts)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The host's clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


SYSTEM_CLOCK: Clock = SystemClock()


def wall_ms(clock: Clock) -> int:
    """``clock``'s wall time in whole milliseconds (what hybrid logical clocks read)."""
    return int(clock.time() * 1000)
