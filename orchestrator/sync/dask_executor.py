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
from concurrent.futures import Future, ThreadPoolExecutor
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
        # results are fetched by waiter threads, each blocking on its own task: Dask runs done
        # callbacks one at a time on a single thread, where a result fetch that stalls (a worker
        # gone with the result) would hold up every other unit's completion behind it
        self._waiters = ThreadPoolExecutor(max_workers=256, thread_name_prefix="dask-unit")

    @property
    def slots(self) -> int:
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()) or self._threads)

    def submit(self, unit: Unit) -> "Future[UnitResult]":
        # a fresh key per lease: a unit leased again is a new task, never the lost one's result;
        # the waiter holds the task's Future (Dask releases a task whose Futures are all gone)
        task = self.client.submit(run_unit, unit, key=f"{type(unit).__name__}-{uuid.uuid4().hex}", pure=False)
        return self._waiters.submit(self._result, task)

    def _result(self, task: Any) -> UnitResult:
        try:
            result: UnitResult = task.result()
            return result
        except self._lost as exc:
            raise WorkerLost(f"{type(exc).__name__}: {exc}") from exc
        except BaseException as exc:
            if task.status == "cancelled":
                raise WorkerLost(f"the task was cancelled ({exc!r})") from exc
            raise

    def worker_pids(self) -> dict[str, int]:
        """Each worker's process id by address (tests kill one to prove a unit is leased again)."""
        import os
        return dict(self.client.run(os.getpid))

    def close(self) -> None:
        self._waiters.shutdown(wait=False, cancel_futures=True)
        try:
            self.client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


__all__ = ["DaskUnitExecutor"]
