"""Fences and call deadlines around adapters, so a lost location never stalls a drill.

:class:`Fences` is the orchestrator-level switch of fence mode: a fenced location gets no
traffic at all from the write router or the sync engine (on real clouds this is the only
safe "fault": stop talking to the lost region). :class:`GuardedAdapter` enforces it and
puts a deadline on every call: a request stuck behind a blackholed proxy is abandoned
after ``timeout_s`` with a retryable :class:`UnavailableError` — exactly what a client
sees from a partition. The abandoned call keeps running on a worker thread and may still
land after the partition heals (the proxy releases stalled bytes), which is why the
router records such writes as ``timeout`` (outcome unknown), never as failed.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Iterator, Sequence, TypeVar

from mcrepl.adapters.base import (ApplyResult, ChangePage, Cursor, Digest, Record, RecordKey, ReplicaAdapter,
                                  UnavailableError)
from mcrepl.testing.seeding import native_writer

T = TypeVar("T")


class FencedError(UnavailableError):
    """The orchestrator fenced this location: no call is sent to it."""


class CallTimeout(UnavailableError):
    """No answer within the guard's deadline: the call may still land later."""


class Fences:
    """The set of fenced locations, shared by the router and the sync engine of one drill."""

    def __init__(self) -> None:
        self._fenced: set[str] = set()
        self._lock = threading.Lock()

    def fence(self, location: str) -> None:
        with self._lock:
            self._fenced.add(location)

    def unfence(self, location: str | None = None) -> None:
        """Lift the fence on ``location`` (every location when ``None``)."""
        with self._lock:
            if location is None:
                self._fenced.clear()
            else:
                self._fenced.discard(location)

    def fenced(self, location: str) -> bool:
        with self._lock:
            return location in self._fenced


class GuardedAdapter(ReplicaAdapter):
    """Delegates to ``inner``; refuses fenced locations and abandons calls after ``timeout_s``."""

    def __init__(self, inner: ReplicaAdapter, fences: Fences, timeout_s: float, workers: int = 8) -> None:
        super().__init__(inner.target)
        self.inner = inner
        self.capabilities = inner.capabilities
        self.fences = fences
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"guard-{inner.target.replica}")

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        location = self.target.replica
        if self.fences.fenced(location):
            raise FencedError(f"{location} is fenced by the drill: no {operation} is sent to it",
                              retryable=False, replica=location, dataset=self.target.dataset)
        future = self._pool.submit(fn)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise CallTimeout(f"{operation} on {location} got no answer within {self.timeout_s:g}s "
                                   "(partitioned?)", replica=location, dataset=self.target.dataset,
                                   retryable=False) from None

    def ensure_ready(self) -> None:
        self._call("ensure_ready", self.inner.ensure_ready)

    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        return self._call("capture", lambda: self.inner.capture_changes(cursor, limit))

    def current_cursor(self) -> Cursor:
        return self._call("current_cursor", self.inner.current_cursor)

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        return self._call("apply", lambda: self.inner.apply_batch(records))

    def read(self, key: RecordKey) -> Record | None:
        return self._call("read", lambda: self.inner.read(key))

    def list_digests(self) -> Iterator[Digest]:
        return iter(self._call("list_digests", lambda: list(self.inner.list_digests())))

    def write_native(self, records: Sequence[Record]) -> None:
        self._call("write_native", lambda: native_writer(self.inner).write_native(records))

    def delete_native(self, keys: Sequence[RecordKey]) -> None:
        self._call("delete_native", lambda: native_writer(self.inner).delete_native(keys))

    def write_heartbeat(self, written_ms: int) -> None:
        """The inner adapter's heartbeat (an adapter without the role raises ``AttributeError``, as unguarded)."""
        self._call("write_heartbeat", lambda: self.inner.write_heartbeat(written_ms))  # type: ignore[attr-defined]

    def purge_tombstones(self, older_than_ms: int) -> int:
        return self._call("purge", lambda: self.inner.purge_tombstones(older_than_ms))

    def drop(self) -> None:
        self.inner.drop()

    def close(self) -> None:
        """Close the inner adapter; abandoned calls are not waited for."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.inner.close()


def guarded_factory(open_inner: Callable[[Any], ReplicaAdapter], fences: Fences,
                    timeout_s: float) -> Callable[[Any], ReplicaAdapter]:
    """An adapter factory for :class:`SyncEngine` that wraps every adapter in :class:`GuardedAdapter`."""
    def make(target: Any) -> ReplicaAdapter:
        return GuardedAdapter(open_inner(target), fences, timeout_s)
    return make
