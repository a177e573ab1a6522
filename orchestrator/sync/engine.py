"""The sync engine: keeps every replica of every dataset in step with its primary.

Per dataset, the primary's changes are captured once into a durable log and each
location's lane applies that log from its own offset (see :mod:`.dataset_pass`); lanes
are attached first when their offset cannot be trusted (:mod:`.attach`). Everything a
restart needs is in the :class:`~mcrepl.orchestrator.state.StateStore` — the hybrid
logical clock included — so a pass can be killed at any point and the next one resumes
with no change lost or stamped twice.

What a pass claims is in its report (:mod:`.report`): lanes *caught up*, and a dataset
*converged* only when an anti-entropy verify compared the copies during the pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import AdapterError, ConfigError, ReplicaAdapter, ReplicaTarget, Version
from mcrepl.adapters.base.pools import CONNECTIONS_OPTION
from mcrepl.orchestrator.clock import SYSTEM_CLOCK, Clock, wall_ms
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.hlc import HybridLogicalClock
from mcrepl.orchestrator.observability.sync_spans import DATASET_SPAN, PASS_SPAN, traced
from mcrepl.orchestrator.state import PrimaryPointer, StateStore
from mcrepl.policies.routing import RecordRouter, passthrough

from .antientropy import AntiEntropy, RepairPlan, anti_entropy_settings
from .attach import AttachResult, backfill, rejoin, unreconciled_epochs
from .capture import CaptureResult, PageCapturer
from .dataset_pass import DatasetPass, LaneRun, PassSettings
from .errors import SyncDeadlineExceeded
from .executor import StepExecutor, ThreadStepExecutor
from .heartbeat import HeartbeatArrivals
from .inflight import InFlightWindow
from .leasing import PassLeases, pass_partitions
from .progress import pass_progress
from .unit_adapter import UnitAdapter
from .units import Opener
from .workers import ExecutorSpec, UnitExecutor, digest_listing, open_executor
from .lane import LaneApplier
from .merge import load_merge_function
from .report import DatasetReport, LaneReport, SyncReport, VerifySummary
from .settling import Settling
from .status import lane_lag

if TYPE_CHECKING:
    from mcrepl.orchestrator.verify import Listing

log = logging.getLogger("mcrepl.sync")
AdapterFactory = Callable[[ReplicaTarget], ReplicaAdapter]
ExecutorFactory = Callable[[int, str], StepExecutor]
UnitExecutorFactory = Callable[[Opener], UnitExecutor]


class SyncEngine:
    """Runs sync passes; one instance may run many passes (``mcrepl sync --schedule``).

    ``adapter_factory`` builds the adapter for a target (default
    :func:`mcrepl.adapters.open_adapter`); ``clock`` and ``executor_factory`` (the
    coordinator's steps) are injectable so the deterministic simulation can drive the
    same code. Store calls run as work units (:mod:`.units`) on the executor ``executor``
    names (default: ``sync.executor`` of the config), or on the one
    ``unit_executor_factory`` builds (the simulation's); it starts on first use.
    """

    def __init__(self, config: McreplConfig, state: StateStore, *,
                 local_endpoints: Mapping[str, str] | None = None, namespace: str = "",
                 router: RecordRouter | None = None, metrics: Any = None, audit: Any = None,
                 progress: bool = False, adapter_factory: AdapterFactory | None = None,
                 clock: Clock = SYSTEM_CLOCK, executor_factory: ExecutorFactory | None = None,
                 executor: ExecutorSpec | None = None,
                 unit_executor_factory: UnitExecutorFactory | None = None) -> None:
        self.config = config
        self.state = state
        self.local_endpoints = local_endpoints
        self.namespace = namespace
        self.router = router or passthrough()
        self.metrics = metrics
        self.progress = progress
        self.clock = clock
        if audit is not None:
            self.state.audit.sink = audit
        self._factory = adapter_factory or open_adapter
        self._executor_factory = executor_factory or (lambda n, name: ThreadStepExecutor(n, name))
        self._adapters: dict[tuple[str, str], ReplicaAdapter] = {}
        self._unit_adapters: dict[tuple[str, str], UnitAdapter] = {}
        self.executor_spec = executor or executor_spec(config)
        self._unit_executor_factory = unit_executor_factory or (
            lambda opener: open_executor(self.executor_spec, opener))
        self._units: UnitExecutor | None = None
        self._adapter_locks: dict[tuple[str, str], threading.Lock] = {}
        self._attach_locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        # one clock for every origin, resumed from the highest reading ever committed
        self.hlc = HybridLogicalClock("mcrepl", state.load_clock(), now_ms=lambda: wall_ms(clock))
        self._seal_capture_log()
        self._stop = threading.Event()
        self.heartbeat_arrivals = HeartbeatArrivals(state, clock, metrics)
        self._record_config()

    def _seal_capture_log(self) -> None:
        """Seal the capture log's bodies of every dataset whose plaintext may not live where the
        orchestrator runs (``policies.encryption.capture_log``, ``orchestrator.location``)."""
        from mcrepl.policies.capture_log import log_cipher_for
        from mcrepl.policies.router import PolicyRouter
        router = self.router
        datakeys = (lambda: router.datakeys) if isinstance(router, PolicyRouter) else None
        for name in self.config.datasets:
            self.state.seal_bodies(name, log_cipher_for(self.config, name, datakeys))

    # -- public --------------------------------------------------------------------------

    @traced(*PASS_SPAN)
    def run_once(self, dataset: str | None = None, *, verify: bool = False) -> SyncReport:
        """One pass over ``dataset`` (or every dataset): capture, then drain every lane.

        ``verify=True`` runs the anti-entropy comparison (and its bounded repair) at the end
        of each dataset's pass; it also runs when a promotion or a rejoin asked for it.
        Lane failures are reported, not raised. Raises :class:`SyncDeadlineExceeded` (with
        the partial report) when a dataset passes ``sync.deadline``, and
        :class:`ConfigError` for an unknown dataset or a primary the state contradicts.
        """
        names = self._names(dataset)
        report = SyncReport()
        started = self.clock.monotonic()
        with pass_progress(self.progress) as bar:
            for name in names:
                if self._stop.is_set():
                    break
                try:
                    self._run_dataset(name, report, bar, verify)
                except SyncDeadlineExceeded as exc:
                    report.seconds = self.clock.monotonic() - started
                    exc.report = report
                    raise
        report.stopped = self._stop.is_set()
        report.seconds = self.clock.monotonic() - started
        self.state.audit.flush()
        return report

    def verify(self, dataset: str, *, repair: bool = True) -> DatasetReport:
        """Anti-entropy for one dataset outside a pass: compare the copies, repair within bounds."""
        name = self._names(dataset)[0]
        pointer = self.pointer(name)
        report = DatasetReport(name, pointer.location, pointer.epoch)
        self._anti_entropy(name, pointer, report, repair=repair)
        self.state.audit.flush()
        return report

    def repair(self, dataset: str, *, dry_run: bool = False) -> tuple[Any, VerifySummary]:
        """``mcrepl repair``: compare, then repair every difference (no bound), through the lanes.

        Returns the plan (what differs, where it will be written or retracted) and the
        verdict of the comparison made after delivering it (``dry_run``: nothing written).
        """
        name = self._names(dataset)[0]
        pointer = self.pointer(name)
        report = DatasetReport(name, pointer.location, pointer.epoch)
        plan = self._anti_entropy(name, pointer, report, repair=True, repair_max=None if dry_run else 10**12,
                                  dry_run=dry_run)
        self.state.audit.flush()
        assert report.verify is not None
        return plan, report.verify

    def promote(self, dataset: str, location: str, *, force: bool = False, fence: bool = True,
                verify: bool = True) -> Any:
        """Make ``location`` the primary of ``dataset``; see :func:`.promotion.promote`."""
        from .promotion import promote
        return promote(self, self._names(dataset)[0], location, force=force, fence=fence, verify=verify)

    def compare_pair(self, dataset: str, pointer: PrimaryPointer, location: str) -> tuple[VerifySummary, RepairPlan]:
        """Anti-entropy between the primary and one location only, repairing within the bound.

        Not recorded as the dataset's verify (the other replicas were not compared).
        """
        primary, replicas = self._targets(dataset, pointer)
        target = next(t for t in replicas if t.replica == location)
        adapters: dict[str, ReplicaAdapter] = {t.replica: self.unit_adapter(t) for t in (primary, target)}
        settling = self.settling(dataset, pointer)
        runner = AntiEntropy(self.config, dataset, self.state, self.router, adapters, settling,
                             anti_entropy_settings(self.config, dataset), self.clock, self._listing(adapters))
        return runner.run(repair=True, deliver=lambda: self._deliver(dataset, pointer, settling), record=False)

    def attach(self, dataset: str, location: str) -> AttachResult | None:
        """Attach ``location``'s lane now (backfill, or rejoin for a demoted primary) if it needs it.

        Passes do this on their own; drills and the failover commands call it to reconcile a
        demoted primary at a moment of their choosing. ``None`` when the lane was attached.
        """
        name = self._names(dataset)[0]
        pointer = self.pointer(name)
        primary, replicas = self._targets(name, pointer)
        target = next((t for t in replicas if t.replica == location), None)
        if target is None:
            raise ConfigError(f"{location} is not a replica of {name!r} (the primary is {pointer.location})",
                              path=f"datasets.{name}", fix="name one of its replicas")
        return self._attach(target, primary, self.settling(name, pointer), pointer)

    def request_stop(self) -> None:
        """Stop at the next batch boundary (signal handlers call this); in-flight batches commit."""
        self._stop.set()

    @property
    def stopping(self) -> threading.Event:
        """Set once a stop was requested (followers watch it too)."""
        return self._stop

    def close(self) -> None:
        """Close every adapter this engine opened and flush the audit outbox."""
        with self._lock:
            adapters, self._adapters = list(self._adapters.values()), {}
            units, self._units = self._units, None
            self._unit_adapters = {}
        if units is not None:
            with contextlib.suppress(Exception):
                units.close()
        for adapter in adapters:
            with contextlib.suppress(Exception):
                adapter.close()
        with contextlib.suppress(Exception):
            self.state.audit.flush()

    def pointer(self, name: str, *, check_config: bool = True) -> PrimaryPointer:
        """The dataset's primary, checked against the config.

        The state's pointer is authoritative (promotions move it). Editing ``primary:`` in
        the config is accepted when it names the pointer's location (the config catching up
        with a promotion) and refused otherwise, with both names and the command that moves
        a primary safely: a silent switch would capture from one place and verify another.
        """
        configured = self.config.datasets[name].primary.at
        pointer = self.state.primary(name, configured)
        key = f"configured_primary:{name}"
        before = self.state.get_meta(key) or pointer.location
        if check_config and configured != before and configured != pointer.location:
            raise ConfigError(
                f"datasets.{name}.primary was changed from {before} to {configured}, but the state file's primary "
                f"pointer says {pointer.location} (epoch {pointer.epoch})", path=f"datasets.{name}.primary",
                fix=f"move the primary with 'mcrepl failover promote {configured} --dataset {name}' (it drains "
                    f"the log into it first), or set primary back to {pointer.location}")
        if check_config and self.state.get_meta(key) != configured:
            self.state.set_meta(key, configured)
        return pointer

    # -- one dataset -----------------------------------------------------------------------

    def _names(self, dataset: str | None) -> list[str]:
        names = [dataset] if dataset else list(self.config.datasets)
        for name in names:
            if name not in self.config.datasets:
                raise ConfigError(f"unknown dataset {name!r}", path="datasets",
                                  fix=f"use one of {', '.join(self.config.datasets)}")
        return names

    def _targets(self, name: str, pointer: PrimaryPointer) -> tuple[ReplicaTarget, list[ReplicaTarget]]:
        targets = {t.replica: t for t in self.config.targets(name, self.local_endpoints, self.namespace)}
        if pointer.location not in targets:
            raise ConfigError(f"the primary pointer of {name!r} names {pointer.location}, which the "
                              "config does not list", path=f"datasets.{name}",
                              fix=f"add {pointer.location} to the dataset or fail over to a listed location")
        return targets[pointer.location], [t for r, t in targets.items() if r != pointer.location]

    def settling(self, name: str, pointer: PrimaryPointer) -> Settling:
        """How conflicts of ``name`` are settled under the current primary."""
        ds = self.config.datasets[name]
        merge_fn = load_merge_function(ds.conflict.function or "", name) if ds.conflict.resolver == "merge" else None
        decrypt = getattr(self.router, "decrypt_record", None)
        return Settling(merge_fn, self.hlc, pointer.location, pointer.epoch,
                        (lambda r: decrypt(name, r)) if decrypt else None)

    def lane_applier(self, target: ReplicaTarget, settling: Settling, *, is_primary: bool = False) -> LaneApplier:
        """The applier of ``target``'s lane (its adapter opened on first use)."""
        applier = LaneApplier(target, self.unit_adapter(target), self.state, self.router,
                              self.config.sync.batch_size, settling, is_primary=is_primary, metrics=self.metrics,
                              late_write_watch_s=self.config.sync.late_write_watch.total_seconds())
        applier.arrivals = self.heartbeat_arrivals
        return applier

    @traced(*DATASET_SPAN)
    def _run_dataset(self, name: str, report: SyncReport, bar: Any, verify: bool) -> None:
        pointer = self.pointer(name)
        primary, replicas = self._targets(name, pointer)
        self._seed_clock(name, [primary, *replicas])
        self.state.log.add_origins(name, [pointer.location])
        settling = self.settling(name, pointer)
        ds_report = DatasetReport(name, pointer.location, pointer.epoch)
        report.datasets[name] = ds_report
        leases = self._leases(name)
        refused = leases.take(pass_partitions(primary.replica, [primary.replica, *(t.replica for t in replicas)]))
        if refused is not None:
            log.warning("%s", refused)
            ds_report.capture_error = refused
            for target in replicas:
                ds_report.lanes[target.replica] = LaneReport(target.replica, reason=refused)
            return
        try:
            self._run_leased(name, pointer, primary, replicas, settling, ds_report, bar, leases)
        finally:
            leases.release()
        if verify or self.state.verify_requested(name):
            self._anti_entropy(name, pointer, ds_report, repair=True)

    def _leases(self, name: str) -> PassLeases:
        return PassLeases(self.state, name, 2 * self._pass_settings().step_timeout_s, self.clock.time)

    def _run_leased(self, name: str, pointer: PrimaryPointer, primary: ReplicaTarget, replicas: list[ReplicaTarget],
                    settling: Settling, ds_report: DatasetReport, bar: Any, leases: PassLeases) -> None:
        """The pass proper, once its leases are held: attach lanes, capture and drain, purge."""
        lanes = {primary.replica: self._primary_lane(primary, settling, pointer)}
        for target in replicas:
            lane = self._replica_lane(target, primary, settling, pointer, ds_report)
            if lane is not None:
                lanes[target.replica] = lane
        ds_report.primary_lane = lanes[primary.replica].report
        ds_report.lanes.update({r: lane.report for r, lane in lanes.items() if r != primary.replica})
        sync = self.config.sync
        run = DatasetPass(ds_report, self._capture_step(primary, pointer), lanes, self.state, self._pass_settings(),
                          self._stop, self.clock, self._executor_factory(sync.max_in_flight + 1, f"sync-{name}"),
                          self.metrics, bar, renew=leases.renew)
        try:
            run.run()
        finally:
            self._finish_dataset(name, ds_report, lanes, run.capture_done)
        self._purge_if_due(name, [primary, *replicas], ds_report, {r for r, l in lanes.items() if l.failed})

    def _seed_clock(self, name: str, targets: list[ReplicaTarget]) -> None:
        """Before a new state file stamps anything for ``name``, move its clock past every version
        the copies already hold.

        A state file keeps the clock's high-water mark; a new one (an operator starting
        over, a reversed topology) knows none, and the copies may hold versions an earlier
        orchestrator stamped with a clock that ran ahead. Versions stamped below those
        would lose last-writer-wins to older writes and read as already seen. Reading each
        copy's digests once (metadata only where the store allows) settles it; a location
        unreachable now is read on a later pass, before its lane writes anything.
        """
        started = self.state.get_meta(f"clock_seeding:{name}")
        if started is None:
            if self.state.log.head(name) > 0:
                return                    # a state file that began before this check: its clock is its own
            self.state.set_meta(f"clock_seeding:{name}", "1")
        for target in targets:
            done = f"clock_seeded:{name}:{target.replica}"
            if self.state.get_meta(done):
                continue
            try:
                for digest in self._adapter(target).list_digests():
                    if digest.version:
                        self.hlc.observe(Version.parse(digest.version))
            except AdapterError as exc:
                log.warning("could not read the versions %s holds for %s (%s): read again on the next pass",
                            target.replica, name, exc)
                continue
            with self.state.transaction():
                self.state.save_clock(self.hlc.state)
                self.state.set_meta(done, "1")

    def _primary_lane(self, primary: ReplicaTarget, settling: Settling, pointer: PrimaryPointer) -> LaneRun:
        """The primary's own lane: settlements and undrained entries only (see :mod:`.lane`)."""
        ds = primary.dataset
        if not self.state.lanes.exists(ds, primary.replica):
            # a primary with no lane yet is the source of everything logged under it
            self.state.lanes.attach(ds, primary.replica, self.state.log.head(ds), pointer.epoch)
        else:
            self.state.lanes.set_attached_epoch(ds, primary.replica, pointer.epoch)
        return LaneRun(lambda: self.lane_applier(primary, settling, is_primary=True),
                       LaneReport(primary.replica, role="primary"), self.state.lanes.get(ds, primary.replica).offset)

    def _replica_lane(self, target: ReplicaTarget, primary: ReplicaTarget, settling: Settling,
                      pointer: PrimaryPointer, ds_report: DatasetReport) -> LaneRun | None:
        """The lane of one replica, attached first when its offset cannot be trusted."""
        ds, name = target.dataset, target.replica
        try:
            attached = self._attach(target, primary, settling, pointer)
        except Exception as exc:  # noqa: BLE001 - one replica's attachment never stops the others
            log.error("attaching %s to %s failed: %s", name, ds, exc)
            ds_report.lanes[name] = LaneReport(name, last_error=f"{type(exc).__name__}: {exc}",
                                               reason="could not be attached (backfill or rejoin failed); "
                                                      "the next pass tries again")
            return None
        report = LaneReport(name)
        if attached is not None:
            report.add(attached.counts)
            report.backfilled = attached.counts.get("applied", 0)
        return LaneRun(lambda: self.lane_applier(target, settling), report, self.state.lanes.get(ds, name).offset)

    def _attach(self, target: ReplicaTarget, primary: ReplicaTarget, settling: Settling,
                pointer: PrimaryPointer) -> AttachResult | None:
        """Backfill or reconcile ``target`` when its lane cannot simply replay the log (see :mod:`.attach`)."""
        with self._lane_lock(target):
            return self._attach_locked(target, primary, settling, pointer)

    def _lane_lock(self, target: ReplicaTarget) -> threading.Lock:
        with self._lock:
            return self._attach_locks.setdefault((target.dataset, target.replica), threading.Lock())

    def _attach_locked(self, target: ReplicaTarget, primary: ReplicaTarget, settling: Settling,
                       pointer: PrimaryPointer) -> AttachResult | None:
        ds, name = target.dataset, target.replica
        horizon = self.state.log.horizon(ds)
        row = self.state.lanes.get(ds, name)
        exists = self.state.lanes.exists(ds, name)
        former = unreconciled_epochs(self.state, ds, name, pointer.epoch)
        if former:                          # a demoted primary: it may hold writes never captured
            result = rejoin(self.lane_applier(target, settling), self._adapter(primary), pointer.epoch, former)
            self.state.request_verify(ds)
            return result
        if (not exists and horizon > 0) or (exists and row.offset < horizon):
            return backfill(self.lane_applier(target, settling), self._adapter(primary), pointer.epoch)
        if not exists:
            self.state.lanes.attach(ds, name, 0, pointer.epoch)
        elif row.attached_epoch != pointer.epoch:
            self.state.lanes.set_attached_epoch(ds, name, pointer.epoch)
        return None

    def _capture_step(self, primary: ReplicaTarget, pointer: PrimaryPointer) -> Callable[[], CaptureResult]:
        replicas = [r.at for r in self.config.datasets[primary.dataset].locations if r.at != primary.replica]
        capturer = PageCapturer(primary, self.state, self.hlc, pointer.epoch, self.router, replicas,
                                settling=self.settling(primary.dataset, pointer))

        return lambda: capturer.capture_page(self.unit_adapter(primary), self.config.sync.batch_size)

    def _finish_dataset(self, name: str, ds_report: DatasetReport, lanes: dict[str, LaneRun],
                        capture_done: bool) -> None:
        head = self.state.log.head(name)
        for replica, lane in lanes.items():
            row = self.state.lanes.get(name, replica)
            rep = lane.report
            rep.offset, rep.head = row.offset, head
            if lane.failed:
                rep.last_error = rep.last_error or row.last_error
            rep.caught_up = capture_done and ds_report.capture_error is None and not lane.failed and row.offset >= head
            if rep.caught_up:
                self.state.lanes.mark_caught_up(name, replica)
            elif rep.reason is None:
                rep.reason = (f"capture did not finish: {ds_report.capture_error}" if ds_report.capture_error
                              else "stopped before the log was drained" if self._stop.is_set()
                              else f"{head - row.offset} logged changes not yet applied")
            self._lag_metric(name, replica)
        self._truncate_log(name)

    def _truncate_log(self, name: str) -> None:
        """Drop the log entries every lane of a configured location has applied.

        A lane that did not run this pass (its location down, its rejoin failed, or it is a
        demoted primary waiting to rejoin) still holds the log back, as a replication slot
        does: a later drain or promotion of that location needs those entries. Only a lane
        silent for longer than ``sync.max_replica_outage`` stops holding it; it is backfilled
        when it returns.
        """
        configured = {r.at for r in self.config.datasets[name].locations}
        oldest = self.clock.time() - self.config.sync.max_replica_outage.total_seconds()
        offsets = []
        for row in self.state.lanes.all(name):
            if row.replica not in configured:
                continue
            last_seen = max((t for t in (row.last_applied_at, row.caught_up_at) if t is not None), default=None)
            if last_seen is None or last_seen >= oldest:
                offsets.append(row.offset)
        if offsets:
            self.state.log.truncate_below(name, min(offsets))

    def _lag_metric(self, name: str, replica: str) -> None:
        if self.metrics is None:
            return
        changes, seconds = lane_lag(self.state, name, self.state.lanes.get(name, replica).offset, self.clock.time())
        self.metrics.lag(name, replica, seconds, changes)

    def _purge_if_due(self, name: str, targets: list[ReplicaTarget], ds_report: DatasetReport,
                      unreachable: set[str]) -> None:
        """Purge tombstones (and their heads) older than ``sync.tombstone_retention``, never younger ones."""
        retention = self.config.sync.tombstone_retention.total_seconds()
        now = self.clock.time()
        last = self.state.log.totals(name)["last_purge_at"]
        if last is not None and now - last < min(retention / 4, 3600.0):
            return
        older_than_ms = int((now - retention) * 1000)
        for target in targets:
            if target.replica in unreachable:
                continue
            try:
                ds_report.purged += self._adapter(target).purge_tombstones(older_than_ms)
            except Exception as exc:  # noqa: BLE001 - purging is best effort; the next pass retries
                log.warning("tombstone purge of %s at %s failed: %s", name, target.replica, exc)
        self.state.log.prune_heads(name, older_than_ms)
        self.state.mark_dataset_purged(name)

    def _anti_entropy(self, name: str, pointer: PrimaryPointer, ds_report: DatasetReport, *, repair: bool,
                      repair_max: int | None = None, dry_run: bool = False) -> Any:
        primary, replicas = self._targets(name, pointer)
        adapters: dict[str, ReplicaAdapter] = {}
        failures: dict[str, AdapterError] = {}
        for target in [primary, *replicas]:
            try:
                adapters[target.replica] = self.unit_adapter(target)
            except AdapterError as exc:
                failures[target.replica] = exc
        settling = self.settling(name, pointer)
        if not failures:
            try:
                ds_report.verify, plan = self._anti_entropy_runner(name, adapters, settling).run(
                    repair=repair, deliver=lambda: self._deliver(name, pointer, settling), repair_max=repair_max,
                    dry_run=dry_run)
                return plan
            except AdapterError as exc:
                failures[exc.replica or "?"] = exc
                adapters.pop(exc.replica or "?", None)
        # a comparison needs every copy: without one, no verdict but "no"
        failed = "; ".join(str(exc) for exc in failures.values())
        ds_report.verify = VerifySummary(False, 0, 0, 0, detail=f"could not compare the copies: {failed}")
        if repair and not dry_run and repair_max is None and pointer.location in adapters:
            self._repair_reachable(name, pointer, adapters, settling, ds_report, failures)
        return RepairPlan(name)

    def _anti_entropy_runner(self, name: str, adapters: dict[str, ReplicaAdapter], settling: Settling) -> AntiEntropy:
        return AntiEntropy(self.config, name, self.state, self.router, adapters, settling,
                           anti_entropy_settings(self.config, name), self.clock, self._listing(adapters))

    def _repair_reachable(self, name: str, pointer: PrimaryPointer, adapters: dict[str, ReplicaAdapter],
                          settling: Settling, ds_report: DatasetReport, failures: dict[str, AdapterError]) -> None:
        """Repair among the copies that answer when some do not; no verdict, the request stays.

        A forced promotion onto a location that missed log entries the log no longer holds
        leaves the new primary without versions only the other copies have; the requested
        verify is what refills it. Waiting for every location to answer would let new
        replicas be backfilled from the incomplete primary (and writes there be taken for
        successors of versions it never held) for as long as one store stays down. The copies
        that answer are compared and repaired the usual way (the primary's authority, concurrent
        versions settled and logged); the missing ones are compared when they are back, since
        nothing here records a verdict or clears the request for a full comparison.
        """
        left = dict(adapters)
        while len(left) >= 2:
            try:
                summary, _ = self._anti_entropy_runner(name, left, settling).run(
                    repair=True, deliver=lambda: self._deliver(name, pointer, settling), record=False)
            except AdapterError as exc:
                if exc.replica not in left or exc.replica == pointer.location:
                    return
                failures[exc.replica] = exc
                del left[exc.replica]
                continue
            skipped = ", ".join(sorted(failures))
            ds_report.verify = VerifySummary(
                False, summary.divergent, summary.repaired, summary.remaining, summary.withheld,
                f"could not compare {skipped} ({next(iter(failures.values()))}); {summary.repaired} keys "
                "repaired among the other copies")
            log.warning("anti-entropy of %s without %s: %d keys repaired among the other copies; the full "
                        "comparison runs when every copy answers", name, skipped, summary.repaired)
            return

    def _deliver(self, name: str, pointer: PrimaryPointer, settling: Settling) -> None:
        """Drain every lane once more without capturing (what anti-entropy appended to the log).

        Under the lanes' leases: while another coordinator drives them nothing is delivered
        here, and the comparison that follows says the copies still differ.
        """
        primary, replicas = self._targets(name, pointer)
        leases = self._leases(name)
        refused = leases.take(pass_partitions(primary.replica, [primary.replica, *(t.replica for t in replicas)])[1:])
        if refused is not None:
            log.warning("repairs of %s not delivered now: %s", name, refused)
            return
        try:
            report = DatasetReport(name, pointer.location, pointer.epoch)
            lanes = {primary.replica: self._primary_lane(primary, settling, pointer)}
            for target in replicas:
                lane = self._replica_lane(target, primary, settling, pointer, report)
                if lane is not None:
                    lanes[target.replica] = lane
            sync = self.config.sync
            DatasetPass(report, None, lanes, self.state, self._pass_settings(), self._stop, self.clock,
                        self._executor_factory(sync.max_in_flight, f"deliver-{name}"), self.metrics,
                        renew=leases.renew).run()
        finally:
            leases.release()

    def _pass_settings(self) -> PassSettings:
        sync = self.config.sync
        return PassSettings(sync.max_in_flight, sync.batch_size, sync.deadline.total_seconds(),
                            sync.breaker_failures, sync.breaker_reset.total_seconds(),
                            2 * sync.retry_deadline.total_seconds() + 10.0)

    # -- resources ---------------------------------------------------------------------------

    def adapter(self, target: ReplicaTarget) -> ReplicaAdapter:
        """The (cached, ready) adapter for ``target``; connection errors propagate to the caller."""
        return self._adapter(target)

    def unit_adapter(self, target: ReplicaTarget) -> UnitAdapter:
        """``target`` reached through work units on this engine's executor (see :mod:`.unit_adapter`).

        Its in-flight window is the lane's own and lives as long as the engine, so what a
        lane learnt about its store's capacity carries from one pass to the next.
        """
        ident = (target.dataset, target.replica)
        local = self._adapter(target)
        with self._lock:
            found = self._unit_adapters.get(ident)
            if found is not None and found.local is local:
                return found
        executor = self.unit_executor()
        view = UnitAdapter(self._with_deadline(target), local, executor,
                           InFlightWindow(self.executor_spec.max_in_flight_units))
        with self._lock:
            return self._unit_adapters.setdefault(ident, view)

    def _listing(self, adapters: Mapping[str, ReplicaAdapter]) -> "Listing":
        """Every location's digest ranges read as digest units on this engine's executor."""
        return digest_listing(self.unit_executor(), {n: a.target for n, a in adapters.items()})

    def unit_executor(self) -> UnitExecutor:
        """The executor of this engine's work units, started on first use (a Dask cluster takes seconds)."""
        with self._lock:
            if self._units is None:
                self._units = self._unit_executor_factory(self._open_for_unit)
                # every request of a unit is bounded by the retry deadline; a unit unanswered well
                # past it is on a worker that died or hangs, and is leased again
                self._units.lease_s = self.config.sync.retry_deadline.total_seconds() + 5.0
            return self._units

    def _open_for_unit(self, target: ReplicaTarget) -> ReplicaAdapter:
        """What a unit run in this process talks to: the engine's own adapter of its location."""
        return self._adapter(target)

    def _with_deadline(self, target: ReplicaTarget) -> ReplicaTarget:
        """``target`` with ``sync.retry_deadline`` and the connections to pool in its options (every client
        opened for it, here or on a worker, honours both)."""
        options = {**target.options, "retry_deadline_s": self.config.sync.retry_deadline.total_seconds(),
                   # write units of a lane at once, each fanning out over the adapter's threads
                   CONNECTIONS_OPTION: self.executor_spec.max_in_flight_units * 8}
        return dataclasses.replace(target, options=options)

    def _adapter(self, target: ReplicaTarget) -> ReplicaAdapter:
        ident = (target.dataset, target.replica)
        with self._lock:
            if ident in self._adapters:
                return self._adapters[ident]
            guard = self._adapter_locks.setdefault(ident, threading.Lock())
        with guard:
            with self._lock:
                if ident in self._adapters:
                    return self._adapters[ident]
            adapter = self._factory(self._with_deadline(target))
            adapter.ensure_ready()
            with self._lock:
                self._adapters[ident] = adapter
            return adapter

    def _record_config(self) -> None:
        """Audit a configuration change: the hash of the effective config when it differs from the last run."""
        digest = hashlib.sha256(self.config.model_dump_json().encode()).hexdigest()
        previous = self.state.get_meta("config_sha256")
        if previous == digest:
            return
        with self.state.transaction():
            self.state.audit.add("config", {"sha256": digest, "previous_sha256": previous})
            self.state.set_meta("config_sha256", digest)
        self.state.audit.flush()


def executor_spec(config: McreplConfig) -> ExecutorSpec:
    """The executor the config's ``sync.executor`` names."""
    ex = config.sync.executor
    return ExecutorSpec(ex.kind, ex.workers, ex.threads_per_worker, ex.scheduler, max_in_flight_units=ex.max_in_flight_units)


__all__ = ["AdapterFactory", "ExecutorFactory", "SyncEngine", "UnitExecutorFactory", "executor_spec"]
