"""The coordinator's view of a location whose store calls run as work units.

The engine's lanes, capture and comparisons talk to a :class:`UnitAdapter` exactly as to
an adapter; its capture, write, read and digest calls become :mod:`.units` sent to the
pass's executor, and everything else (provisioning, purges, the current cursor) stays
with the coordinator's own adapter. A write batch is split by key into as many units as
the lane's :class:`~.inflight.InFlightWindow` allows — a key's versions stay together and
in order, keys are independent — so the outcome is the one a single batch would have
had, with many more requests in flight.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from mcrepl.adapters.base import (ApplyResult, ChangePage, Cursor, Digest, Record, RecordKey, ReplicaAdapter,
                                  ReplicaTarget)
from mcrepl.adapters.base.digest_ranges import DigestRange, ranges_of
from mcrepl.adapters.base.roles import Partition

from .inflight import InFlightWindow
from .units import CaptureUnit, DigestUnit, ReadUnit, WriteUnit, split_by_key
from .workers import UnitExecutor

#: fewer records than this per unit cost more in shipping than they save in waiting
MIN_UNIT_RECORDS = 8


class UnitAdapter(ReplicaAdapter):
    """A location reached through work units; ``local`` is the coordinator's own adapter."""

    def __init__(self, target: ReplicaTarget, local: ReplicaAdapter, executor: UnitExecutor,
                 window: InFlightWindow) -> None:
        super().__init__(target)
        self.local = local
        self.executor = executor
        self.window = window
        self.capabilities = local.capabilities

    # -- calls that run as units -----------------------------------------------------------

    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        """One page of capture, read by a worker (the coordinator stamps and commits it)."""
        page: ChangePage = self.executor.run(CaptureUnit(self.target, cursor, limit)).value
        return page

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        """The batch as key-partitioned write units in flight at once; results in input order."""
        if not records:
            return []
        parts = min(self.window.current(), max(1, len(records) // MIN_UNIT_RECORDS))
        groups = split_by_key(records, parts)
        outcomes = self.executor.gather([WriteUnit(self.target, tuple(records[i] for i in g), n)
                                         for n, g in enumerate(groups)])
        results: list[ApplyResult | None] = [None] * len(records)
        throttled, retry_after = 0, None
        for group, outcome in zip(groups, outcomes):
            for i, result in zip(group, outcome.value):
                results[i] = result
            throttled += outcome.throttled
            if outcome.retry_after is not None:
                retry_after = max(retry_after or 0.0, outcome.retry_after)
        self.window.observe(throttled, retry_after)
        return [r for r in results if r is not None]

    def read(self, key: RecordKey) -> Record | None:
        value: list[Record | None] = self.executor.run(ReadUnit(self.target, (key,))).value
        return value[0]

    def read_many(self, keys: Sequence[RecordKey]) -> list[Record | None]:
        """Every key in one read unit (the adapter's multi-key read, where it has one)."""
        if not keys:
            return []
        value: list[Record | None] = self.executor.run(ReadUnit(self.target, tuple(keys))).value
        return value

    def list_digests(self) -> Iterator[Digest]:
        digests: list[Digest] = self.executor.run(DigestUnit(self.target)).value
        return iter(digests)

    def digest_ranges(self) -> list[DigestRange]:
        """The coordinator's adapter's ranges (none when it has none: then one whole listing)."""
        return [part for part in ranges_of(self.local) if part is not None]

    def list_range_digests(self, part: DigestRange) -> Iterator[Digest]:
        digests: list[Digest] = self.executor.run(DigestUnit(self.target, part)).value
        return iter(digests)

    # -- calls the coordinator makes itself ------------------------------------------------

    def ensure_ready(self) -> None:
        self.local.ensure_ready()

    def current_cursor(self) -> Cursor:
        return self.local.current_cursor()

    def partitions(self) -> list[Partition]:
        return self.local.partitions()

    def purge_tombstones(self, older_than_ms: int) -> int:
        return self.local.purge_tombstones(older_than_ms)

    def drop(self) -> None:
        self.local.drop()

    def close(self) -> None:
        """The coordinator's adapter is closed by its owner (the engine), not through this view."""


__all__ = ["MIN_UNIT_RECORDS", "UnitAdapter"]
