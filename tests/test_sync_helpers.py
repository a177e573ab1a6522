"""Shared helpers of the sync tests (this module holds no tests).

Config files may only name real providers, so memory-backed tests hand the engine an
``adapter_factory`` that maps every target onto the in-memory reference adapter — our
own implementation of our own interface — under a per-test namespace. Tests on the local
emulators use :func:`emulator_raw_config`, :class:`Stores` and the ``endpoints`` and
``namespace`` fixtures (import them into the test module).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import (ApplyResult, Cursor, ChangePage, Digest, Record, RecordError, RecordKey,
                                  ReplicaAdapter, ReplicaTarget, UnavailableError, rejected)
from mcrepl.adapters.memory import MemoryAdapter
from mcrepl.orchestrator.config import McreplConfig

PRIMARY, COSMOS, GCS = "dynamodb:eu-west-1", "cosmos:westeurope", "gcs:europe-west1"
#: the emulators' providers (``endpoint: local`` resolves through the ``endpoints`` fixture)
PROVIDERS = {"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local"},
             "gcs": {"endpoint": "local", "auth": "anonymous"}}


def make_config(tmp_path: Path, sync: dict[str, Any] | None = None, conflict: dict[str, Any] | None = None,
                providers: dict[str, Any] | None = None) -> McreplConfig:
    """One document dataset ``customers``: DynamoDB primary, Cosmos DB and GCS replicas."""
    return McreplConfig.model_validate(raw_config(tmp_path, sync, conflict, providers))


def raw_config(tmp_path: Path, sync: dict[str, Any] | None = None, conflict: dict[str, Any] | None = None,
               providers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The YAML-ready mapping behind :func:`make_config`."""
    ds: dict[str, Any] = {"kind": "document", "key": {"partition": "customer_id"}, "primary": PRIMARY,
                          "replicas": [COSMOS, GCS], "schedule": {"every": "1s"}}
    if conflict:
        ds["conflict"] = conflict
    return {"version": 1, "profile": "local", "state_dir": str(tmp_path / "state"),
            "providers": providers or {}, "datasets": {"customers": ds},
            "sync": {"batch_size": 50, **(sync or {})}}


def emulator_raw_config(tmp_path: Path, *, primary: str = PRIMARY, replicas: Sequence[str] = (COSMOS, GCS),
                        conflict: dict[str, Any] | None = None, state_dir: str = "state",
                        **sync: Any) -> dict[str, Any]:
    """One document dataset ``customers`` on the emulators (YAML-ready); ``sync`` overrides ``sync:``."""
    ds: dict[str, Any] = {"kind": "document", "key": {"partition": "customer_id"}, "primary": primary,
                          "replicas": list(replicas), "schedule": {"every": "5s"}}
    if conflict:
        ds["conflict"] = conflict
    return {"version": 1, "profile": "local", "state_dir": str(tmp_path / state_dir), "providers": PROVIDERS,
            "datasets": {"customers": ds}, "sync": {"batch_size": 100, "retry_deadline": "5s", **sync}}


class Stores:
    """The stores of one test namespace, opened and ready on first use, dropped at the end.

    ``config`` must list every location the test touches (its role there does not matter).
    """

    def __init__(self, config: McreplConfig, endpoints: dict[str, str], namespace: str) -> None:
        self.config, self.endpoints, self.namespace = config, endpoints, namespace
        self.opened: dict[str, ReplicaAdapter] = {}

    def __getitem__(self, replica: str) -> ReplicaAdapter:
        if replica not in self.opened:
            adapter = open_adapter(self.config.target("customers", replica, self.endpoints, self.namespace))
            adapter.ensure_ready()
            self.opened[replica] = adapter
        return self.opened[replica]

    def drop(self) -> None:
        for adapter in self.opened.values():
            try:
                adapter.drop()
            finally:
                adapter.close()


@pytest.fixture(scope="module")
def endpoints(local_stack: Any) -> dict[str, str]:
    """URLs of the three emulators the sync tests use (started on first use)."""
    return {name: local_stack.endpoint(name) for name in ("dynamodb", "cosmos", "gcs")}


@pytest.fixture()
def namespace() -> str:
    """A prefix no other test uses, for every table, container and bucket name."""
    return f"s{uuid.uuid4().hex[:8]}"


def mcrepl_subprocess(args: Sequence[str], namespace: str, endpoints: dict[str, str], *, cwd: Path,
                      python: Sequence[str] | None = None,
                      env: dict[str, str] | None = None) -> subprocess.Popen:  # type: ignore[type-arg]
    """``mcrepl ARGS`` in its own process group against the emulators (stdout and stderr piped).

    ``python``: run ``[sys.executable, *python, *args]`` instead of the console script (a
    runner that patches something first, then calls the CLI); ``env``: added to the environment.
    """
    env = {**os.environ, "MCREPL_LOCAL_ENDPOINTS": json.dumps(endpoints), "MCREPL_NAMESPACE": namespace,
           **(env or {})}
    command = [sys.executable, *python] if python is not None else [str(Path(sys.executable).parent / "mcrepl")]
    return subprocess.Popen([*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            start_new_session=True)


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an ``Exception``, so nothing in the engine catches it."""


class ControlledAdapter(ReplicaAdapter):
    """Wraps an adapter (the memory one, or an emulator's) with switches: unreachable, crash
    after N calls, reject a field, run something before each capture call.

    ``crash_after_apply`` crashes *after* the inner apply landed (the write was acknowledged
    by the store but the engine never learns it) to exercise replays. ``before_capture`` is
    called with the number of capture calls made so far (an application writing while
    capture scans).
    """

    def __init__(self, inner: ReplicaAdapter) -> None:
        super().__init__(inner.target)
        self.inner = inner
        self.capabilities = inner.capabilities
        self.down = False
        self.crash_in: int | None = None
        self.crash_after_apply = False
        self.reject_field: str | None = None
        self.before_capture: Callable[[int], None] | None = None
        self.apply_calls = 0
        self.capture_calls = 0
        self._lock = threading.Lock()

    def _gate(self, op: str) -> None:
        if self.down:
            raise UnavailableError(f"{self.target.replica} unreachable", replica=self.target.replica,
                                   operation=op)
        with self._lock:
            if self.crash_in is not None:
                self.crash_in -= 1
                if self.crash_in <= 0 and not self.crash_after_apply:
                    self.crash_in = None
                    raise SimulatedCrash(op)

    def ensure_ready(self) -> None:
        self._gate("ensure_ready")
        self.inner.ensure_ready()

    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        self._gate("capture")
        if self.before_capture is not None:
            self.before_capture(self.capture_calls)
        self.capture_calls += 1
        return self.inner.capture_changes(cursor, limit)

    def current_cursor(self) -> Cursor:
        return self.inner.current_cursor()

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        self._gate("apply")
        self.apply_calls += 1
        keep = [r for r in records if not self._rejects(r)]
        landed = iter(self.inner.apply_batch(keep))
        out = [rejected(r, RecordError("test-reject", f"field {self.reject_field!r} is not accepted here",
                                       field=self.reject_field), self.target)
               if self._rejects(r) else next(landed) for r in records]
        with self._lock:
            if self.crash_in is not None and self.crash_after_apply and self.crash_in <= 0:
                self.crash_in = None
                raise SimulatedCrash("after apply")
        return out

    def _rejects(self, record: Record) -> bool:
        return (self.reject_field is not None and isinstance(record.body, dict)
                and self.reject_field in record.body)

    def read(self, key: RecordKey) -> Record | None:
        self._gate("read")
        return self.inner.read(key)

    def list_digests(self) -> Iterator[Digest]:
        self._gate("list_digests")
        return self.inner.list_digests()

    def write_native(self, records: Sequence[Record]) -> None:
        self.inner.write_native(records)

    def delete_native(self, keys: Sequence[RecordKey]) -> None:
        self.inner.delete_native(keys)

    def write_heartbeat(self, written_ms: int) -> None:
        if self.down:                  # a store that is down takes no heartbeat (crash points are left alone)
            raise UnavailableError(f"{self.target.replica} unreachable", replica=self.target.replica,
                                   operation="write_heartbeat")
        self.inner.write_heartbeat(written_ms)  # type: ignore[attr-defined]

    def purge_tombstones(self, older_than_ms: int) -> int:
        self._gate("purge")
        return self.inner.purge_tombstones(older_than_ms)

    def drop(self) -> None:
        self.inner.drop()

    def close(self) -> None:
        self.inner.close()


class MemoryWorld:
    """The in-memory stores of one test and the factory that hands them to engines."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.adapters: dict[str, ControlledAdapter] = {}

    def factory(self, target: ReplicaTarget) -> ReplicaAdapter:
        """``adapter_factory`` for :class:`SyncEngine`: the same store per replica, every time."""
        if target.replica not in self.adapters:
            memory = MemoryAdapter(dataclasses.replace(target, provider="memory",
                                                       options={"namespace": self.namespace}))
            self.adapters[target.replica] = ControlledAdapter(memory)
        return self.adapters[target.replica]

    def adapter(self, config: McreplConfig, replica: str) -> ControlledAdapter:
        """The store of ``replica`` (created on first use)."""
        return self.factory(config.target("customers", replica))  # type: ignore[return-value]

    def drop(self) -> None:
        for adapter in self.adapters.values():
            adapter.drop()


def digests(adapter: ReplicaAdapter) -> dict[str, tuple[str, bool]]:
    """key → (comparable hash, tombstone): what convergence compares."""
    return {d.key_id: (d.content_hash, d.tombstone) for d in adapter.list_digests()}


def live(adapter: ReplicaAdapter) -> dict[str, str]:
    """key → content hash of every record that is not a tombstone."""
    return {k: h for k, (h, t) in digests(adapter).items() if not t}


def customer(i: int, **extra: Any) -> dict[str, Any]:
    """A small customer document."""
    return {"customer_id": f"c{i:05d}", "name": f"customer {i}", "tier": i % 3, **extra}


Factory = Callable[[ReplicaTarget], ReplicaAdapter]
