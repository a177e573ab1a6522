"""The sync engine: keeps every replica of every dataset converged with its primary.

Per dataset, the primary's changes are captured once into a durable log and each
replica lane applies that log from its own offset (see :mod:`.dataset_pass`). Everything
a restart needs is in the :class:`~mcrepl.orchestrator.state.StateStore`, so a pass can
be killed at any point and the next one resumes with no change lost or stamped twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import threading
import time
from typing import Any, Callable, Iterator, Mapping

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import ConfigError, ReplicaAdapter, ReplicaTarget
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.hlc import HybridLogicalClock
from mcrepl.orchestrator.observability.sync_spans import DATASET_SPAN, PASS_SPAN, traced
from mcrepl.orchestrator.state import StateStore
from mcrepl.policies.routing import RecordRouter, passthrough

from .backfill import backfill, needs_backfill
from .capture import PageCapturer
from .dataset_pass import DatasetPass, LaneRun, PassSettings
from .errors import SyncDeadlineExceeded
from .lane import LaneApplier, MergeContext
from .merge import load_merge_function
from .report import DatasetReport, LaneReport, SyncReport

log = logging.getLogger("mcrepl.sync")
AdapterFactory = Callable[[ReplicaTarget], ReplicaAdapter]


class SyncEngine:
    """Runs sync passes; one instance may run many passes (``mcrepl sync --schedule``).

    ``adapter_factory`` builds the adapter for a target; the default is
    :func:`mcrepl.adapters.open_adapter`. Tests pass a factory returning the in-memory
    reference adapter (config files only name real providers).
    """

    def __init__(self, config: McreplConfig, state: StateStore, *,
                 local_endpoints: Mapping[str, str] | None = None, namespace: str = "",
                 router: RecordRouter | None = None, metrics: Any = None, audit: Any = None,
                 progress: bool = False, adapter_factory: AdapterFactory | None = None) -> None:
        self.config = config
        self.state = state
        self.local_endpoints = local_endpoints
        self.namespace = namespace
        self.router = router or passthrough()
        self.metrics = metrics
        self.audit = audit
        self.progress = progress
        self._factory = adapter_factory or open_adapter
        self._adapters: dict[tuple[str, str], ReplicaAdapter] = {}
        self._adapter_locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self._clocks: dict[str, HybridLogicalClock] = {}
        self._stop = threading.Event()
        self._record_config()

    # -- public --------------------------------------------------------------------------

    @traced(*PASS_SPAN)
    def run_once(self, dataset: str | None = None) -> SyncReport:
        """One pass over ``dataset`` (or every dataset): capture, then drain every lane.

        Lane failures are reported, not raised. Raises :class:`SyncDeadlineExceeded` (with
        the partial report) when a dataset passes ``sync.deadline``, and
        :class:`ConfigError` for an unknown dataset.
        """
        names = [dataset] if dataset else list(self.config.datasets)
        for name in names:
            if name not in self.config.datasets:
                raise ConfigError(f"unknown dataset {name!r}", path="datasets",
                                  fix=f"use one of {', '.join(self.config.datasets)}")
        report = SyncReport()
        started = time.monotonic()
        with self._progress_bar() as bar:
            for name in names:
                if self._stop.is_set():
                    break
                try:
                    self._run_dataset(name, report, bar)
                except SyncDeadlineExceeded as exc:
                    report.seconds = time.monotonic() - started
                    exc.report = report
                    raise
        report.stopped = self._stop.is_set()
        report.seconds = time.monotonic() - started
        return report

    def request_stop(self) -> None:
        """Stop at the next batch boundary (signal handlers call this); in-flight batches commit."""
        self._stop.set()

    def close(self) -> None:
        """Close every adapter this engine opened."""
        with self._lock:
            adapters, self._adapters = list(self._adapters.values()), {}
        for adapter in adapters:
            with contextlib.suppress(Exception):
                adapter.close()

    # -- one dataset -----------------------------------------------------------------------

    @traced(*DATASET_SPAN)
    def _run_dataset(self, name: str, report: SyncReport, bar: Any) -> None:
        ds = self.config.datasets[name]
        pointer = self.state.primary(name, ds.primary.at)
        targets = {t.replica: t for t in self.config.targets(name, self.local_endpoints, self.namespace)}
        if pointer.location not in targets:
            raise ConfigError(f"the primary pointer of {name!r} names {pointer.location}, which the "
                              "config does not list", path=f"datasets.{name}",
                              fix=f"add {pointer.location} to the dataset or fail over to a listed location")
        primary = targets[pointer.location]
        replicas = [t for r, t in targets.items() if r != pointer.location]
        clock = self._clock(pointer.location)
        sync = self.config.sync
        merge_fn = load_merge_function(ds.conflict.function or "", name) if ds.conflict.resolver == "merge" else None
        merge = MergeContext(merge_fn, clock, pointer.epoch, lambda: self._adapter(primary))
        ds_report = DatasetReport(name, pointer.location, pointer.epoch)
        report.datasets[name] = ds_report
        unready = self._backfill_new_lanes(name, primary, replicas)
        lanes = {t.replica: LaneRun(self._applier_factory(t, merge), LaneReport(t.replica),
                                    self.state.lanes.get(name, t.replica).offset)
                 for t in replicas if t.replica not in unready}
        ds_report.lanes = {replica: lane.report for replica, lane in lanes.items()} | unready
        settings = PassSettings(sync.max_in_flight, sync.batch_size, sync.deadline.total_seconds(),
                                sync.breaker_failures, sync.breaker_reset.total_seconds())
        capturer = lambda: PageCapturer(primary, self._adapter(primary), self.state, clock,  # noqa: E731
                                        pointer.epoch, sync.batch_size)
        run = DatasetPass(ds_report, capturer, lanes, self.state, settings, self._stop, self.metrics, bar)
        try:
            run.run()
        finally:
            self._finish_dataset(name, ds_report, lanes, run.capture_done)
        self._purge_if_due(name, [primary, *replicas], ds_report, {r for r, l in lanes.items() if l.failed})

    def _backfill_new_lanes(self, name: str, primary: ReplicaTarget,
                            replicas: list[ReplicaTarget]) -> dict[str, LaneReport]:
        """Backfill replicas added after capture began; those that could not be sit this pass out."""
        unready: dict[str, LaneReport] = {}
        for target in replicas:
            if not needs_backfill(self.state, name, target.replica):
                continue
            try:
                done = backfill(name, self._adapter(primary), self._adapter(target), self.state, self.router,
                                self.config.sync.batch_size)
            except Exception as exc:  # noqa: BLE001 - one replica's backfill never stops the others
                log.error("backfill of %s at %s failed: %s", name, target.replica, exc)
                unready[target.replica] = LaneReport(target.replica, last_error=f"backfill failed: {exc}")
                continue
            if self.audit is not None:
                self.audit.append("backfill", {"dataset": name, "replica": target.replica, **done.counts,
                                               "start_offset": done.start_offset})
        return unready

    def _applier_factory(self, target: ReplicaTarget, merge: MergeContext) -> Callable[[], LaneApplier]:
        def make() -> LaneApplier:
            return LaneApplier(target, self._adapter(target), self.state, self.router,
                               self.config.sync.batch_size, merge, self.metrics, self.audit)
        return make

    def _finish_dataset(self, name: str, ds_report: DatasetReport, lanes: dict[str, LaneRun],
                        capture_done: bool) -> None:
        head = self.state.log.head(name)
        now = time.time()
        for replica, lane in lanes.items():
            row = self.state.lanes.get(name, replica)
            lane.report.offset, lane.report.head = row.offset, head
            lane.report.converged = (capture_done and not lane.failed and row.offset >= head
                                     and ds_report.capture_error is None)
            if lane.failed:
                lane.report.last_error = lane.report.last_error or row.last_error
            if self.metrics is not None:
                oldest = self.state.log.oldest_captured_at(name, row.offset)
                self.metrics.lag(name, replica, now - oldest if oldest else 0.0, max(head - row.offset, 0))
        offsets = [self.state.lanes.get(name, r).offset for r in lanes]
        if offsets:
            self.state.log.truncate_below(name, min(offsets))

    def _purge_if_due(self, name: str, targets: list[ReplicaTarget], ds_report: DatasetReport,
                      unreachable: set[str]) -> None:
        """Purge tombstones older than ``sync.tombstone_retention`` (never younger ones)."""
        retention = self.config.sync.tombstone_retention.total_seconds()
        last = self.state.log.totals(name)["last_purge_at"]
        if last is not None and time.time() - last < min(retention / 4, 3600.0):
            return
        older_than_ms = int((time.time() - retention) * 1000)
        for target in targets:
            if target.replica in unreachable:
                continue
            try:
                ds_report.purged += self._adapter(target).purge_tombstones(older_than_ms)
            except Exception as exc:  # noqa: BLE001 - purging is best effort; the next pass retries
                log.warning("tombstone purge of %s at %s failed: %s", name, target.replica, exc)
        self.state.mark_dataset_purged(name)

    # -- resources ---------------------------------------------------------------------------

    def _adapter(self, target: ReplicaTarget) -> ReplicaAdapter:
        """The (cached, ready) adapter for ``target``; connection errors propagate to the caller's lane."""
        ident = (target.dataset, target.replica)
        with self._lock:
            if ident in self._adapters:
                return self._adapters[ident]
            guard = self._adapter_locks.setdefault(ident, threading.Lock())
        with guard:
            with self._lock:
                if ident in self._adapters:
                    return self._adapters[ident]
            options = {**target.options, "retry_deadline_s": self.config.sync.retry_deadline.total_seconds()}
            adapter = self._factory(dataclasses.replace(target, options=options))
            adapter.ensure_ready()
            with self._lock:
                self._adapters[ident] = adapter
            return adapter

    def _clock(self, origin: str) -> HybridLogicalClock:
        with self._lock:
            if origin not in self._clocks:
                self._clocks[origin] = HybridLogicalClock(origin, self.state.load_clock(origin))
            return self._clocks[origin]

    @contextlib.contextmanager
    def _progress_bar(self) -> Iterator[Any]:
        if not self.progress:
            yield None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), transient=False) as bar:
            yield bar

    def _record_config(self) -> None:
        """Audit a configuration change: the hash of the effective config when it differs from the last run."""
        digest = hashlib.sha256(self.config.model_dump_json().encode()).hexdigest()
        previous = self.state.get_meta("config_sha256")
        if previous == digest:
            return
        if self.audit is not None:
            self.audit.append("config", {"sha256": digest, "previous_sha256": previous})
        self.state.set_meta("config_sha256", digest)
