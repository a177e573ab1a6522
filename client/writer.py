"""``FencedWriter``: how an application writes to a dataset's primary so that failover can fence it.

The writer finds the primary by reading the epoch records every location holds (the
highest epoch names it; see :mod:`mcrepl.adapters.base.fence`), and makes every write
conditional on that record: after ``mcrepl failover promote`` has published a new epoch,
a writer still pinned to the old one is refused **by the store** (DynamoDB atomically in
one transaction; Cosmos DB and Cloud Storage by checking the record before and after the
write). A writer that follows the primary (the default) re-reads the records when it is
refused and moves on to the new primary; one created with ``pin=`` never does — that is
what an application instance cut off in a lost region looks like.

Example::

    from mcrepl.client import FencedWriter, StaleEpoch

    with FencedWriter.from_config("mcrepl.yaml", "customers", writer="checkout") as w:
        w.put({"customer_id": "c-42", "tier": "gold"})
        w.delete("c-17")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from mcrepl.adapters import open_adapter, open_fence
from mcrepl.adapters.base import (AdapterError, ApplyOutcome, ConfigError, ReplicaAdapter, ReplicaTarget)
from mcrepl.adapters.base.fence import EpochFence, EpochRecord, StaleEpoch
from mcrepl.orchestrator.config import McreplConfig, load_config

from .stamping import OpKind, WriterClocks, stamp

#: re-reads after a concurrent writer changed the key between our read and our write
RACE_ATTEMPTS = 8


@dataclass(frozen=True)
class WriteResult:
    """One acknowledged write: where it landed, under which epoch, as which version."""

    key: str
    location: str
    epoch: int
    version: str
    outcome: str


class FencedWriter:
    """Writes one dataset at its current primary, each write conditioned on the epoch record.

    Thread-safe for concurrent writes of different keys. ``pin=(location, epoch)`` fixes
    the writer's belief (it never looks for a newer primary); ``adapter_factory`` and
    ``fence_factory`` let the drills put their call deadlines around the same calls.
    """

    def __init__(self, config: McreplConfig, dataset: str, *, writer: str = "app",
                 local_endpoints: Mapping[str, str] | None = None, namespace: str = "",
                 pin: tuple[str, int] | None = None,
                 adapter_factory: Callable[[ReplicaTarget], ReplicaAdapter] | None = None,
                 fence_factory: Callable[[ReplicaTarget], EpochFence] | None = None) -> None:
        if dataset not in config.datasets:
            raise ConfigError(f"unknown dataset {dataset!r}", path="datasets",
                              fix=f"use one of {', '.join(config.datasets)}")
        self.dataset = dataset
        self.writer = writer
        self.schema = config.datasets[dataset].key_schema()
        self.targets = {t.replica: t for t in config.targets(dataset, local_endpoints, namespace)}
        self._open_adapter = adapter_factory or open_adapter
        self._open_fence = fence_factory or open_fence
        self._adapters: dict[str, ReplicaAdapter] = {}
        self._fences: dict[str, EpochFence] = {}
        self.clocks = WriterClocks()
        self.pinned = pin
        self._belief: tuple[str, int] | None = pin

    @classmethod
    def from_config(cls, path: str | Path, dataset: str, **kw: object) -> "FencedWriter":
        """A writer for ``dataset`` of the config at ``path`` (the local stack's endpoints when it uses them)."""
        config = load_config(path)
        if config.uses_local_stack() and "local_endpoints" not in kw:
            from mcrepl.orchestrator.localstack import read_endpoints
            kw["local_endpoints"] = read_endpoints()
        return cls(config, dataset, **kw)  # type: ignore[arg-type]

    # -- where to write ------------------------------------------------------------------

    @property
    def primary(self) -> tuple[str, int]:
        """``(location, epoch)`` this writer writes to (discovered on first use)."""
        if self._belief is None:
            self._belief = self.discover()
        return self._belief

    def discover(self) -> tuple[str, int]:
        """The primary named by the highest epoch record any reachable location holds."""
        found: list[EpochRecord] = []
        errors: list[str] = []
        for location in self.targets:
            try:
                record = self.fence(location).read()
            except AdapterError as exc:
                errors.append(f"{location}: {exc.message}")
                continue
            if record is not None:
                found.append(record)
        if not found:
            why = f" ({'; '.join(errors)})" if errors else ""
            raise StaleEpoch(f"no location of {self.dataset!r} holds an epoch record{why} (fix: arm fencing with "
                             f"'mcrepl failover fence --dataset {self.dataset}')", dataset=self.dataset)
        best = max(found, key=lambda r: r.epoch)
        return best.primary, best.epoch

    def fence(self, location: str) -> EpochFence:
        """The epoch record of ``location`` (opened once)."""
        if location not in self._fences:
            self._fences[location] = self._open_fence(self._target(location))
        return self._fences[location]

    def adapter(self, location: str) -> ReplicaAdapter:
        """The data adapter of ``location`` (opened once)."""
        if location not in self._adapters:
            self._adapters[location] = self._open_adapter(self._target(location))
        return self._adapters[location]

    def _target(self, location: str) -> ReplicaTarget:
        if location not in self.targets:
            raise ConfigError(f"{location} is not a location of {self.dataset!r}", path=f"datasets.{self.dataset}",
                              fix=f"use one of {', '.join(self.targets)}")
        return self.targets[location]

    # -- writes --------------------------------------------------------------------------

    def put(self, body: Mapping[str, object]) -> WriteResult:
        """Insert or replace the document ``body`` (its key fields name it)."""
        from mcrepl.adapters.base.values import normalize
        canon = normalize(dict(body))
        assert isinstance(canon, dict)
        return self.write("update", self.schema.key_of(canon).id, body)

    def delete(self, key: str) -> WriteResult:
        """Delete ``key`` (a tombstone, so the delete replicates and is never resurrected)."""
        return self.write("delete", key, None)

    def write(self, kind: OpKind, key: str, body: Mapping[str, object] | None) -> WriteResult:
        """Perform one operation at the primary, fenced; follows a promotion once unless pinned.

        Raises :class:`StaleEpoch` when the store refuses it (``landed`` says whether it
        reached a location that was being demoted), :class:`AdapterError` when the
        primary cannot be reached.
        """
        try:
            return self._write_at(*self.primary, kind, key, body)
        except StaleEpoch as exc:
            if self.pinned is not None or exc.landed:
                raise
            before = self._belief
            self._belief = self.discover()
            if self._belief == before:
                raise
            return self._write_at(*self._belief, kind, key, body)

    def _write_at(self, location: str, epoch: int, kind: OpKind, key: str,
                  body: Mapping[str, object] | None) -> WriteResult:
        adapter, fence = self.adapter(location), self.fence(location)
        clock = self.clocks(f"{location}/{self.writer}")
        for _ in range(RACE_ATTEMPTS):
            record = stamp(adapter, self.schema, clock, kind, key, body, epoch)
            result = fence.write(adapter, record, epoch)
            if result.outcome in (ApplyOutcome.APPLIED, ApplyOutcome.REPLAYED):
                assert record.meta is not None
                return WriteResult(key, location, epoch, record.meta.version.token, result.outcome.value)
            if result.outcome is ApplyOutcome.REJECTED:
                raise result.error or AdapterError("the store cannot hold this record", dataset=self.dataset, key=key)
        raise AdapterError(f"{key!r} kept changing under concurrent writers ({RACE_ATTEMPTS} attempts)",
                           retryable=True, dataset=self.dataset, replica=location, key=key)

    def close(self) -> None:
        """Close every client this writer opened."""
        for adapter in self._adapters.values():
            adapter.close()
        for fence in self._fences.values():
            fence.close()
        self._adapters.clear()
        self._fences.clear()

    def __enter__(self) -> "FencedWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["FencedWriter", "StaleEpoch", "WriteResult"]
