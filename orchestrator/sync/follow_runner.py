"""``mcrepl sync --follow``: followers on threads until SIGTERM, then drain and exit.

:class:`Follower` runs one :class:`~.follow.FollowSession` per dataset, each step on its
own daemon thread: capture, heartbeat, upkeep, anti-entropy and one thread per lane. A
step returns how long to wait; lanes wake early when capture logs something. A session
that ends on its own (the primary was promoted) is replaced by one following the new
primary. On stop, capture and heartbeats end first, lanes keep applying what was already
captured until they drain or ``sync.follow.drain_timeout`` passes, then every thread is
told to end; a thread stuck in a store call is not waited for beyond that (it holds no
transaction: whatever it commits later is conditional, and a restart re-applies what it
did not commit).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from mcrepl.adapters.base import ConfigError

from .follow import FollowSession
from .report import DatasetReport

log = logging.getLogger("mcrepl.sync.follow")
RESTART_S = 5.0
"""How long a dataset whose session could not start waits before trying again."""


@dataclass
class FollowReport:
    """What followers did until they were stopped: per dataset, the last session's report."""

    datasets: dict[str, DatasetReport] = field(default_factory=dict)
    drained: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (counts, offsets and whether each lane drained before the exit)."""
        from dataclasses import asdict
        return {"drained": self.drained,
                "datasets": {name: asdict(ds) for name, ds in self.datasets.items()}}


class _Phase:
    """running → draining → halted, shared by a session's threads."""

    def __init__(self) -> None:
        self.value = "running"
        self.changed = threading.Condition()

    def set(self, value: str) -> None:
        with self.changed:
            self.value = value
            self.changed.notify_all()


class Follower:
    """Follows ``datasets`` of ``engine`` on threads until :meth:`stop` (or the engine's stop)."""

    def __init__(self, engine: Any, datasets: list[str]) -> None:
        self.engine = engine
        self.datasets = datasets
        self.report = FollowReport()
        self._stop = engine.stopping
        self.fatal: BaseException | None = None

    def stop(self) -> None:
        """Stop capturing, drain the lanes, end (signal handlers call this)."""
        self.engine.request_stop()

    def run(self) -> FollowReport:
        """Block until stopped; every dataset's followers drained (or timed out) on return."""
        threads = [threading.Thread(target=self._follow, args=(name,), name=f"follow-{name}", daemon=True)
                   for name in self.datasets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.fatal is not None:
            raise self.fatal
        return self.report

    def _follow(self, name: str) -> None:
        while not self._stop.is_set():
            try:
                session = FollowSession(self.engine, name)
            except ConfigError as exc:          # the config contradicts the state: nothing to retry
                self.fatal = exc
                self.engine.request_stop()
                return
            except Exception as exc:  # noqa: BLE001 - the primary may be down at start: try again
                log.error("following %s could not start: %s (again in %.0fs)", name, exc, RESTART_S)
                self._stop.wait(RESTART_S)
                continue
            drained = run_session(session, self._stop)
            self.report.datasets[name] = session.report
            self.report.drained = self.report.drained and drained
            if session.ended is not None and not self._stop.is_set():
                log.warning("follower of %s restarts: %s", name, session.ended)


def run_session(session: FollowSession, stop: threading.Event) -> bool:
    """Run ``session`` on threads until ``stop`` is set or it ends; True when every lane drained."""
    phase = _Phase()
    wake = session.logged
    threads = [_start(f"{session.name}-capture", session.capture_step, phase, wake, ("running",)),
               _start(f"{session.name}-heartbeat", session.heartbeat_step, phase, None, ("running",)),
               _start(f"{session.name}-upkeep", session.maintenance_step, phase, None, ("running",)),
               _start(f"{session.name}-verify", session.verify_step, phase, None, ("running",))]
    producers_done = threading.Event()         # nothing appends to the log any more
    lanes = {replica: _start(f"{session.name}-lane-{replica}", _lane_step(lane, phase), phase, wake,
                             ("running", "draining"), until=_drained(session, lane, phase, producers_done))
             for replica, lane in session.lanes.items()}
    while not stop.is_set() and session.ended is None:
        stop.wait(0.2)
    drained = False
    if session.ended is None:                    # stopped: drain what was captured, within the bound
        phase.set("draining")
        with wake:
            wake.notify_all()
        deadline = session.clock.monotonic() + session.tuning.drain_s
        for thread in threads:                   # a capture page or an anti-entropy repair in flight
            thread.join(max(0.0, deadline - session.clock.monotonic()))
        if not any(t.is_alive() for t in threads):
            producers_done.set()
        for thread in lanes.values():
            thread.join(max(0.0, deadline - session.clock.monotonic()))
        drained = producers_done.is_set() and not any(t.is_alive() for t in lanes.values())
    phase.set("halted")
    with wake:
        wake.notify_all()
    for thread in [*threads, *lanes.values()]:
        thread.join(timeout=1.0)
    session.report.lanes.update({r: rep for r, rep in session.lane_reports().items()
                                 if r != session.primary.replica})
    session.report.primary_lane = session.lanes[session.primary.replica].report
    session.state.audit.flush()
    return drained and all(rep.caught_up for rep in session.lane_reports().values())


def _lane_step(lane: Any, phase: _Phase) -> Callable[[], float]:
    return lambda: lane.step(draining=phase.value == "draining")


def _drained(session: FollowSession, lane: Any, phase: _Phase, producers_done: threading.Event) -> Callable[[], bool]:
    """While draining, a lane's thread ends once nothing appends to the log and it applied everything."""
    return lambda: (phase.value == "draining" and producers_done.is_set()
                    and lane.drained(session.state.log.head(session.name)))


def _start(name: str, step: Callable[[], float], phase: _Phase, wake: threading.Condition | None,
           phases: tuple[str, ...], until: Callable[[], bool] | None = None) -> threading.Thread:
    """A daemon thread calling ``step`` while the phase is one of ``phases`` (and ``until`` is false)."""

    def loop() -> None:
        while phase.value in phases and not (until is not None and until()):
            try:
                wait = step()
            except Exception:  # noqa: BLE001 - a step's bug must not kill its thread silently
                log.exception("follow step %s failed", name)
                wait = 1.0
            if wait <= 0:
                continue
            condition = wake or phase.changed
            with condition:
                if phase.value in phases:
                    condition.wait(min(wait, 1.0))

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
