"""The drill's background loops: continuous sync passes and replica-lag sampling.

The sync loop runs :meth:`SyncEngine.run_once` every ``interval_s``; each pass reads the
primary pointer afresh, so a promotion reverses replication on the next pass. A pass
never blocks on a lost location for long: every call goes through a
:class:`~.guard.GuardedAdapter` with a deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine

from .history import History

log = logging.getLogger("mcrepl.failover")


@dataclass
class PassRecord:
    """When a pass started, whether capture worked, and which lanes ended it drained."""

    started: float
    capture_ok: bool
    converged: set[str] = field(default_factory=set)


class SyncLoop:
    """Runs sync passes of one dataset on a thread until stopped."""

    def __init__(self, engine: SyncEngine, dataset: str, interval_s: float) -> None:
        self.engine = engine
        self.dataset = dataset
        self.interval_s = interval_s
        self.passes: list[PassRecord] = []
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="drill-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.engine.request_stop()
        self._thread.join(timeout=120)

    def last_pass(self) -> PassRecord | None:
        with self._lock:
            return self.passes[-1] if self.passes else None

    def drained_since(self, since: float, locations: set[str]) -> bool:
        """True when a pass that started after ``since`` captured cleanly and drained ``locations``."""
        with self._lock:
            return any(p.started > since and p.capture_ok and locations <= p.converged for p in self.passes)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            try:
                report = self.engine.run_once(self.dataset)
                ds = report.datasets.get(self.dataset)
                if ds is not None:
                    record = PassRecord(started, ds.capture_error is None,
                                        {name for name, lane in ds.lanes.items() if lane.caught_up})
                    with self._lock:
                        self.passes.append(record)
                        del self.passes[:-200]
            except Exception as exc:  # noqa: BLE001 - a failed pass is retried; drills expect failures
                self.errors += 1
                log.info("drill sync pass failed: %s", exc)
            self._stop.wait(self.interval_s)


class LagSampler:
    """Samples every replica's lag (changes and seconds behind the log head) into the history."""

    def __init__(self, state: StateStore, dataset: str, default_primary: str, locations: list[str],
                 history: History, interval_s: float = 0.25) -> None:
        self.state = state
        self.dataset = dataset
        self.default_primary = default_primary
        self.locations = locations
        self.history = history
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def lag(self) -> dict[str, tuple[int, float]]:
        """``{replica: (changes behind, seconds behind)}`` for every non-primary location now."""
        primary = self.state.primary(self.dataset, self.default_primary).location
        head = self.state.log.head(self.dataset)
        now, out = time.time(), {}
        for location in self.locations:
            if location == primary:
                continue
            offset = self.state.lanes.get(self.dataset, location).offset
            oldest = self.state.log.oldest_captured_at(self.dataset, offset)
            out[location] = (max(head - offset, 0), round(now - oldest, 3) if oldest else 0.0)
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for location, (changes, seconds) in self.lag().items():
                    self.history.sample(location, changes, seconds)
            except Exception as exc:  # noqa: BLE001 - sampling must never end a drill
                log.debug("lag sample failed: %s", exc)
            self._stop.wait(self.interval_s)
