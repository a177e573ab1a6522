"""``apply_each``: every adapter's per-record conditional writes, run concurrently.

What it promises its adapters: results in input order; a key's versions applied one after
another, in batch order; at most ``workers`` records of a call at once; one record's
``RecordError`` rejects that record only; and a batch runs on threads the process keeps,
not on a pool started and stopped for every call.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
from mcrepl.adapters.base import ApplyOutcome, ApplyResult, KeyAttribute, KeySchema, Record, Version, document
from mcrepl.adapters.base.conditional import apply_each
from mcrepl.adapters.base.errors import RecordError
from mcrepl.adapters.base.interface import ReplicaTarget

SCHEMA = KeySchema(KeyAttribute("pk"))
TARGET = ReplicaTarget(replica="memory:test", provider="memory", region="test", dataset="ds", kind="document",
                       key_schema=SCHEMA, resource="t")


def records(keys: list[str]) -> list[Record]:
    return [document(SCHEMA, {"pk": k, "n": i}).stamped(Version(10**12 + i, 0, "memory:test"))
            for i, k in enumerate(keys)]


class Recorder:
    """An ``apply`` that notes what ran when, on which thread, and how many ran at once."""

    def __init__(self, pause: float = 0.005) -> None:
        self.pause = pause
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.order: dict[str, list[int]] = defaultdict(list)
        self.threads: set[str] = set()

    def __call__(self, record: Record) -> ApplyResult:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
        time.sleep(self.pause)
        with self.lock:
            self.running -= 1
            self.order[record.key.id].append(record.body["n"])     # type: ignore[index]
        return ApplyResult(record.key, ApplyOutcome.APPLIED, None)


def test_results_keep_input_order_and_a_keys_versions_apply_in_batch_order() -> None:
    batch = records([f"k{i % 5}" for i in range(40)])       # eight versions of each of five keys
    apply = Recorder()
    results = apply_each(TARGET, batch, apply, workers=4)
    assert [r.key.id for r in results] == [r.key.id for r in batch]
    assert all(versions == sorted(versions) for versions in apply.order.values()), apply.order
    assert apply.most <= 4, "at most `workers` records of one call at once"


def test_a_batch_runs_on_threads_the_process_keeps() -> None:
    first, second = Recorder(), Recorder()
    apply_each(TARGET, records([f"a{i}" for i in range(16)]), first, workers=8)
    before = {t.name for t in threading.enumerate()}
    apply_each(TARGET, records([f"b{i}" for i in range(16)]), second, workers=8)
    assert second.threads <= before, f"new threads for the second batch: {second.threads - before}"
    assert all(name.startswith("apply") for name in first.threads | second.threads)


def test_a_record_error_rejects_that_record_only_and_other_errors_propagate() -> None:
    def picky(record: Record) -> ApplyResult:
        if record.key.id == "bad":
            raise RecordError("too-large", "the item is larger than the store takes")
        if record.key.id == "boom":
            raise ConnectionError("the store went away")
        return ApplyResult(record.key, ApplyOutcome.APPLIED, None)

    outcomes = [r.outcome for r in apply_each(TARGET, records(["a", "bad", "c"]), picky, workers=8)]
    assert outcomes == [ApplyOutcome.APPLIED, ApplyOutcome.REJECTED, ApplyOutcome.APPLIED]
    with pytest.raises(ConnectionError):
        apply_each(TARGET, records(["a", "boom", "c"]), picky, workers=8)
