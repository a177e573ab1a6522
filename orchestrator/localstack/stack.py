"""Run a set of emulators as one stack: in parallel, on free loopback ports, torn down together.

The same class serves the pytest fixtures (an owned stack in a temporary directory,
stopped at session end) and ``mcrepl local up`` (a stack left running, described in
``endpoints.json`` so ``local down`` can stop it from another process).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from . import process
from .errors import LocalStackError
from .process import ProcessRef
from .services import HOST, SERVICE_NAMES, SERVICES, LaunchContext, Service, repo_root

_PORT_RETRIES = 3  # another program may grab the port between picking and binding it


@dataclass
class RunningService:
    """One emulator of a started stack (``ref`` is ``None`` for an external endpoint)."""

    name: str
    endpoint: str
    ref: ProcessRef | None = None
    log_file: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def external(self) -> bool:
        """True when the endpoint was given from outside and the stack does not own it."""
        return self.ref is None


def _known(names: Iterable[str]) -> tuple[str, ...]:
    names = tuple(names)
    for name in names:
        if name not in SERVICES:
            raise LocalStackError(f"unknown service {name!r}",
                                  fix=f"choose from {', '.join(SERVICE_NAMES)}")
    return names


def _start_timeout(service: Service) -> float:
    override = os.environ.get("MCREPL_LOCAL_START_TIMEOUT")
    return float(override) if override else service.start_timeout


class LocalStack:
    """A set of emulators started on demand.

    * :meth:`start` launches every requested service at once and waits for all of them
      in parallel; if one fails, the others it launched are stopped before the error
      (which carries that service's log tail) is raised. An interrupt does the same.
    * :meth:`endpoint` starts a single service the first time it is asked for.
    * ``external`` maps service names to endpoints that are used as they are (real
      clouds, the official Cosmos emulator): they are never started or stopped.
    * :meth:`stop` stops every process the stack launched (whole process groups).
    """

    def __init__(self, services: Iterable[str] = SERVICE_NAMES, *, work_dir: Path | None = None,
                 external: Mapping[str, str] | None = None) -> None:
        self.services = _known(services)
        self._owns_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="mcrepl-local-"))
        self.running: dict[str, RunningService] = {
            name: RunningService(name, url.rstrip("/")) for name, url in (external or {}).items()}
        self._lock = threading.RLock()

    # -- public API ------------------------------------------------------------------

    def start(self, services: Iterable[str] | None = None) -> LocalStack:
        """Start ``services`` (default: all of this stack's) that are not running yet."""
        wanted = _known(services) if services is not None else self.services
        with self._lock:
            missing = [n for n in wanted if n not in self.running]
            if not missing:
                return self
            launched: list[RunningService] = []
            cancel = threading.Event()
            pool = ThreadPoolExecutor(max_workers=len(missing), thread_name_prefix="local-stack")
            try:
                futures = [pool.submit(self._start_one, SERVICES[n], launched, cancel) for n in missing]
                wait(futures, return_when=FIRST_EXCEPTION)
                for fut in futures:
                    fut.result()
            except BaseException:
                # stop first so waiting threads see their process exit, then reap stragglers
                cancel.set()
                for svc in list(launched):
                    self._stop_one(svc)
                pool.shutdown(wait=True, cancel_futures=True)
                for svc in list(launched):
                    self._stop_one(svc)
                raise
            pool.shutdown()
            by_name = {svc.name: svc for svc in launched}
            for name in missing:
                self.running[name] = by_name[name]
        return self

    def endpoint(self, name: str) -> str:
        """The URL of ``name``, starting that service first if it is not running."""
        self.start([name])
        return self.running[name].endpoint

    @property
    def endpoints(self) -> dict[str, str]:
        """Every service of this stack → its URL (starting any that are not running)."""
        self.start()
        return {n: self.running[n].endpoint for n in self.services if n in self.running} | {
            n: s.endpoint for n, s in self.running.items() if s.external}

    def stop(self) -> None:
        """Stop every process this stack launched; idempotent. Removes a temporary work dir."""
        with self._lock:
            for svc in list(self.running.values()):
                self._stop_one(svc)
            self.running = {n: s for n, s in self.running.items() if s.external}
            if self._owns_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------

    def _start_one(self, service: Service, launched: list[RunningService],
                   cancel: threading.Event) -> None:
        log_file = self.work_dir / "logs" / f"{service.name}.log"
        for attempt in range(1, _PORT_RETRIES + 1):
            if cancel.is_set():
                raise LocalStackError(f"start of {service.name} cancelled")
            port = process.free_port(HOST)
            ctx = LaunchContext(port, self.work_dir / "data" / service.name, repo_root())
            ctx.data_dir.mkdir(parents=True, exist_ok=True)
            argv = service.command(ctx)
            proc, ref = process.launch(argv, log_file, cwd=ctx.repo_root)
            svc = RunningService(service.name, service.endpoint(port), ref, log_file, proc)
            launched.append(svc)
            deadline = time.monotonic() + _start_timeout(service)
            try:
                process.wait_until_answers(service.name, svc.endpoint, proc, ref, log_file, deadline,
                                           cancel.is_set)
                return
            except LocalStackError as exc:
                self._stop_one(svc)
                launched.remove(svc)
                port_taken = "in use" in (exc.log_tail or "").lower()
                if not port_taken or attempt == _PORT_RETRIES:
                    raise

    @staticmethod
    def _stop_one(svc: RunningService) -> None:
        if svc.ref is not None:
            process.stop(svc.ref, svc.proc)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so ``with LocalStack(...)`` stops its emulators.

    Python's default SIGTERM handling ends the process without running ``finally`` blocks,
    which would orphan every emulator a script started (benchmarks stopped by a timeout).
    """
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
