"""One pass over one dataset: capture and every lane, concurrently, until drained.

The coordinator loop runs on the caller's thread and hands out *steps* to an executor:
one capture page at a time, at most one window per lane and ``max_in_flight`` lane
windows in all. Capture never waits on a lane — the log is on disk, so a slow or hung
replica only lets its own backlog grow. A step that fails is counted against its lane's
circuit breaker and retried until the breaker opens; a step still running past
``step_timeout`` (a store that accepts connections and answers nothing) is abandoned and
its lane sits the rest of the pass out, so it costs that lane only. Stop requests and the
deadline are honoured between steps; every commit a step makes is atomic, so checkpoints
are always intact.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from mcrepl.orchestrator.clock import Clock

from .breaker import breaker_state, opens_after_failure
from .capture import CaptureResult
from .errors import SyncDeadlineExceeded
from .executor import StepExecutor
from .lane import BatchOutcome, LaneApplier
from .report import DatasetReport, LaneReport

log = logging.getLogger("mcrepl.sync")
CAPTURE = "\0capture"


@dataclass
class LaneRun:
    """A lane's progress within this pass (the primary's own lane included)."""

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
    step_timeout_s: float


class DatasetPass:
    """Runs capture and lanes of one dataset to completion (or to the deadline)."""

    def __init__(self, report: DatasetReport, capture_step: Callable[[], CaptureResult] | None,
                 lanes: dict[str, LaneRun], state: Any, settings: PassSettings, stop: threading.Event,
                 clock: Clock, executor: StepExecutor, metrics: Any = None, progress: Any = None,
                 on_lane_progress: Callable[[str, int], None] | None = None,
                 renew: Callable[[], bool] | None = None) -> None:
        self.report = report
        self.capture_step = capture_step
        self.lanes = lanes
        self.state = state
        self.settings = settings
        self.stop = stop
        self.clock = clock
        self.executor = executor
        self.metrics = metrics
        self.progress = progress
        self.on_lane_progress = on_lane_progress
        self.capture_done = capture_step is None
        #: whether capture has read a page that began a pass of the primary's changes (always,
        #: for a change log; for a listing, not while it goes on with a pass begun before this
        #: one — what changed behind that pass's position shows only in the next)
        self._pass_begun = False
        self.renew = renew
        self._tasks: dict[str, Any] = {}

    def run(self) -> None:
        """Drive the pass; raises :class:`SyncDeadlineExceeded` once in-flight work has settled."""
        ds = self.report.dataset
        deadline_at = self.clock.monotonic() + self.settings.deadline_s
        self._check_breakers()
        in_flight: dict[Future, tuple[str, float]] = {}  # type: ignore[type-arg]
        try:
            while True:
                now = self.clock.monotonic()
                if now <= deadline_at and not self.stop.is_set() and self._still_leased():
                    self._submit(in_flight)
                if not in_flight:
                    break
                self._abandon_overdue(in_flight, now)
                for future in self.executor.wait_any(list(in_flight), 0.2):
                    name, _ = in_flight.pop(future)
                    self._settle(name, future)
        finally:
            self.executor.shutdown()
        if self.clock.monotonic() > deadline_at and not self._finished():
            head = self.state.log.head(ds)
            behind = [f"{r}: {head - l.offset}" for r, l in self.lanes.items() if not l.done and not l.failed]
            capture = "" if self.capture_done else "; capture unfinished: the primary may hold more changes"
            for lane in self.lanes.values():
                if not lane.done and not lane.failed:
                    lane.report.reason = "deadline passed"
            raise SyncDeadlineExceeded(
                f"sync of dataset {ds!r} passed its deadline ({self.settings.deadline_s:g}s) with changes still "
                f"to apply ({', '.join(behind) or 'none logged'}{capture}); every checkpoint is saved and the "
                "next pass resumes from it (fix: raise sync.deadline, or batch_size / max_in_flight)",
                report=None)  # type: ignore[arg-type]

    def _still_leased(self) -> bool:
        """Whether this pass still holds its leases (renewing them); if not, nothing more is started."""
        if self.renew is None or self.renew():
            return True
        message = "the pass lost its lease (another coordinator took it over after it expired)"
        if self.report.capture_error is None and not self.capture_done:
            self.report.capture_error = message
        self.capture_done = True
        for lane in self.lanes.values():
            if not lane.done:
                lane.done = lane.failed = True
                lane.report.reason = message
        return False

    def _finished(self) -> bool:
        return self.capture_done and all(l.done or l.failed for l in self.lanes.values())

    def _check_breakers(self) -> None:
        now = self.clock.time()
        for replica, lane in self.lanes.items():
            row = self.state.lanes.get(self.report.dataset, replica)
            lane.report.breaker = breaker_state(row, now, self.settings.breaker_reset_s)
            if lane.report.breaker == "open":
                lane.done = lane.failed = True
                lane.report.last_error = row.last_error
                lane.report.reason = f"breaker open after {row.breaker_failures} failed batches"
            self._breaker_metric(replica, lane.report.breaker)

    def _primary_moved(self) -> bool:
        """Whether a promotion happened since the pass began (then it ends: the next one follows the new primary)."""
        pointer = self.state.current_primary(self.report.dataset)
        moved = pointer is not None and pointer.epoch != self.report.epoch
        if moved and self.report.capture_error is None:
            self.report.capture_error = (f"the primary changed to {pointer.location} (epoch {pointer.epoch}) during "  # type: ignore[union-attr]
                                         "this pass; the next pass follows it")
        return moved

    def _submit(self, in_flight: dict[Future, tuple[str, float]]) -> None:  # type: ignore[type-arg]
        if self._primary_moved():
            return
        head = self.state.log.head(self.report.dataset)
        busy = {name for name, _ in in_flight.values()}
        now = self.clock.monotonic()
        for lane in self.lanes.values():
            if lane.done and not lane.failed and lane.offset < head:
                lane.done = False           # a settlement was appended after the lane drained
        if not self.capture_done and CAPTURE not in busy and self.capture_step is not None:
            in_flight[self.executor.submit(self.capture_step)] = (CAPTURE, now)
            head = self.state.log.head(self.report.dataset)
        lane_steps = sum(1 for name in busy if name != CAPTURE)
        for replica, lane in self.lanes.items():
            if lane.done or replica in busy or lane_steps >= self.settings.max_in_flight:
                continue
            if lane.offset >= head:
                if self.capture_done:
                    lane.done = True
                continue
            in_flight[self.executor.submit(_apply, lane.applier, lane.offset)] = (replica, now)
            lane_steps += 1

    def _abandon_overdue(self, in_flight: dict[Future, tuple[str, float]], now: float) -> None:  # type: ignore[type-arg]
        limit = self.settings.step_timeout_s
        for future, (name, started) in list(in_flight.items()):
            if future.done() or now - started <= limit:
                continue
            del in_flight[future]
            message = f"no answer within {limit:g}s: the step was abandoned (a hung store or connection)"
            if name == CAPTURE:
                self._capture_failed(message)
            else:
                self._lane_failed(name, self.lanes[name], TimeoutError(message), hung=True)

    def _settle(self, name: str, future: Future) -> None:  # type: ignore[type-arg]
        if name == CAPTURE:
            self._settle_capture(future)
        else:
            self._settle_lane(name, future)

    def _settle_capture(self, future: Future) -> None:  # type: ignore[type-arg]
        try:
            result: CaptureResult = future.result()
        except Exception as exc:  # noqa: BLE001 - any capture failure ends capture, lanes still drain
            self._capture_failed(f"{type(exc).__name__}: {exc}")
            return
        if result.deposed:
            self.report.capture_error = (f"{self.report.primary} was demoted during this pass; "
                                         "the next pass captures from the new primary")
        self.report.captured += result.stamped
        self.report.echo_suppressed += result.echoes
        self.report.unchanged += result.unchanged
        self.report.quarantined += result.quarantined
        if self.metrics is not None and result.echoes:
            self.metrics.changes(self.report.dataset, self.report.primary, "echo_suppressed", result.echoes)
        self._pass_begun = self._pass_begun or not result.mid_pass
        # caught up means every change the primary took before this pass began is logged
        self.capture_done = result.deposed or (not result.more and self._pass_begun)
        self._show_progress()

    def _capture_failed(self, message: str) -> None:
        self.report.capture_error = message
        self.capture_done = True
        log.error("capture of %s from %s failed: %s", self.report.dataset, self.report.primary, message)

    def _settle_lane(self, replica: str, future: Future) -> None:  # type: ignore[type-arg]
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
        if self.on_lane_progress is not None:
            self.on_lane_progress(replica, lane.offset)
        self._show_progress()

    def _lane_failed(self, replica: str, lane: LaneRun, exc: BaseException, hung: bool = False) -> None:
        ds = self.report.dataset
        row = self.state.lanes.get(ds, replica)
        current = breaker_state(row, self.clock.time(), self.settings.breaker_reset_s)
        opened = opens_after_failure(row, current, self.settings.breaker_failures)
        message = f"{type(exc).__name__}: {exc}"
        self.state.lanes.record_failure(ds, replica, message, opened)
        lane.report.errors += 1
        lane.report.last_error = message
        log.warning("lane %s/%s batch failed (%d in a row): %s", ds, replica, row.breaker_failures + 1, message)
        if opened:
            lane.report.breaker = "open"
            lane.report.reason = f"breaker opened after {row.breaker_failures + 1} failed batches"
            self._breaker_metric(replica, "open")
        if opened or hung:
            lane.done = lane.failed = True
            lane.report.reason = lane.report.reason if opened else "hung: no answer within the step timeout"

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


def _apply(make: Callable[[], LaneApplier], offset: int) -> BatchOutcome | None:
    return make().apply_next(offset)
