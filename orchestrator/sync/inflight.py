"""How many write units a lane keeps in flight: additive increase, multiplicative decrease.

Throughput against a store an ocean away is requests in flight divided by round-trip
time, so a lane splits each window into units and runs several at once. How many is
learnt per lane, as TCP learns a window: one more after every window the store took
without complaint, half as many after a window in which it throttled (429, 503,
throughput exceeded), and no new window before the longest ``retry-after`` it asked
for has passed. The cap bounds what one lane may ask of a store and of the executor.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class InFlightWindow:
    """The number of units one lane sends at once, between 1 and ``cap``."""

    def __init__(self, cap: int, start: int | None = None,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cap = max(1, cap)
        self.width = max(1, min(self.cap, start if start is not None else max(1, self.cap // 2)))
        self._sleep = sleep
        self._monotonic = monotonic
        self._hold_until = 0.0
        self._lock = threading.Lock()
        self.decreases = 0

    def current(self) -> int:
        """The width for the next window, after waiting out a store's ``retry-after``."""
        with self._lock:
            wait = self._hold_until - self._monotonic()
        if wait > 0:
            self._sleep(wait)
        with self._lock:
            return self.width

    def observe(self, throttled: int, retry_after: float | None) -> None:
        """Adjust after a window: ``throttled`` retries the store asked for, its longest hint."""
        with self._lock:
            if throttled:
                self.width = max(1, self.width // 2)
                self.decreases += 1
                if retry_after:
                    self._hold_until = max(self._hold_until, self._monotonic() + retry_after)
            elif self.width < self.cap:
                self.width += 1


__all__ = ["InFlightWindow"]
