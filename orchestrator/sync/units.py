"""Work units: picklable descriptions of the store calls a pass makes, and the worker that runs them.

A pass is coordinated in one place (the state store's owner) and its store calls are
shipped to an executor as *units*: a capture page of one source partition, a write of
one key-partition of a lane window, a read of some keys, the digests of one location.
A unit holds a :class:`~mcrepl.adapters.base.ReplicaTarget` (a plain description) and
plain data — never a client, a connection or the state store — so a thread, another
process or a Dask worker on another machine runs it the same way. Workers are stateless
apart from a cache of the clients they opened themselves; they return outcomes and
positions, and only the coordinator commits anything.

Running a unit twice is harmless: a capture page is read again from the same cursor
and committed once (the coordinator commits it, under its cursor), and writes are
conditional, so a replayed write is a counted no-op. That is what lets the coordinator
lease a unit again when its worker dies.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mcrepl.adapters.base import (AdapterError, Record, RecordKey, ReplicaAdapter,
                                  ReplicaTarget, ThrottledError, UnavailableError)
from mcrepl.adapters.base.digest_ranges import DigestRange, list_part
from mcrepl.adapters.base.retry import on_retry

Opener = Callable[[ReplicaTarget], ReplicaAdapter]


@dataclass(frozen=True)
class CaptureUnit:
    """One page of changes from the primary's partition ``partition``, after ``cursor``."""

    target: ReplicaTarget
    cursor: Any
    limit: int
    partition: str = "all"


@dataclass(frozen=True)
class WriteUnit:
    """Conditional writes of one key-partition of a lane window (records of a key stay together, in order)."""

    target: ReplicaTarget
    records: tuple[Record, ...]
    partition: int = 0


@dataclass(frozen=True)
class ReadUnit:
    """The stored records of ``keys`` at one location (``None`` where absent)."""

    target: ReplicaTarget
    keys: tuple[RecordKey, ...]


@dataclass(frozen=True)
class DigestUnit:
    """The digests of one range of one location (``part=None``: all of them), for a comparison."""

    target: ReplicaTarget
    part: DigestRange | None = None


Unit = CaptureUnit | WriteUnit | ReadUnit | DigestUnit


@dataclass
class UnitResult:
    """What a worker sends back: the unit's value, and the pressure the store put on it.

    ``throttled`` counts the retries the store asked for (429, 503, throughput exceeded)
    while the unit ran; ``retry_after`` is the longest wait it asked for. The coordinator's
    in-flight controller reads both (see :mod:`.inflight`).
    """

    value: Any
    seconds: float
    throttled: int = 0
    retry_after: float | None = None
    worker: str = ""                    # host/pid of the process that ran it


def unit_target(unit: Unit) -> ReplicaTarget:
    """The location a unit talks to."""
    return unit.target


def run_unit(unit: Unit, opener: Opener | None = None) -> UnitResult:
    """Run ``unit`` against the adapter ``opener`` gives (default: the worker's own, opened once).

    This is the function every executor runs; it must stay importable by module path so
    a process pool or a Dask worker can unpickle a reference to it.
    """
    adapter = (opener or _worker_adapter)(unit.target)
    pressure = _Pressure.of(unit.target)
    before = pressure.snapshot()
    started = time.perf_counter()
    value = _call(unit, adapter)
    throttled, retry_after = pressure.since(before)
    return UnitResult(value, time.perf_counter() - started, throttled, retry_after,
                      _WORKER_NAME or f"{socket.gethostname()}/{os.getpid()}")


def _call(unit: Unit, adapter: ReplicaAdapter) -> Any:
    if isinstance(unit, WriteUnit):
        return adapter.apply_batch(list(unit.records))
    if isinstance(unit, CaptureUnit):
        return adapter.capture_changes(unit.cursor, limit=unit.limit)
    if isinstance(unit, ReadUnit):
        return adapter.read_many(unit.keys)
    if isinstance(unit, DigestUnit):
        return list(list_part(adapter, unit.part))
    raise TypeError(f"not a work unit: {unit!r}")


# -- the worker's own clients ---------------------------------------------------------------

_WORKER_NAME = ""                       # set by a pool's initializer; else host/pid
_ADAPTERS: dict[tuple[Any, ...], ReplicaAdapter] = {}
_ADAPTERS_LOCK = threading.Lock()


def _identity(target: ReplicaTarget) -> tuple[Any, ...]:
    return (target.replica, target.dataset, target.resource, tuple(sorted((k, repr(v)) for k, v in
                                                                             target.options.items())))


def _worker_adapter(target: ReplicaTarget) -> ReplicaAdapter:
    """The adapter this worker process opened for ``target`` (opened and checked ready once)."""
    ident = _identity(target)
    with _ADAPTERS_LOCK:
        adapter = _ADAPTERS.get(ident)
        if adapter is None:
            from mcrepl.adapters import open_adapter
            adapter = open_adapter(target)
            adapter.ensure_ready()
            _ADAPTERS[ident] = adapter
    return adapter


def close_worker_adapters() -> None:
    """Close every client this worker opened (a process pool's shutdown, tests)."""
    with _ADAPTERS_LOCK:
        adapters = list(_ADAPTERS.values())
        _ADAPTERS.clear()
    for adapter in adapters:
        try:
            adapter.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def name_worker(name: str) -> None:
    """Name this worker in the results it returns (a process pool's initializer calls it)."""
    global _WORKER_NAME
    _WORKER_NAME = name


# -- store pressure, counted where the retries happen --------------------------------------

class _Pressure:
    """Throttling signals per location in this worker, fed by the one retry policy's hook."""

    _by_target: dict[tuple[str, str], "_Pressure"] = {}
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.count = 0
        self.longest: float | None = None
        self.generation = 0

    @classmethod
    def of(cls, target: ReplicaTarget) -> "_Pressure":
        with cls._lock:
            return cls._by_target.setdefault((target.dataset, target.replica), cls())

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            self.generation += 1
            return self.count, self.generation

    def since(self, before: tuple[int, int]) -> tuple[int, float | None]:
        with self._lock:
            longest = self.longest if self.count > before[0] else None
            if self.generation == before[1]:
                self.longest = None
            return self.count - before[0], longest

    @classmethod
    def note(cls, exc: AdapterError) -> None:
        if not isinstance(exc, (ThrottledError, UnavailableError)) and exc.retry_after is None:
            return
        if exc.dataset is None or exc.replica is None:
            return
        with cls._lock:
            pressure = cls._by_target.setdefault((exc.dataset, exc.replica), cls())
            pressure.count += 1
            if exc.retry_after is not None:
                pressure.longest = max(pressure.longest or 0.0, exc.retry_after)


on_retry(_Pressure.note)


def split_by_key(records: Sequence[Record], parts: int) -> list[tuple[int, ...]]:
    """Record indexes split into at most ``parts`` groups; every record of a key in one group, in order.

    A key's successive versions must reach the store in log order (the adapter applies a
    batch's versions of one key in rounds); keys are independent of each other, so
    groups of distinct keys can run anywhere at once and the outcome is the one a single
    batch would have had.
    """
    if parts <= 1 or len(records) <= 1:
        return [tuple(range(len(records)))] if records else []
    groups: list[list[int]] = [[] for _ in range(parts)]
    slot: dict[str, int] = {}
    for i, record in enumerate(records):
        key = record.key.id
        if key not in slot:
            # fill groups evenly in first-seen order, so a window splits into equal units
            slot[key] = len(slot) % parts
        groups[slot[key]].append(i)
    return [tuple(g) for g in groups if g]


__all__ = ["CaptureUnit", "DigestUnit", "ReadUnit", "Unit", "UnitResult", "WriteUnit", "close_worker_adapters",
           "name_worker", "run_unit", "split_by_key", "unit_target"]
