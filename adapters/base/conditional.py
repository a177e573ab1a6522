"""Conditional apply shared by every adapter that reads before it writes.

Cosmos DB (etags) and GCS (generations) both follow read → decide → write-if-unchanged;
the loop, the race handling and the batch fan-out live here once. An adapter supplies
two small functions; if the store reports that the precondition failed (someone wrote
in between), the loop reads again and decides again, so concurrent writers never lose
the newer version.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, Sequence, TypeVar

from .errors import AdapterError, RecordError
from .interface import ApplyOutcome, ApplyResult, ReplicaTarget, conflict_between, decide, rejected
from .record import Record, RecordKey, ReplicationMeta, meta_if_valid

Token = TypeVar("Token")


class PreconditionFailed(AdapterError):
    """The stored item changed between our read and our write (etag/generation mismatch)."""


class StoredState(Generic[Token]):
    """What the adapter read: the stored record (or ``None``) and its concurrency token.

    ``meta`` is metadata the adapter has already proven valid without reading the body
    (GCS: the object's own MD5 equals the one recorded at write time); when given, the
    loop trusts it instead of re-hashing ``record.body``.
    """

    __slots__ = ("record", "token", "meta")

    def __init__(self, record: Record | None, token: Token | None,
                 meta: ReplicationMeta | None = None) -> None:
        self.record = record
        self.token = token
        self.meta = meta


def read_decide_write(record: Record, load: Callable[[], StoredState[Token]],
                      write: Callable[[Token | None], None], attempts: int = 8) -> ApplyResult:
    """Apply one stamped record: write only if newer than what ``load`` returns.

    ``write(token)`` must raise :class:`PreconditionFailed` when the token no longer
    matches (``None`` token = "must not exist yet").
    """
    assert record.meta is not None, "apply needs stamped records"
    last: PreconditionFailed | None = None
    for _ in range(attempts):
        stored = load()
        stored_meta = stored.meta or (meta_if_valid(stored.record) if stored.record is not None else None)
        outcome = decide(record.meta, stored_meta)
        if outcome is ApplyOutcome.APPLIED:
            try:
                write(stored.token)
            except PreconditionFailed as exc:
                last = exc
                continue
        return ApplyResult(record.key, outcome, conflict_between(record.meta, stored_meta),
                           existing=stored.record)
    raise last or PreconditionFailed("conditional write kept losing races", retryable=True)


def apply_each(target: ReplicaTarget, records: Sequence[Record],
               apply: Callable[[Record], ApplyResult], workers: int = 8) -> list[ApplyResult]:
    """Run ``apply`` over ``records`` concurrently, results in input order.

    Records of one key never run at the same time: they go in rounds (the first record
    of every key, then the second, …) so a batch holding v1, v2, v3 of a key applies
    them in batch order and reports each as a store would, exactly as one-at-a-time
    delivery would. Different keys run concurrently.

    A :class:`RecordError` for one record becomes its ``REJECTED`` result and the rest
    of the batch still lands; any other error propagates after the batch settles, so
    the caller (and its retry) sees the failure instead of a silent gap.
    """
    def one(rec: Record) -> ApplyResult:
        try:
            return apply(rec)
        except RecordError as err:
            return rejected(rec, err, target)

    if len(records) <= 1 or workers <= 1:
        return [one(r) for r in records]
    results: list[ApplyResult | None] = [None] * len(records)
    with ThreadPoolExecutor(max_workers=min(workers, len(records)),
                            thread_name_prefix=f"apply-{target.provider}") as pool:
        for round_ in rounds_by_key(records):
            for i, result in zip(round_, pool.map(one, [records[i] for i in round_])):
                results[i] = result
    return [r for r in results if r is not None]


def rounds_by_key(records: Sequence[Record]) -> list[list[int]]:
    """Record indexes split into rounds holding at most one record per key, in batch order."""
    rounds: list[list[int]] = []
    seen: dict[RecordKey, int] = {}
    for i, record in enumerate(records):
        k = seen.get(record.key, 0)
        seen[record.key] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds
