"""Follow mode: one dataset replicated continuously, under one primary epoch.

A :class:`FollowSession` is what a pass is, stretched out in time: capture reads the
primary's change log page after page into the durable log (the same
:class:`~.capture.PageCapturer`), and every lane applies that log continuously
(:mod:`.follow_lane`) instead of once per pass. Each part is a *step* —
:meth:`capture_step`, a lane's :meth:`~.follow_lane.LaneLoop.step`,
:meth:`heartbeat_step`, :meth:`maintenance_step` — that returns how long to wait before
its next call; :mod:`.follow_runner` runs each on its own thread (so a hung replica holds
only its own lane's thread), and the deterministic simulation calls them in turn
(:meth:`iterate`).

What keeps it safe is what keeps passes safe: every commit (a captured page with its
cursor, a lane's batch with its offset) is one transaction, so SIGKILL at any instant
loses nothing and a restart resumes; capture stops the moment the durable pointer no
longer names its location (fencing), lanes commit only under the session's epoch, and
a promotion ends the session — the next one follows the new primary. Memory is bounded
by one capture page and one batch per lane; the backlog lives in the log on disk, and
capture pauses when the slowest lane that still answers is ``sync.follow.max_backlog``
changes behind (a lane whose store does not answer is left out, so it never slows the
others: it holds the log as in passes and is backfilled if it stays away too long).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from mcrepl.adapters.base import AdapterError

from .antientropy import AntiEntropy, anti_entropy_settings
from .follow_lane import FollowTuning, LaneLoop
from .heartbeat import HeartbeatWriter
from .report import DatasetReport, LaneReport
from .schedule import anti_entropy_due

log = logging.getLogger("mcrepl.sync.follow")
MAINTENANCE_S = 1.0
"""How often a session checks the primary pointer, exports heartbeat ages and truncates the log."""


class FollowSession:
    """Capture, lanes, heartbeats and upkeep of one dataset under the current primary epoch."""

    def __init__(self, engine: Any, name: str, tuning: FollowTuning | None = None) -> None:
        self.engine = engine
        self.name = name
        self.state = engine.state
        self.clock = engine.clock
        self.tuning = tuning or FollowTuning.of(engine.config, name)
        self.pointer = engine.pointer(name)
        self.primary, self.replicas = engine._targets(name, self.pointer)
        engine._seed_clock(name, [self.primary, *self.replicas])
        self.state.log.add_origins(name, [self.pointer.location])
        settling = engine.settling(name, self.pointer)
        self.report = DatasetReport(name, self.pointer.location, self.pointer.epoch)
        self._capture = engine._capture_step(self.primary, self.pointer)
        primary, pointer = self.primary, self.pointer
        # the primary's lane row first (state only), as a pass does: settlements other lanes
        # append from now on are after its offset, so it delivers them to the primary
        engine._primary_lane(primary, settling, pointer)
        self.lanes: dict[str, LaneLoop] = {primary.replica: self._loop(
            primary.replica, lambda: engine._primary_lane(primary, settling, pointer))}
        for target in self.replicas:
            self.lanes[target.replica] = self._loop(
                target.replica, lambda t=target: engine._replica_lane(t, primary, settling, pointer, self.report))
        self.lanes[primary.replica].report.role = "primary"
        beat = self.tuning.heartbeat_s
        self.heartbeat = HeartbeatWriter(primary, self.state, pointer.epoch, self.clock, beat) if beat else None
        self.logged = threading.Condition()    # notified when capture logged something: lanes wake up
        self.ended: str | None = None          # why the session ended on its own (a promotion)
        self._capture_failures = 0
        self._capture_retry_at = 0.0
        self._next_beat = 0.0
        self._next_truncate = 0.0
        self._started_at: float | None = None

    def _loop(self, replica: str, attach: Any) -> LaneLoop:
        return LaneLoop(self.name, replica, attach, self.state, self.clock, self.tuning, self.engine.metrics)

    # -- steps ---------------------------------------------------------------------------

    def capture_step(self) -> float:
        """Capture one page of the primary's changes into the log (unless lanes are too far behind)."""
        now = self.clock.monotonic()
        if now < self._capture_retry_at:
            return self._capture_retry_at - now
        if self._started_at is None:
            self._started_at = now
        if now - self._started_at < self.tuning.unresponsive_s and \
                not all(lane.attempted for lane in self.lanes.values()):
            return 0.05          # lanes attach (backfill, rejoin) before capture, as in a pass, unless one hangs
        if self.backpressured(now):
            return self.tuning.poll_s
        try:
            result = self._capture()
        except Exception as exc:  # noqa: BLE001 - capture failures back off; lanes still drain
            self._capture_failures += 1
            self.report.capture_error = f"{type(exc).__name__}: {exc}"
            log.error("capture of %s from %s failed (%d in a row): %s", self.name, self.primary.replica,
                      self._capture_failures, exc)
            wait = min(self.tuning.breaker_reset_s, 0.1 * 2 ** self._capture_failures)
            self._capture_retry_at = now + wait
            return wait
        self._capture_failures = 0
        self.report.capture_error = None
        if result.deposed:
            self.ended = f"{self.primary.replica} is no longer the primary of {self.name}"
            return self.tuning.poll_s
        self.report.captured += result.stamped
        self.report.echo_suppressed += result.echoes
        self.report.quarantined += result.quarantined
        if result.stamped:
            with self.logged:
                self.logged.notify_all()
        return 0.0 if result.more else self.tuning.poll_s

    def backpressured(self, now: float) -> bool:
        """Whether the slowest lane that still answers is ``max_backlog`` or more changes behind."""
        head = self.state.log.head(self.name)
        behind = [head - lane.offset for lane in self.lanes.values() if lane.responsive(now)]
        return bool(behind) and max(behind) >= self.tuning.max_backlog

    def heartbeat_step(self) -> float:
        """Write the dataset's heartbeat to the primary when one is due."""
        if self.heartbeat is None or not self.heartbeat.enabled:
            return 3600.0
        now = self.clock.monotonic()
        if now < self._next_beat:
            return self._next_beat - now
        self._next_beat = max(self._next_beat + self.heartbeat.every_s, now)
        try:
            adapter = self.engine.adapter(self.primary)
            if self.heartbeat.usable(adapter) and self.heartbeat.beat(adapter) is None:
                self.ended = self.ended or "the primary pointer moved"
        except Exception as exc:  # noqa: BLE001 - a missed heartbeat shows as a growing heartbeat age
            log.warning("heartbeat of %s at %s failed: %s", self.name, self.primary.replica, exc)
        return max(0.0, self._next_beat - self.clock.monotonic())

    def maintenance_step(self) -> float:
        """Notice a promotion, export heartbeat ages, drop log entries every lane applied."""
        current = self.state.current_primary(self.name)
        if current is not None and current.epoch != self.pointer.epoch:
            self.ended = self.ended or f"the primary changed to {current.location} (epoch {current.epoch})"
        self._export_ages()
        now = self.clock.monotonic()
        if now >= self._next_truncate:
            self._next_truncate = now + 5 * MAINTENANCE_S
            self.engine._truncate_log(self.name)
        return MAINTENANCE_S

    def verify_step(self) -> float:
        """Anti-entropy when ``anti_entropy.every`` says it is due (repairs go through the lanes)."""
        if not anti_entropy_due(self.engine, self.name):
            return 10.0
        try:
            adapters = {t.replica: self.engine.adapter(t) for t in [self.primary, *self.replicas]}
            runner = AntiEntropy(self.engine.config, self.name, self.state, self.engine.router, adapters,
                                 self.engine.settling(self.name, self.pointer),
                                 anti_entropy_settings(self.engine.config, self.name), self.clock)
            runner.should_stop = self.engine.stopping.is_set
            self.report.verify, _ = runner.run(repair=True, deliver=self._await_drained)
        except AdapterError as exc:
            log.warning("anti-entropy of %s could not compare the copies: %s", self.name, exc)
            return 60.0
        return 10.0

    def _await_drained(self) -> None:
        """What anti-entropy's repair waits for: the lanes (run by their own threads) reach the head."""
        head = self.state.log.head(self.name)
        deadline = self.clock.monotonic() + 2 * self.tuning.drain_s
        while self.clock.monotonic() < deadline and self.ended is None and not self.engine.stopping.is_set():
            if all(lane.drained(head) for lane in self.lanes.values() if lane.responsive(self.clock.monotonic())):
                return
            self.clock.sleep(self.tuning.poll_s)

    def _export_ages(self) -> None:
        metrics = self.engine.metrics
        if metrics is None or self.heartbeat is None:
            return
        now_ms = int(self.clock.time() * 1000)
        for replica in self.lanes:
            if replica == self.primary.replica:
                continue
            newest = self.state.heartbeats.summary(self.name, replica, now_ms).newest_written_ms
            if newest is not None:
                metrics.heartbeat_age(self.name, replica, (now_ms - newest) / 1000)

    def attach_lanes(self) -> None:
        """Attach every lane (backfill or rejoin where needed) before anything is captured, as a
        pass does; a lane that cannot be attached now is tried again by its own steps."""
        for lane in self.lanes.values():
            if lane.lane is None:
                lane.step()

    # -- the deterministic form ---------------------------------------------------------------

    def iterate(self, iterations: int) -> None:
        """Run every step in turn ``iterations`` times on this thread (the simulation's follower).

        Time advances by ``max_delay`` per round through the engine's clock, so batches come
        due exactly as they would; exceptions that are not :class:`Exception` (a simulated
        crash) propagate.
        """
        self.attach_lanes()
        for _ in range(iterations):
            if self.ended is not None:
                return
            self.capture_step()
            self.heartbeat_step()
            for lane in self.lanes.values():
                lane.step()
            self.maintenance_step()
            self.clock.sleep(self.tuning.max_delay_s)

    def drain(self, rounds: int) -> bool:
        """Apply what was captured, capturing nothing more, for at most ``rounds`` rounds (the
        simulation's SIGTERM); True when every lane drained."""
        for _ in range(rounds):
            head = self.state.log.head(self.name)
            if all(lane.drained(head) for lane in self.lanes.values()):
                return True
            for lane in self.lanes.values():
                if not lane.drained(head):
                    lane.step(draining=True)
            self.clock.sleep(self.tuning.max_delay_s)
        head = self.state.log.head(self.name)
        return all(lane.drained(head) for lane in self.lanes.values())

    def lane_reports(self) -> dict[str, LaneReport]:
        """Each lane's report, with its offset, the head and whether it has drained."""
        head = self.state.log.head(self.name)
        for lane in self.lanes.values():
            lane.report.offset, lane.report.head = max(lane.offset, 0), head
            lane.report.caught_up = lane.drained(head) and lane.report.breaker != "open"
            if not lane.report.caught_up and lane.report.reason is None:
                lane.report.reason = (f"{head - lane.offset} logged changes not yet applied" if lane.lane is not None
                                      else "not attached")
        return {r: lane.report for r, lane in self.lanes.items()}
