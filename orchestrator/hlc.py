"""Hybrid logical clock: versions that follow wall time but never go backwards.

A reading is ``(wall_ms, counter)``; with the origin replica name it forms a
:class:`~mcrepl.adapters.base.Version` whose order is the same on every replica. The
clock only ever moves forward: a wall clock stepped back (NTP, a VM restore) bumps the
counter instead, and :meth:`HybridLogicalClock.observe` pulls the clock past any version
seen from elsewhere, so a later native write always outranks what it overwrote.

The clock itself is pure; persistence is the caller's job (the sync engine saves
:attr:`state` in the same SQLite transaction as the versions it issued, so a restart
resumes from at least the last committed reading and never re-issues a version).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from mcrepl.adapters.base import Version


@dataclass(frozen=True, order=True)
class ClockState:
    """A clock reading without its origin: what is persisted."""

    wall_ms: int = 0
    counter: int = 0


def wall_clock_ms() -> int:
    """The system wall clock in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class HybridLogicalClock:
    """Issues strictly increasing versions for one origin; thread-safe.

    ``now_ms`` is injectable so tests can step the wall clock backwards.
    """

    def __init__(self, origin: str, state: ClockState = ClockState(),
                 now_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.origin = origin
        self._state = state
        self._now_ms = now_ms
        self._lock = threading.Lock()

    @property
    def state(self) -> ClockState:
        """The last reading issued or observed (persist this)."""
        with self._lock:
            return self._state

    def tick(self, origin: str | None = None) -> Version:
        """A new version, greater than every version issued or observed before.

        ``origin`` labels the version (default: this clock's own origin). One clock may
        issue versions for several origins — the sync engine stamps native writes of
        whichever location is primary — and they stay totally ordered.
        """
        with self._lock:
            physical = self._now_ms()
            last = self._state
            if physical > last.wall_ms:
                self._state = ClockState(physical, 0)
            else:
                self._state = ClockState(last.wall_ms, last.counter + 1)
            return Version(self._state.wall_ms, self._state.counter, origin or self.origin)

    def observe(self, seen: Version) -> None:
        """Move the clock past ``seen`` (a version made elsewhere) so later ticks outrank it."""
        with self._lock:
            seen_state = ClockState(seen.wall_ms, seen.counter)
            if seen_state > self._state:
                self._state = seen_state
