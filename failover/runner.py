"""Run a drill: build the topology, check the steady state, run the method, always roll back,
wait for convergence, judge the history and write the report.

``run_drill(spec, endpoints, report_dir)`` is the library entry point the CLI, the demo
and the tests share. Order, as in Chaos Toolkit: steady state before → method → steady
state after → rollbacks (always, then "heal every fault, stop every writer" whatever the
file says) → convergence check → findings → report.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mcrepl.adapters import adapter_class
from mcrepl.adapters.base import ReplicaAdapter
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine

from . import operations
from .background import LagSampler, SyncLoop
from .checker import Convergence, RpoSnapshot, analyse, rpo_snapshot, wait_converged
from .guard import Fences, GuardedAdapter, guarded_factory
from .history import History
from .probes import check_steady_state
from .router import Clocks, WriteRouter
from .spec import (DrillSpec, Failback, Fault, Flap, Heal, Promote, Rejoin, StaleWriter, StartWorkload, StopWorkload,
                   Wait, WaitReplicated)
from .topology import DrillTopology
from .workload import Workload

log = logging.getLogger("mcrepl.failover")


@dataclass
class DrillOutcome:
    """What :func:`run_drill` hands back: the report dict and where it was written."""

    report: dict[str, Any]
    report_dir: Path
    passed: bool
    html_path: Path
    json_path: Path


@dataclass
class _Run:
    """Mutable state of one run, shared by the step handlers."""

    spec: DrillSpec
    topo: DrillTopology
    state: StateStore
    history: History
    fences: Fences
    routers: dict[str, GuardedAdapter]
    router: WriteRouter
    workload: Workload
    clocks: Clocks
    sync: SyncLoop
    sampler: LagSampler
    direct: dict[str, ReplicaAdapter]
    down: set[str] = field(default_factory=set)
    paused: threading.Event = field(default_factory=threading.Event)
    snapshots: list[RpoSnapshot] = field(default_factory=list)
    first_fault_at: float | None = None
    epochs_of: dict[str, int] = field(default_factory=dict)
    reconciled: list[dict[str, Any]] = field(default_factory=list)
    step_log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dataset(self) -> str:
        return self.topo.dataset

    def pointer(self) -> tuple[str, int]:
        p = self.state.primary(self.dataset, self.spec.topology.primary)
        return p.location, p.epoch


def run_drill(spec: DrillSpec, endpoints: Mapping[str, str], report_dir: str | Path) -> DrillOutcome:
    """Run ``spec`` against the emulators at ``endpoints``; write ``report.json`` and ``report.html``."""
    from .report import build_report, write_report

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    for stale in (*report_dir.glob("history.sqlite*"), *report_dir.glob("state.sqlite*")):
        stale.unlink()                      # a report directory holds one run: never mix two histories
    history = History(report_dir / "history.sqlite")
    topo = DrillTopology(spec, endpoints, str(report_dir / "state"))
    started = time.time()
    run: _Run | None = None
    error: str | None = None
    steady: dict[str, Any] = {}
    convergence = Convergence(None, None, 0)
    healed_at: float | None = None
    final: dict[str, Any] = {}
    losers: set[str] = set()
    try:
        run = _prepare(spec, topo, history, report_dir)
        history.event("start", title=spec.title)
        steady["before"] = check_steady_state(run, spec.steady_state.probes)
        try:
            for i, step in enumerate(spec.method):
                _do_step(run, step, i)
            _rejoin_demoted(run)
            steady["after"] = check_steady_state(run, spec.steady_state.probes)
        except Exception as exc:  # noqa: BLE001 - the drill reports a failed step; rollbacks still run
            error = f"{type(exc).__name__}: {exc}"
            log.error("drill step failed: %s\n%s", error, traceback.format_exc())
            history.event("error", message=error)
        finally:
            _rollback(run)
        healed_at = history.event("healed")
        convergence = wait_converged(topo.dataset, lambda: _ordered_direct(run), spec.convergence_deadline
                                     .total_seconds())
        history.event("converged" if convergence.converged_at else "not_converged")
        run.sync.stop()
        run.sampler.stop()
        final = _final_records(run)
        losers = _conflict_losers(run)
    finally:
        if run is not None:
            _shutdown(run)
        topo.close()
    findings = analyse(history.ops(), final, run.snapshots if run else [], run.first_fault_at if run else None,
                       convergence, healed_at, conflict_losers=losers)
    report = build_report(spec, topo, history, findings, steady, run.reconciled if run else [],
                          run.step_log if run else [], error, started)
    history.close()
    json_path, html_path = write_report(report, report_dir)
    return DrillOutcome(report, report_dir, bool(report["passed"]), html_path, json_path)


def _prepare(spec: DrillSpec, topo: DrillTopology, history: History, report_dir: Path) -> _Run:
    state = StateStore(report_dir / "state.sqlite")
    fences = Fences()
    timeout_s = spec.workload.write_timeout.total_seconds()
    direct = {loc: topo.open_direct(loc) for loc in topo.locations}      # creates the resources
    routers = {loc: GuardedAdapter(adapter_class(loc.split(":")[0])(topo.target(loc)), fences, timeout_s)
               for loc in topo.locations}
    clocks = Clocks()
    down: set[str] = set()
    paused = threading.Event()
    router = WriteRouter("app", topo.dataset, spec.topology.primary, state, routers, history,
                         topo.config.datasets[topo.dataset].key_schema(), clocks, fencing=spec.fencing,
                         ack=spec.workload.ack, down=lambda: set(down), paused=paused.is_set)
    engine = SyncEngine(topo.config, state, namespace=topo.namespace,
                        adapter_factory=guarded_factory(lambda t: adapter_class(t.provider)(t), fences,
                                                        max(timeout_s, 3.0)))
    sync = SyncLoop(engine, topo.dataset, spec.topology.sync_interval.total_seconds())
    sampler = LagSampler(state, topo.dataset, spec.topology.primary, topo.locations, history)
    run = _Run(spec, topo, state, history, fences, routers, router, Workload(spec.workload, router), clocks,
               sync, sampler, direct, down, paused)
    run.epochs_of[spec.topology.primary] = run.pointer()[1]
    sync.start()
    sampler.start()
    return run


def _ordered_direct(run: _Run) -> dict[str, ReplicaAdapter]:
    primary, _ = run.pointer()
    return {primary: run.direct[primary], **{k: v for k, v in run.direct.items() if k != primary}}


def _do_step(run: _Run, step: Any, index: int) -> None:
    label = step.label or step.action
    t0 = time.time()
    run.history.event("step", index=index, action=step.action, label=label)
    handler = _HANDLERS[type(step)]
    handler(run, step)
    run.step_log.append({"index": index, "action": step.action, "label": label,
                         "seconds": round(time.time() - t0, 3)})


def _start(run: _Run, step: StartWorkload) -> None:
    run.workload.start()


def _stop(run: _Run, step: StopWorkload) -> None:
    run.workload.stop()


def _wait(run: _Run, step: Wait) -> None:
    time.sleep(step.duration.total_seconds())


def _wait_replicated(run: _Run, step: WaitReplicated, only: set[str] | None = None) -> None:
    since = time.time()
    primary, _ = run.pointer()
    wanted = only or {loc for loc in run.topo.locations if loc != primary and loc not in run.down}
    end = time.monotonic() + step.timeout.total_seconds()
    while not run.sync.drained_since(since, wanted):
        if time.monotonic() > end:
            raise TimeoutError(f"replication to {', '.join(sorted(wanted))} did not drain within "
                               f"{step.timeout.total_seconds():g}s (raise the step's timeout)")
        time.sleep(0.1)


def _fault(run: _Run, step: Fault | Flap, heal: bool = False) -> None:
    if heal:
        _heal(run, Heal(action="heal", location=step.location))
        return
    if step.mode == "fence":
        run.fences.fence(step.location)
    else:
        delay = step.delay.total_seconds() if isinstance(step, Fault) and step.delay else 0.0
        run.topo.set_proxy(step.location, step.mode, delay)
    run.down.add(step.location)
    at = run.history.event("fault", location=step.location, mode=step.mode)
    run.first_fault_at = run.first_fault_at or at


def _flap(run: _Run, step: Flap) -> None:
    half = step.period.total_seconds()
    for _ in range(step.count):
        _fault(run, step)
        time.sleep(half)
        _fault(run, step, heal=True)
        time.sleep(half)


def _heal(run: _Run, step: Heal) -> None:
    run.fences.unfence(step.location)
    if run.topo.proxies:
        run.topo.heal_proxies(step.location)
    if step.location is None:
        run.down.clear()
    else:
        run.down.discard(step.location)
    run.history.event("heal", location=step.location or "all")


def _promote(run: _Run, step: Promote) -> None:
    """The production promotion (:func:`.operations.promote`, as ``mcrepl failover promote --force``), then the
    RPO it left."""
    old, old_epoch = run.pointer()
    result = operations.promote(run.sync.engine, run.dataset, step.location, force=True, fence=run.spec.fencing,
                                publish_epoch=False)
    at = time.time()
    records = _read_keys(run.direct[step.location], run)
    snap = rpo_snapshot(run.history.ops(), step.location, records, at, run.first_fault_at)
    run.epochs_of[old] = old_epoch
    run.epochs_of[step.location] = result.epoch
    run.snapshots.append(snap)
    promotion = result.promotion or {}
    run.history.event("promote", location=step.location, epoch=result.epoch, previous=old,
                      rpo_count=len(snap.missing), drained=promotion.get("drained", 0),
                      undrained=promotion.get("undrained", 0), fenced=run.spec.fencing)


def _failback(run: _Run, step: Failback) -> None:
    """Planned failback: catch up, pause writes, drain, reconcile, switch, resume, reconcile again.

    Writes pause (fail fast) only for the switch itself. The first reconciliation resolves
    the original primary's unreplicated writes against the current primary; the second
    catches anything that still reached the demoted location around the switch.
    """
    original = run.spec.topology.primary
    current, epoch = run.pointer()
    if current == original:
        raise RuntimeError(f"failback: {original} is already the primary; promote another location first")
    _wait_replicated(run, WaitReplicated(action="wait_replicated", timeout=step.timeout), only={original})
    run.paused.set()                         # writes fail fast during the switch (seconds)
    try:
        time.sleep(run.spec.workload.write_timeout.total_seconds())   # in-flight writes settle
        _wait_replicated(run, WaitReplicated(action="wait_replicated", timeout=step.timeout), only={original})
        _reconcile(run, original)
        result = operations.promote(run.sync.engine, run.dataset, original, force=True, fence=run.spec.fencing,
                                    publish_epoch=False)
    finally:
        run.paused.clear()
    run.epochs_of[current], run.epochs_of[original] = epoch, result.epoch
    run.history.event("failback", location=original, epoch=result.epoch)
    _reconcile(run, current)


def _rejoin(run: _Run, step: Rejoin, automatic: bool = False) -> None:
    current, epoch = run.pointer()
    if step.location == current:
        raise RuntimeError(f"rejoin: {step.location} is the primary; rejoin a demoted location")
    _wait_replicated(run, WaitReplicated(action="wait_replicated", timeout=step.timeout), only={step.location})
    _reconcile(run, step.location)
    # marked when it has happened (caught up and reconciled), not when it was asked for
    run.history.event("rejoin", location=step.location, automatic=automatic)


def _rejoin_demoted(run: _Run) -> None:
    """With fencing on, every demoted primary that is reachable again rejoins as a replica.

    A write in flight when its primary was cut off can land after the heal, on a location
    that is no longer captured from; only reconciling that location finds it. That is safe
    only with fencing: the demotion record is what tells such a late pre-demotion write
    (recovered) from a zombie write made after the demotion (refused). Without fencing the
    two cannot be told apart, so the divergence is left for the checker to report. Drills
    that rejoin or fail back explicitly find nothing left to do here.
    """
    if not run.spec.fencing:
        return
    current, _ = run.pointer()
    for location in sorted(run.epochs_of):
        if location != current and location not in run.down:
            _rejoin(run, Rejoin(action="rejoin", location=location, label="automatic rejoin"), automatic=True)


def _reconcile(run: _Run, old: str) -> None:
    """The production rejoin of a demoted primary (see ``mcrepl.orchestrator.sync.attach``), now."""
    current, _ = run.pointer()
    result = operations.reconcile(run.sync.engine, run.dataset, old)
    if result["status"] == "already":
        return                              # a pass already reconciled it
    run.reconciled.append({"from": old, "into": current, "recovered": result["recovered"],
                           "missing": result["missing"], "writes": result["writes"]})
    run.history.event("reconcile", into=current, recovered=result["recovered"], missing=result["missing"])


def _stale_writer(run: _Run, step: StaleWriter) -> None:
    current, _ = run.pointer()
    epoch = run.epochs_of.get(step.location, 0) if step.location != current else run.pointer()[1]
    adapters = {step.location: run.direct[step.location]}
    router = WriteRouter("stale", run.dataset, run.spec.topology.primary, run.state, adapters, run.history,
                         run.topo.config.datasets[run.dataset].key_schema(), run.clocks,
                         fencing=run.spec.fencing, ack="primary", pinned=(step.location, epoch))
    spec = run.spec.workload.model_copy(update={"seed": run.spec.workload.seed + 1000, "insert": 0.5,
                                                "update": 0.5, "delete": 0.0})
    zombie = Workload(spec, router)
    statuses = [zombie.step() for _ in range(step.ops)]
    run.history.event("stale_writer", location=step.location, epoch=epoch,
                      landed=statuses.count("ok"), fenced=statuses.count("fenced"))


_HANDLERS: dict[type, Callable[[_Run, Any], None]] = {
    StartWorkload: _start, StopWorkload: _stop, Wait: _wait, WaitReplicated: _wait_replicated,
    Fault: _fault, Flap: _flap, Heal: _heal, Promote: _promote, Failback: _failback, Rejoin: _rejoin,
    StaleWriter: _stale_writer}


def _rollback(run: _Run) -> None:
    """The declared rollbacks, then heal every fault and stop the workload, whatever happened."""
    for step in run.spec.rollbacks:
        try:
            _HANDLERS[type(step)](run, step)
        except Exception as exc:  # noqa: BLE001 - the implicit rollback below still runs
            log.error("rollback %s failed: %s", step.action, exc)
    _heal(run, Heal(action="heal"))
    run.workload.stop()
    run.history.event("rollback")


def _conflict_losers(run: _Run) -> set[str]:
    """Version tokens whose content a last-writer-wins settlement discarded (from the conflict log)."""
    losers = set()
    for row in run.state.journal.conflicts(run.dataset, limit=100_000):
        if row["resolver"] != "lww":
            continue
        for side in (row["incoming"]["v"], row["stored"]["v"]):
            if side != row["winner"]:
                losers.add(side)
    return losers


def _read_keys(adapter: ReplicaAdapter, run: _Run) -> dict[str, Any]:
    schema = run.topo.config.datasets[run.dataset].key_schema()
    keys = sorted({op.key for op in run.history.ops()})
    return {k: adapter.read(schema.parse_id(k)) for k in keys}


def _final_records(run: _Run) -> dict[str, Any]:
    primary, _ = run.pointer()
    return _read_keys(run.direct[primary], run)


def _shutdown(run: _Run) -> None:
    for stopper in (run.workload.stop, run.sync.stop, run.sampler.stop, run.sync.engine.close):
        try:
            stopper()
        except Exception as exc:  # noqa: BLE001 - shutting down: log and go on
            log.debug("shutdown step failed: %s", exc)
    for adapter in run.routers.values():
        adapter.close()
    run.state.close()
