"""Executors that run work units: threads (default), processes, Dask distributed.

Each executor takes a :mod:`.units` description and returns a future of its
:class:`~.units.UnitResult`. What differs is only where the unit runs:

* ``threads`` — in this process, on the coordinator's own adapters (thread-safe, pooled
  connections; one set of clients, one memory of what was last written where);
* ``processes`` — a pool of worker processes started with ``spawn`` (the coordinator
  holds threads and a SQLite connection, which ``fork`` must not copy), each opening its
  own clients once;
* ``dask`` — Dask distributed: ``workers=N`` starts a local cluster of N worker
  processes, ``scheduler="tcp://HOST:8786"`` joins an existing one. Install with
  ``pip install 'mcrepl[dask]'``.

A unit whose worker dies (a process pool broken by a killed child, a Dask worker lost
with the unit on it) is *leased again*: :meth:`UnitExecutor.run` submits it afresh, up to
``attempts`` times. That is safe because units are idempotent (see :mod:`.units`).
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from mcrepl.adapters.base import ConfigError, Digest, ReplicaTarget
from mcrepl.adapters.base.digest_ranges import DigestRange

from .units import DigestUnit, Opener, Unit, UnitResult, run_unit

log = logging.getLogger("mcrepl.sync.workers")
EXECUTORS = ("threads", "processes", "dask")


class WorkerLost(Exception):
    """The worker running a unit died; the unit may be leased again elsewhere."""


@dataclass(frozen=True)
class ExecutorSpec:
    """Which executor runs a pass's units (``sync.executor`` in the config, or the CLI)."""

    kind: str = "threads"
    workers: int = 4
    threads_per_worker: int = 8
    scheduler: str | None = None
    attempts: int = 3
    max_in_flight_units: int = 8


class UnitExecutor:
    """Runs units; subclasses say where. Thread-safe: every lane submits from its own step."""

    kind = "threads"

    def __init__(self, attempts: int = 3) -> None:
        self.attempts = max(1, attempts)
        self.released = 0                   # units leased again after their worker died
        self.by_worker: Counter[str] = Counter()   # units completed per worker (host/pid)
        #: how long a unit may go unanswered before it is leased again elsewhere (``None``: forever);
        #: a worker that stopped answering (stuck on a dead connection) then costs one lease, not the pass
        self.lease_s: float | None = None
        self._lock = threading.Lock()

    @property
    def slots(self) -> int:
        """How many units can run at once (the coordinator sizes in-flight caps from it)."""
        raise NotImplementedError

    def submit(self, unit: Unit) -> "Future[UnitResult]":
        """Start ``unit``; the future completes with its result, its error, or :class:`WorkerLost`."""
        raise NotImplementedError

    def run(self, unit: Unit) -> UnitResult:
        """Run ``unit`` to completion, leasing it again (up to ``attempts``) when its worker dies."""
        return self.gather([unit])[0]

    def gather(self, units: Sequence[Unit]) -> list[UnitResult]:
        """Run ``units`` concurrently; results in order. The first unit error is raised after all settle."""
        futures = [self.submit(u) for u in units]
        leased = [time.monotonic()] * len(units)
        results: list[UnitResult | None] = [None] * len(units)
        error: BaseException | None = None
        for i, unit in enumerate(units):
            tries = 1
            while True:
                try:
                    results[i] = done = self._answer(futures[i], leased[i])
                    with self._lock:
                        self.by_worker[done.worker] += 1
                    break
                except WorkerLost as exc:
                    if tries >= self.attempts:
                        error = error or exc
                        break
                    tries += 1
                    with self._lock:
                        self.released += 1
                    log.warning("a worker died running a %s unit for %s (%s): leasing it again (attempt %d of %d)",
                                type(unit).__name__, unit.target.replica, exc, tries, self.attempts)
                    futures[i], leased[i] = self.submit(unit), time.monotonic()
                except Exception as exc:  # noqa: BLE001 - raised once every unit has settled
                    error = error or exc
                    break
        if error is not None:
            raise error
        return [r for r in results if r is not None]

    def as_completed(self, units: Sequence[Unit], in_flight: int) -> Iterator[tuple[int, UnitResult]]:
        """Run ``units`` with at most ``in_flight`` at once; yield ``(index, result)`` as each completes.

        What a caller holds is then bounded by the units in flight, not by all of them (a
        verify's range listings). A unit whose worker dies, or whose lease runs out, is
        leased again up to ``attempts`` times; the first unit error is raised at once and
        the units still queued are never started.
        """
        queued = deque(range(len(units)))
        running: dict["Future[UnitResult]", tuple[int, int, float]] = {}   # future → (index, tries, leased at)
        try:
            while queued or running:
                while queued and len(running) < max(1, in_flight):
                    i = queued.popleft()
                    running[self.submit(units[i])] = (i, 1, time.monotonic())
                timeout = None if self.lease_s is None else max(
                    0.0, min(t for _, _, t in running.values()) + self.lease_s - time.monotonic())
                done, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
                lost: list[tuple["Future[UnitResult]", BaseException]] = []
                if not done and self.lease_s is not None:
                    now = time.monotonic()
                    lost = [(f, WorkerLost(f"no answer within {self.lease_s:g}s (the worker stopped answering)"))
                            for f, (_, _, t) in running.items() if t + self.lease_s <= now]
                for f in done:
                    try:
                        result = f.result()
                    except WorkerLost as exc:
                        lost.append((f, exc))
                        continue
                    i, _, _ = running.pop(f)
                    with self._lock:
                        self.by_worker[result.worker] += 1
                    yield i, result
                for f, why in lost:
                    f.cancel()
                    i, tries, _ = running.pop(f)
                    if tries >= self.attempts:
                        raise why
                    with self._lock:
                        self.released += 1
                    log.warning("a worker died running a %s unit for %s (%s): leasing it again (attempt %d of %d)",
                                type(units[i]).__name__, units[i].target.replica, why, tries + 1, self.attempts)
                    running[self.submit(units[i])] = (i, tries + 1, time.monotonic())
        finally:
            for f in running:
                f.cancel()

    def _answer(self, future: "Future[UnitResult]", leased_at: float) -> UnitResult:
        """The unit's result, or :class:`WorkerLost` once its lease ran out unanswered."""
        if self.lease_s is None:
            return future.result()
        try:
            return future.result(timeout=max(0.0, leased_at + self.lease_s - time.monotonic()))
        except FutureTimeout:
            future.cancel()
            raise WorkerLost(f"no answer within {self.lease_s:g}s (the worker stopped answering)") from None

    def close(self) -> None:
        """Stop the workers this executor started (a joined Dask cluster is left running)."""


class ThreadUnitExecutor(UnitExecutor):
    """Units on a thread pool in this process, on the coordinator's adapters."""

    kind = "threads"

    def __init__(self, opener: Opener, threads: int, attempts: int = 3) -> None:
        super().__init__(attempts)
        self._opener = opener
        self._threads = max(1, threads)
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="unit")

    @property
    def slots(self) -> int:
        return self._threads

    def submit(self, unit: Unit) -> "Future[UnitResult]":
        return self._pool.submit(run_unit, unit, self._opener)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class InlineUnitExecutor(UnitExecutor):
    """Runs each unit at submission on the caller's thread: the deterministic simulation's executor.

    With ``pickled`` every unit, result and error makes a pickling round trip first, as
    on its way to and from a process or Dask worker: that proves they carry descriptions
    only (a live client or a lock fails to pickle), while the unit still reaches the
    simulation's stores through ``opener``. An exception that is not an :class:`Exception`
    (a simulated process crash) propagates out of ``submit`` as it would end a process.
    """

    kind = "inline"

    def __init__(self, opener: Opener, pickled: bool = True) -> None:
        super().__init__(1)
        self._opener = opener
        self._ship: Callable[[Any], Any] = _round_trip if pickled else (lambda x: x)

    @property
    def slots(self) -> int:
        return 1

    def submit(self, unit: Unit) -> "Future[UnitResult]":
        future: Future[UnitResult] = Future()
        try:
            result = run_unit(self._ship(unit), self._opener)
        except Exception as exc:  # noqa: BLE001 - delivered through the future as a worker's would be
            future.set_exception(self._ship(exc))
        else:
            future.set_result(self._ship(result))
        return future


def _round_trip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


class ProcessUnitExecutor(UnitExecutor):
    """Units on ``workers`` spawned processes; a pool broken by a dead child is rebuilt."""

    kind = "processes"

    def __init__(self, workers: int, attempts: int = 3) -> None:
        super().__init__(attempts)
        self._workers = max(1, workers)
        self._pool = self._start()
        self._generation = 0

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"))

    @property
    def slots(self) -> int:
        return self._workers

    def submit(self, unit: Unit) -> "Future[UnitResult]":
        with self._lock:
            pool, generation = self._pool, self._generation
        outer: Future[UnitResult] = Future()
        try:
            inner = pool.submit(run_unit, unit)
        except BrokenProcessPool:
            self._rebuild(generation)
            outer.set_exception(WorkerLost("the process pool was broken by a dead worker"))
            return outer

        def done(f: "Future[UnitResult]") -> None:
            try:
                outer.set_result(f.result())
            except BrokenProcessPool as exc:
                self._rebuild(generation)
                outer.set_exception(WorkerLost(str(exc)))
            except BaseException as exc:  # noqa: BLE001 - the unit's own error, for the caller
                outer.set_exception(exc)
        inner.add_done_callback(done)
        return outer

    def _rebuild(self, generation: int) -> None:
        """Replace the pool once per breakage (every unit that was on it fails with it)."""
        with self._lock:
            if generation != self._generation:
                return
            old, self._pool = self._pool, self._start()
            self._generation += 1
        old.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def digest_listing(executor: UnitExecutor, targets: Mapping[str, ReplicaTarget]) -> Callable[
        [Sequence[tuple[str, DigestRange | None]]], Iterator[tuple[str, list[Digest]]]]:
    """A verify ``listing``: one digest unit per (location, range) on ``executor``, results as they arrive.

    At most ``executor.slots`` ranges are in flight, so the coordinator holds that many
    ranges' digests at a time, whatever the size of the dataset.
    """
    def listing(jobs: Sequence[tuple[str, DigestRange | None]]) -> Iterator[tuple[str, list[Digest]]]:
        units = [DigestUnit(targets[name], part) for name, part in jobs]
        for i, result in executor.as_completed(units, executor.slots):
            yield jobs[i][0], result.value
    return listing


def open_executor(spec: ExecutorSpec, local_opener: Opener) -> UnitExecutor:
    """The executor ``spec`` names; ``local_opener`` gives the coordinator's adapters to threads."""
    if spec.kind == "threads":
        return ThreadUnitExecutor(local_opener, spec.workers * spec.threads_per_worker, spec.attempts)
    if spec.kind == "processes":
        return ProcessUnitExecutor(spec.workers, spec.attempts)
    if spec.kind == "dask":
        from .dask_executor import DaskUnitExecutor
        return DaskUnitExecutor(spec)
    raise ConfigError(f"unknown executor {spec.kind!r}", path="sync.executor.kind",
                      fix=f"use one of {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "ExecutorSpec", "digest_listing", "InlineUnitExecutor", "ProcessUnitExecutor", "ThreadUnitExecutor",
           "UnitExecutor", "WorkerLost", "open_executor"]
