"""Units on Dask distributed: a local cluster of worker processes, or an existing scheduler.

Kept apart from :mod:`.workers` so that importing the engine never imports Dask; the
``dask`` extra (``pip install 'mcrepl[dask]'``) brings it. A worker process of the
cluster needs mcrepl installed (the same version) and reaches the stores itself: units
carry target descriptions, the worker opens its own clients once (see :mod:`.units`).

Dask reschedules a task whose worker left the cluster; a unit whose worker kept dying
(``KilledWorker``) or whose result was lost with its worker is failed with
:class:`~.workers.WorkerLost`, and the coordinator leases it again.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future
from typing import Any

from mcrepl.adapters.base import ConfigError

from .units import Unit, UnitResult, run_unit
from .workers import ExecutorSpec, UnitExecutor, WorkerLost

log = logging.getLogger("mcrepl.sync.workers")


def _distributed() -> Any:
    try:
        import distributed
    except ModuleNotFoundError as exc:
        raise ConfigError("the dask executor needs Dask distributed, which is not installed",
                          path="sync.executor.kind", fix="pip install 'mcrepl[dask]'") from exc
    return distributed


class DaskUnitExecutor(UnitExecutor):
    """Units as Dask tasks; ``spec.scheduler`` joins a cluster, else one of ``spec.workers`` processes starts."""

    kind = "dask"

    def __init__(self, spec: ExecutorSpec) -> None:
        super().__init__(spec.attempts)
        distributed = _distributed()
        self._lost = (distributed.KilledWorker, distributed.comm.core.CommClosedError)
        self._cluster: Any = None
        if spec.scheduler:
            self.client = distributed.Client(spec.scheduler, set_as_default=False)
        else:
            # worker processes (not threads): units run beside their own clients, and one
            # dying takes only its own units with it
            self._cluster = distributed.LocalCluster(
                n_workers=max(1, spec.workers), threads_per_worker=max(1, spec.threads_per_worker),
                processes=True, dashboard_address=None, silence_logs=logging.WARNING)
            self.client = distributed.Client(self._cluster, set_as_default=False)
        self._threads = max(1, spec.threads_per_worker)
        # Dask releases a task whose last Future is garbage collected (and may cancel it): every
        # submitted task is held here until its result has been handed over
        self._pending: dict[str, Any] = {}

    @property
    def slots(self) -> int:
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()) or self._threads)

    def submit(self, unit: Unit) -> "Future[UnitResult]":
        outer: Future[UnitResult] = Future()
        # a fresh key per lease: a unit leased again is a new task, never the lost one's result
        key = f"{type(unit).__name__}-{uuid.uuid4().hex}"
        with self._lock:
            self._pending[key] = task = self.client.submit(run_unit, unit, key=key, pure=False)

        def done(f: Any) -> None:
            with self._lock:
                self._pending.pop(key, None)
            try:
                outer.set_result(f.result())
            except self._lost as exc:
                outer.set_exception(WorkerLost(f"{type(exc).__name__}: {exc}"))
            except BaseException as exc:  # noqa: BLE001 - the unit's own error, for the caller
                if f.status == "cancelled":
                    outer.set_exception(WorkerLost(f"the task was cancelled ({exc!r})"))
                else:
                    outer.set_exception(exc)
        task.add_done_callback(done)
        return outer

    def worker_pids(self) -> dict[str, int]:
        """Each worker's process id by address (tests kill one to prove a unit is leased again)."""
        import os
        return dict(self.client.run(os.getpid))

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


__all__ = ["DaskUnitExecutor"]
