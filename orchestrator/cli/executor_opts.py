"""``--executor``, ``--workers``, ``--scheduler``: where the work units of a command run.

They override ``sync.executor`` of the config for one run (see
:class:`mcrepl.orchestrator.config.ExecutorSettings`); ``--scheduler`` alone implies
``--executor dask``.
"""

from __future__ import annotations

from typing import Optional

import typer
from pydantic import ValidationError

from mcrepl.orchestrator.config import ExecutorSettings, McreplConfig

from .common import EXIT_INPUT, fail

ExecutorOpt = typer.Option(None, "--executor", help="Where work units run: threads (default), processes, or dask "
                           "(the dask extra of mcrepl). Overrides sync.executor.kind.")
WorkersOpt = typer.Option(None, "--workers", min=1, help="Worker processes (processes, dask: a local cluster of N); "
                          "with threads, N x sync.executor.threads_per_worker threads.")
SchedulerOpt = typer.Option(None, "--scheduler", help="Join an existing Dask cluster at this address "
                            "(tcp://HOST:8786) instead of starting one; implies --executor dask.")


def with_executor(config: McreplConfig, executor: Optional[str], workers: Optional[int],
                  scheduler: Optional[str]) -> McreplConfig:
    """``config`` with the command line's executor choices applied (exit 2 on a bad one)."""
    if executor is None and workers is None and scheduler is None:
        return config
    current = config.sync.executor.model_dump()
    if scheduler is not None:
        if executor not in (None, "dask"):
            fail(f"--scheduler joins a Dask cluster; it cannot be used with --executor {executor}", EXIT_INPUT)
        current.update(kind="dask", scheduler=scheduler)
    if executor is not None:
        current["kind"] = executor
    if workers is not None:
        current["workers"] = workers
    try:
        settings = ExecutorSettings.model_validate(current)
    except ValidationError as exc:
        fail(f"sync.executor: {exc.errors()[0]['msg']} (--executor threads|processes|dask, --scheduler tcp://HOST:PORT)",
             EXIT_INPUT)
    return config.model_copy(update={"sync": config.sync.model_copy(update={"executor": settings})})


__all__ = ["ExecutorOpt", "SchedulerOpt", "WorkersOpt", "with_executor"]
