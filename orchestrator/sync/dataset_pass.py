"""One pass over one dataset: capture and every replica lane, concurrently, until drained.

The scheduler loop runs on the caller's thread and hands out *steps* to a thread pool:
one capture page at a time, and at most one batch per lane and ``max_in_flight`` lane
batches in all (bounded in-flight work). Capture pauses while the healthy lanes are more
than a few batches behind (back-pressure, so the log stays small). A lane that fails is
retried until its circuit breaker opens, then skipped for the rest of the pass — only
that lane: the others keep draining. Stop requests and the deadline are honoured between
steps; in-flight steps finish and commit first, so checkpoints are always intact.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable

from .breaker import breaker_state, opens_after_failure
from .capture import CaptureResult, PageCapturer
from .errors import SyncDeadlineExceeded
from .lane import BatchOutcome, LaneApplier
from .report import DatasetReport, LaneReport

log = logging.getLogger("mcrepl.sync")


@dataclass
class LaneRun:
    """A lane's progress within this pass."""

    applier: Callable[[], LaneApplier]
    report: LaneReport
    offset: int
    done: bool = False
    failed: bool = False


@dataclass
class PassSettings:
    """The knobs of one pass (from ``sync:`` in the config)."""

    max_in_flight: int
    batch_size: int
    deadline_s: float
    breaker_failures: int
    breaker_reset_s: float


class DatasetPass:
    """Runs capture and lanes of one dataset to completion (or to the deadline)."""

    def __init__(self, report: DatasetReport, capturer: Callable[[], PageCapturer],
                 lanes: dict[str, LaneRun], state: Any, settings: PassSettings,
                 stop: threading.Event, metrics: Any = None, progress: Any = None) -> None:
        self.report = report
        self.capturer = capturer
        self.lanes = lanes
        self.state = state
        self.settings = settings
        self.stop = stop
        self.metrics = metrics
        self.progress = progress
        self.capture_done = False
        self._tasks: dict[str, Any] = {}

    def run(self) -> None:
        """Drive the pass; raises :class:`SyncDeadlineExceeded` after settling in-flight work."""
        ds = self.report.dataset
        deadline_at = time.monotonic() + self.settings.deadline_s
        self._check_breakers()
        in_flight: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=self.settings.max_in_flight + 1,
                                thread_name_prefix=f"sync-{ds}") as pool:
            while True:
                late = time.monotonic() > deadline_at
                if not late and not self.stop.is_set():
                    self._submit(pool, in_flight)
                if not in_flight:
                    break
                done, _ = wait(list(in_flight), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    self._settle(in_flight.pop(future), future)
        if time.monotonic() > deadline_at and not self._finished():
            behind = {r: self.state.log.head(ds) - l.offset for r, l in self.lanes.items() if not l.done}
            raise SyncDeadlineExceeded(
                f"sync of dataset {ds!r} passed its deadline ({self.settings.deadline_s:g}s) with changes "
                f"still to apply ({', '.join(f'{r}: {n}' for r, n in behind.items()) or 'capture unfinished'}); "
                "every checkpoint is saved and the next pass resumes from it (fix: raise sync.deadline, "
                "or batch_size / max_in_flight)", report=None)  # type: ignore[arg-type]

    def _finished(self) -> bool:
        return self.capture_done and all(l.done for l in self.lanes.values())

    def _check_breakers(self) -> None:
        now = time.time()
        for replica, lane in self.lanes.items():
            row = self.state.lanes.get(self.report.dataset, replica)
            lane.report.breaker = breaker_state(row, now, self.settings.breaker_reset_s)
            if lane.report.breaker == "open":
                lane.done = lane.failed = True
                lane.report.last_error = row.last_error
            self._breaker_metric(replica, lane.report.breaker)

    def _submit(self, pool: ThreadPoolExecutor, in_flight: dict[Future, str]) -> None:
        ds = self.report.dataset
        head = self.state.log.head(ds)
        busy = set(in_flight.values())
        for lane in self.lanes.values():
            if lane.done and not lane.failed and lane.offset < head:
                lane.done = False           # a merge appended to the log after the lane drained
        healthy = [l.offset for l in self.lanes.values() if not l.failed]
        ahead = head - min(healthy) if healthy else 0
        limit = self.settings.batch_size * self.settings.max_in_flight * 4
        if not self.capture_done and "\0capture" not in busy and ahead <= limit:
            in_flight[pool.submit(lambda: self.capturer().capture_page())] = "\0capture"
        lane_steps = sum(1 for name in busy if name != "\0capture")
        for replica, lane in self.lanes.items():
            if lane.done or replica in busy or lane_steps >= self.settings.max_in_flight:
                continue
            if lane.offset >= head:
                if self.capture_done:
                    lane.done = True
                continue
            offset, make = lane.offset, lane.applier
            in_flight[pool.submit(lambda m, o: m().apply_next(o), make, offset)] = replica
            lane_steps += 1

    def _settle(self, name: str, future: Future) -> None:
        if name == "\0capture":
            self._settle_capture(future)
        else:
            self._settle_lane(name, future)

    def _settle_capture(self, future: Future) -> None:
        try:
            result: CaptureResult = future.result()
        except Exception as exc:  # noqa: BLE001 - any capture failure ends capture, lanes still drain
            self.report.capture_error = str(exc)
            self.capture_done = True
            log.error("capture of %s from %s failed: %s", self.report.dataset, self.report.primary, exc)
            return
        if result.deposed:
            self.report.capture_error = (f"{self.report.primary} was demoted during this pass; "
                                         "the next pass captures from the new primary")
        self.report.captured += result.stamped
        self.report.echo_suppressed += result.echoes
        self.report.unchanged += result.unchanged
        if self.metrics is not None and result.echoes:
            self.metrics.changes(self.report.dataset, self.report.primary, "echo_suppressed", result.echoes)
        self.capture_done = not result.more
        self._show_progress()

    def _settle_lane(self, replica: str, future: Future) -> None:
        lane = self.lanes[replica]
        try:
            outcome: BatchOutcome | None = future.result()
        except Exception as exc:  # noqa: BLE001 - a lane failure must never stop the other lanes
            self._lane_failed(replica, lane, exc)
            return
        if outcome is None:
            lane.done = self.capture_done
            return
        lane.offset = outcome.new_offset
        lane.report.add(outcome.counts)
        lane.report.merged += outcome.merged
        lane.report.batches += 1
        if lane.report.breaker != "closed":
            lane.report.breaker = "closed"
            self._breaker_metric(replica, "closed")
        self._show_progress()

    def _lane_failed(self, replica: str, lane: LaneRun, exc: Exception) -> None:
        ds = self.report.dataset
        row = self.state.lanes.get(ds, replica)
        current = breaker_state(row, time.time(), self.settings.breaker_reset_s)
        opened = opens_after_failure(row, current, self.settings.breaker_failures)
        message = f"{type(exc).__name__}: {exc}"
        self.state.lanes.record_failure(ds, replica, message, opened)
        lane.report.errors += 1
        lane.report.last_error = message
        log.warning("lane %s/%s batch failed (%d in a row): %s", ds, replica, row.breaker_failures + 1, message)
        if opened:
            lane.report.breaker = "open"
            lane.done = lane.failed = True
            self._breaker_metric(replica, "open")

    def _breaker_metric(self, replica: str, state: str) -> None:
        if self.metrics is not None:
            self.metrics.breaker(self.report.dataset, replica, state.replace("-", "_"))

    def _show_progress(self) -> None:
        if self.progress is None:
            return
        head = self.state.log.head(self.report.dataset)
        for replica, lane in self.lanes.items():
            if replica not in self._tasks:
                self._tasks[replica] = self.progress.add_task(f"{self.report.dataset} → {replica}", total=head)
            self.progress.update(self._tasks[replica], total=head, completed=lane.offset)
