"""One lane in follow mode: applies the log continuously, in small batches, on its own thread.

A batch goes out as soon as ``sync.batch_size`` changes are pending or the oldest of them
has waited ``sync.follow.max_delay``, whichever comes first; a lane that is behind — changes
were logged while its last batch was out — sends what is pending at once, up to
``batch_size``, so batches grow with the backlog and ``max_delay`` is waited only by a lane
that had caught up. Each batch is the same :meth:`LaneApplier.apply_next` a pass runs —
routed, conditional, committed with its offset, counters and audit entry in one
transaction — so follow mode has exactly the crash safety and fencing of passes. Only the
move of committed audit entries from the outbox to the audit file is batched: when the
lane is idle, or once every :data:`AUDIT_FLUSH_S` while it is busy (a crash in between
leaves them in the outbox, which the next start flushes). Failures count against the
lane's breaker (kept in the state file) and back off; nothing a lane does waits on another
lane.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from .breaker import breaker_state, opens_after_failure
from .dataset_pass import LaneRun
from .lane import LaneApplier
from .report import LaneReport

log = logging.getLogger("mcrepl.sync.follow")
AUDIT_FLUSH_S = 1.0
"""How long committed audit entries of a busy lane may wait in the outbox before the audit file."""


@dataclass(frozen=True)
class FollowTuning:
    """The knobs of one followed dataset (from ``sync:`` and ``sync.follow:`` in the config)."""

    batch_size: int
    max_delay_s: float
    poll_s: float
    max_backlog: int
    drain_s: float
    unresponsive_s: float
    breaker_failures: int
    breaker_reset_s: float
    heartbeat_s: float | None
    lag_window_s: float

    @classmethod
    def of(cls, config: Any, dataset: str) -> "FollowTuning":
        """The tuning of ``dataset`` under ``config``."""
        sync, follow = config.sync, config.sync.follow
        beat = config.datasets[dataset].sync.heartbeat
        return cls(sync.batch_size, follow.max_delay.total_seconds(), follow.poll_interval.total_seconds(),
                   follow.max_backlog, follow.drain_timeout.total_seconds(),
                   max(2.0, 4 * follow.poll_interval.total_seconds()), sync.breaker_failures,
                   sync.breaker_reset.total_seconds(), beat.total_seconds() if beat is not None else None,
                   follow.lag_window.total_seconds())


class LaneLoop:
    """The state of one followed lane and its :meth:`step` (called over and over by its thread).

    ``attach`` returns the lane (backfilling or reconciling its location first when its
    offset cannot be trusted) or ``None`` when that failed; it runs on the lane's own
    thread, so a location that is slow to attach holds up nothing else.
    """

    def __init__(self, dataset: str, replica: str, attach: Callable[[], LaneRun | None], state: Any,
                 clock: Any, tuning: FollowTuning, metrics: Any = None) -> None:
        self.dataset = dataset
        self.replica = replica
        self._attach = attach
        self.state = state
        self.clock = clock
        self.tuning = tuning
        self.metrics = metrics
        self.lane: LaneRun | None = None
        self.applier: LaneApplier | None = None
        self.report = LaneReport(replica)
        self.failures = 0
        self.pending_since: float | None = None
        self.busy_since: float | None = None
        self.retry_at = 0.0
        self.attempted = False         # its first attachment was tried (capture waits for that, briefly)
        self._unflushed = False        # committed batches whose audit entries are still in the outbox
        self._flushed_at = 0.0

    @property
    def offset(self) -> int:
        """The lane's committed offset as this loop knows it (-1 before it is attached)."""
        return self.lane.offset if self.lane is not None else -1

    def responsive(self, now: float) -> bool:
        """Attached, its last batch succeeded, and not stuck in a call: it counts for backpressure."""
        stuck = self.busy_since is not None and now - self.busy_since > self.tuning.unresponsive_s
        return self.lane is not None and self.failures == 0 and not stuck

    def drained(self, head: int) -> bool:
        """Whether the lane has applied everything up to ``head``."""
        return self.lane is not None and self.lane.offset >= head

    def step(self, *, draining: bool = False) -> float:
        """Apply one batch if one is due; returns how long to wait before the next step (0: at once)."""
        now = self.clock.monotonic()
        if now < self.retry_at:
            return self.retry_at - now
        if self.lane is None and not self._attach_now(now):
            return self.tuning.breaker_reset_s
        assert self.lane is not None
        head = self.state.log.head(self.dataset)
        if self.lane.offset >= head:
            self.pending_since = None
            self._flush_audit(now)
            return self.tuning.poll_s
        if self.pending_since is None:
            self.pending_since = now
        waited = now - self.pending_since
        if not draining and head - self.lane.offset < self.tuning.batch_size and waited < self.tuning.max_delay_s:
            return self.tuning.max_delay_s - waited
        return self._apply(now, head)

    def _attach_now(self, now: float) -> bool:
        try:
            self.lane = self._attach()
            self.applier = self.lane.applier() if self.lane is not None else None   # opens its adapter
            if self.applier is not None:
                self.applier.flush_audit = False        # batched here: see the module docstring
        except Exception as exc:  # noqa: BLE001 - one location's attachment never stops the others
            self.lane = self.applier = None
            self.report.last_error = f"{type(exc).__name__}: {exc}"
        self.attempted = True
        if self.lane is None:
            self.report.reason = "could not be attached (backfill or rejoin failed, or unreachable); retried"
            self.retry_at = now + self.tuning.breaker_reset_s
            return False
        self.report.add({k: v for k, v in vars(self.lane.report).items() if isinstance(v, int)
                         and k not in ("offset", "head")})
        self.report.reason = None
        # a breaker opened before this session (a pass, an earlier run) still holds
        self.failures = self.state.lanes.get(self.dataset, self.replica).breaker_failures
        return True

    def _apply(self, now: float, head: int) -> float:
        assert self.lane is not None and self.applier is not None
        row = self.state.lanes.get(self.dataset, self.replica) if self.failures else None
        if row is not None and breaker_state(row, self.clock.time(), self.tuning.breaker_reset_s) == "open":
            self._breaker("open")
            self.retry_at = now + self.tuning.breaker_reset_s
            return self.tuning.breaker_reset_s
        self.busy_since = now
        try:
            outcome = self.applier.apply_next(self.lane.offset)
        except Exception as exc:  # noqa: BLE001 - a lane failure must never stop the other lanes
            return self._failed(exc, now)
        finally:
            self.busy_since = None
        if self.report.breaker != "closed":
            self._breaker("closed")
        self.failures = 0
        self.report.last_error = None
        if outcome is None:
            return self.tuning.poll_s
        self.lane.offset = outcome.new_offset
        self.report.add(outcome.counts)
        self.report.merged += outcome.merged
        self.report.batches += 1
        self._unflushed = True
        if now - self._flushed_at >= AUDIT_FLUSH_S:
            self._flush_audit(now)
        # whatever was logged while this batch was out has waited as long as the batch took:
        # the next step sends it at once (up to batch_size) unless the batch was quicker than max_delay
        self.pending_since = now
        return 0.0

    def _flush_audit(self, now: float) -> None:
        """Move committed audit entries from the outbox to the audit file (one append, one fsync)."""
        if self._unflushed:
            self.state.audit.flush()
            self._unflushed = False
            self._flushed_at = now

    def _failed(self, exc: BaseException, now: float) -> float:
        row = self.state.lanes.get(self.dataset, self.replica)
        current = breaker_state(row, self.clock.time(), self.tuning.breaker_reset_s)
        opened = opens_after_failure(row, current, self.tuning.breaker_failures)
        message = f"{type(exc).__name__}: {exc}"
        self.state.lanes.record_failure(self.dataset, self.replica, message, opened)
        self.failures += 1
        self.report.errors += 1
        self.report.last_error = message
        log.warning("lane %s/%s batch failed (%d in a row): %s", self.dataset, self.replica, self.failures, message)
        wait = self.tuning.breaker_reset_s if opened else min(self.tuning.breaker_reset_s, 0.1 * 2 ** self.failures)
        if opened:
            self._breaker("open")
        self.retry_at = now + wait
        return wait

    def _breaker(self, state: str) -> None:
        """Record the breaker's state in the report and, with metrics, in ``/readyz`` and the state set."""
        self.report.breaker = state
        if self.metrics is not None:
            self.metrics.breaker(self.dataset, self.replica, state)
