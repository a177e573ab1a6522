"""Verify by ranges: one listing per (location, range), results loaded as they arrive, failures never clean.

These run on the in-memory reference adapter (our own implementation of our own
interface, which cuts its keyspace into hash slices); that every real adapter's ranges
partition its listing exactly is the contract suite's ``test_ranged_digests_partition_the_listing``,
run against each emulator.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import pytest

from mcrepl.adapters.base import Digest, RecordKey, UnavailableError, Version
from mcrepl.adapters.base.digest_ranges import DigestRange, ranges_of
from mcrepl.adapters.memory.adapter import MemoryAdapter
from mcrepl.orchestrator.sync.units import DigestUnit
from mcrepl.orchestrator.sync.workers import InlineUnitExecutor, ThreadUnitExecutor, digest_listing
from mcrepl.orchestrator.verify import DivergenceKind, compare_adapters, iter_divergences, listing_jobs
from mcrepl.testing.records import doc

from .contract.backends import BACKENDS
from .test_verify import engine_over

MEMORY = next(b for b in BACKENDS if b.id == "memory")


class FailingRange(MemoryAdapter):
    """A memory store whose third range cannot be listed (a store that fails half-way)."""

    def list_range_digests(self, part: DigestRange) -> Iterator[Digest]:
        if part.index == 2:
            raise UnavailableError("the listing of this range failed", provider="memory",
                                   replica=self.target.replica, dataset=self.target.dataset, operation="list_digests")
        return super().list_range_digests(part)


def _pair(kind: type[MemoryAdapter] = MemoryAdapter) -> dict[str, MemoryAdapter]:
    target = MEMORY.target({})
    primary = MemoryAdapter(dataclasses.replace(target, replica="dynamodb:eu-west-1"))
    other = kind(dataclasses.replace(target, replica="gcs:europe-west1"))
    return {primary.target.replica: primary, other.target.replica: other}


def _seed(pair: dict[str, MemoryAdapter], n: int = 400) -> set[str]:
    """``n`` keys on both sides; then one side changed on keys that fall in different ranges."""
    records = [doc(f"k{i:05d}", n=i).stamped(Version(1_700_000_000_000 + i, 0, "t")) for i in range(n)]
    primary, other = pair.values()
    primary.apply_batch(records)
    other.apply_batch(records)
    changed = {f"k{i:05d}" for i in range(0, n, 37)}
    other.apply_batch([doc(k, n=-1).stamped(Version(1_800_000_000_000, 0, "t")) for k in sorted(changed)])
    return changed


def test_divergences_in_every_range_are_found_on_threads_and_on_units() -> None:
    pair = _pair()
    changed = _seed(pair)
    ranges = ranges_of(pair["gcs:europe-west1"])
    assert len(ranges) >= 4, "the memory adapter cuts even a small store into ranges"
    in_ranges = {p.index for p in ranges if p is not None
                 for d in pair["gcs:europe-west1"].list_range_digests(p) if d.key_id in changed}
    assert len(in_ranges) > 1, "the injected divergence spans several ranges"

    on_threads = compare_adapters("contract", pair)
    assert {d.key_id for d in iter_divergences(on_threads)} == changed
    assert {d.kind for d in iter_divergences(on_threads)} == {DivergenceKind.STALE}
    assert on_threads.keys == {name: 400 for name in pair}

    for executor in (InlineUnitExecutor(lambda t: pair[t.replica]),
                     ThreadUnitExecutor(lambda t: pair[t.replica], threads=3)):
        try:
            on_units = compare_adapters("contract", pair, listing=digest_listing(
                executor, {n: a.target for n, a in pair.items()}))
        finally:
            executor.close()
        assert [d.to_dict() for d in iter_divergences(on_units)] == \
            [d.to_dict() for d in iter_divergences(on_threads)]
        assert on_units.keys == on_threads.keys
        assert sum(executor.by_worker.values()) == len(listing_jobs(pair)), "one unit per (location, range)"


def test_jobs_interleave_locations_range_by_range() -> None:
    pair = _pair()
    jobs = listing_jobs(pair)
    names = [name for name, _ in jobs]
    assert names[:4] == [*pair, *pair], "both sides advance together, so both are listed at once"
    assert all(isinstance(part, DigestRange) for _, part in jobs)


def test_units_never_hold_more_ranges_than_are_in_flight() -> None:
    """The coordinator holds at most ``in_flight`` ranges' digests: later units start as earlier ones finish."""
    pair = _pair()
    _seed(pair)
    executor = InlineUnitExecutor(lambda t: pair[t.replica])
    units = [DigestUnit(a.target, p) for _, a in pair.items() for p in ranges_of(a)]
    started: list[int] = []
    real_submit = executor.submit

    def counting(unit: DigestUnit):  # type: ignore[no-untyped-def]
        started.append(len(started))
        return real_submit(unit)
    executor.submit = counting  # type: ignore[method-assign]
    stream = executor.as_completed(units, in_flight=2)
    next(stream)
    assert len(started) == 2, "only two units were started before the first result was taken"
    rest = list(stream)
    assert len(rest) == len(units) - 1 and len(started) == len(units)


def test_a_range_that_fails_to_list_fails_the_verify() -> None:
    pair = _pair(FailingRange)
    _seed(pair)
    with pytest.raises(UnavailableError) as raised:
        compare_adapters("contract", pair)
    assert "range 3 of" in "".join(getattr(raised.value, "__notes__", [])) or \
        "hash slice 3" in "".join(getattr(raised.value, "__notes__", []))
    executor = InlineUnitExecutor(lambda t: pair[t.replica], pickled=False)
    with pytest.raises(UnavailableError):
        compare_adapters("contract", pair, listing=digest_listing(executor, {n: a.target for n, a in pair.items()}))


def test_repair_with_a_failed_range_is_never_converged(tmp_path: Path) -> None:
    pair = _pair(FailingRange)
    primary, other = pair.values()
    other.write_native([doc("stray", n=1)])
    _, verdict = engine_over(dict(pair), tmp_path).repair("contract")
    assert not verdict.converged
    assert "could not compare the copies" in verdict.detail
    assert other.read(RecordKey(("stray",))) is not None, "nothing was repaired from a partial comparison"


def test_a_range_whose_worker_died_is_leased_again() -> None:
    from concurrent.futures import Future

    from mcrepl.orchestrator.sync.workers import WorkerLost
    pair = _pair()
    changed = _seed(pair)
    executor = InlineUnitExecutor(lambda t: pair[t.replica])
    executor.attempts = 3
    real_submit, lost = executor.submit, []

    def dying(unit: DigestUnit) -> "Future":  # type: ignore[type-arg]
        if unit.part is not None and unit.part.index == 1 and unit not in lost:
            lost.append(unit)
            future: Future = Future()  # type: ignore[type-arg]
            future.set_exception(WorkerLost("killed"))
            return future
        return real_submit(unit)
    executor.submit = dying  # type: ignore[method-assign]
    report = compare_adapters("contract", pair, listing=digest_listing(executor, {n: a.target for n, a in pair.items()}))
    assert {d.key_id for d in iter_divergences(report)} == changed
    assert executor.released == len(lost) == 2
