"""Conditional apply shared by every adapter that reads before it writes.

Cosmos DB (etags) and GCS (generations) both follow read → decide → write-if-unchanged;
the loop, the race handling and the batch fan-out live here once. An adapter supplies
two small functions; if the store reports that the precondition failed (someone wrote
in between), the loop reads again and decides again, so concurrent writers never lose
the newer version.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, Sequence, TypeVar

from .errors import AdapterError, RecordError
from .interface import ApplyOutcome, ApplyResult, ReplicaTarget, decide, rejected, result_of
from .record import Record, RecordKey, ReplicationMeta, Version, meta_if_valid

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
        if decide(record.meta, stored_meta) is not ApplyOutcome.APPLIED:
            return result_of(record, stored_meta, stored.record)
        try:
            write(stored.token)
        except PreconditionFailed as exc:
            last = exc
            continue
        return ApplyResult(record.key, ApplyOutcome.APPLIED, existing=stored.record)
    raise last or PreconditionFailed("conditional write kept losing races", retryable=True)


#: threads every apply_each call of the process shares: made as calls need them and kept, so a
#: batch does not start (and stop) a pool of its own — under load a new thread waits for the
#: interpreter lock before it can run, which cost more than a request to a nearby store
_APPLY_THREADS = ThreadPoolExecutor(max_workers=256, thread_name_prefix="apply")


def apply_each(target: ReplicaTarget, records: Sequence[Record],
               apply: Callable[[Record], ApplyResult], workers: int = 8) -> list[ApplyResult]:
    """Run ``apply`` over ``records`` concurrently, results in input order.

    Records of one key never run at the same time: they go in rounds (the first record
    of every key, then the second, …) so a batch holding v1, v2, v3 of a key applies
    them in batch order and reports each as a store would, exactly as one-at-a-time
    delivery would. Different keys run concurrently, at most ``workers`` at once per call,
    on the process's shared apply threads (``apply`` must not wait on apply_each itself).

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
    for round_ in rounds_by_key(records):
        pending = iter(round_)
        lock = threading.Lock()

        def runner() -> None:
            while True:
                with lock:
                    i = next(pending, None)
                if i is None:
                    return
                results[i] = one(records[i])
        runners = [_APPLY_THREADS.submit(runner) for _ in range(min(workers, len(round_)))]
        errors = [f.exception() for f in runners]      # every runner settles before any error is raised
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
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


class KnownStates(Generic[Token]):
    """What this adapter last wrote per key — store token and version — bounded, least recently used out.

    Learned only from our own acknowledged writes, so an entry says "generation/etag T
    holds version V (vector W), written by us". Used as the write's precondition, that is
    exactly as safe as a fresh read: if anything changed the item since (a native edit,
    another writer, a delete), the token no longer matches, the store answers 412 and
    the caller forgets the entry and reads. Entries are compact (~400 bytes: no body, no
    hashes) and at most ``capacity``, so memory is bounded whatever N is.

    It also keeps a running guess of whether keys it does not know are absent (an
    initial sync into an empty replica) or present, so the caller can try a create-only
    write first and read only when that fails.
    """

    def __init__(self, capacity: int = 8192) -> None:
        self.capacity = max(0, int(capacity))
        self._items: OrderedDict[str, tuple[Token, str, tuple[tuple[str, str], ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self._absent = 1.0          # moving average of "an unknown key turned out to be absent"

    def get(self, name: str) -> tuple[Token, ReplicationMeta] | None:
        """``(token, meta)`` of our last write of ``name``; ``meta`` carries version and vector only."""
        with self._lock:
            found = self._items.get(name)
            if found is None:
                return None
            self._items.move_to_end(name)
        token, version, vector = found
        return token, ReplicationMeta(Version.parse(version), "", vector=dict(vector))

    def remember(self, name: str, token: Token, meta: ReplicationMeta) -> None:
        if self.capacity == 0:
            return
        entry = (token, meta.version.token, tuple(meta.vector.items()))
        with self._lock:
            self._items[name] = entry
            self._items.move_to_end(name)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def forget(self, name: str) -> None:
        with self._lock:
            self._items.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def observe_absent(self, absent: bool) -> None:
        """Record whether an unknown key was absent (a create-only write landed, or a read found nothing)."""
        with self._lock:
            self._absent = 0.9 * self._absent + (0.1 if absent else 0.0)

    @property
    def expect_absent(self) -> bool:
        """Most unknown keys lately were absent: a create-only write first saves the read."""
        return self._absent >= 0.5

    def __len__(self) -> int:
        return len(self._items)


def apply_with_known(record: Record, name: str, known: KnownStates[Token],
                     load: Callable[[], StoredState[Token]],
                     write: Callable[[Token | None], Token], *, create_first: bool = True) -> ApplyResult:
    """Conditional apply that skips the read when the stored state is already known.

    * key known (we wrote it last) and the incoming version is newer and not concurrent:
      one write conditioned on the remembered token;
    * key unknown and recent unknown keys were absent (``create_first``): one create-only
      write (token ``None``);
    * otherwise, or when that write's precondition fails (someone else wrote — a 412 or
      409 — so the guess was wrong): :func:`read_decide_write`, which reads and decides
      again, so the newest version still wins.

    ``write(token)`` returns the new store token and must raise :class:`PreconditionFailed`
    on a mismatch (``None`` = "must not exist"). Stale, replayed and conflicting
    decisions are always made on a fresh read, never on the remembered state.
    """
    meta = record.meta
    assert meta is not None, "apply needs stamped records"
    entry = known.get(name)
    if entry is not None:
        token, stored = entry
        if decide(meta, stored) is ApplyOutcome.APPLIED:
            try:
                known.remember(name, write(token), meta)
                # existing=None: the adapter did not read the stored record this time
                return ApplyResult(record.key, ApplyOutcome.APPLIED, None)
            except PreconditionFailed:
                pass                              # changed since our write: read and decide
        known.forget(name)
    elif create_first and known.expect_absent:
        try:
            new_token = write(None)
        except PreconditionFailed:
            known.observe_absent(False)
        else:
            known.observe_absent(True)
            known.remember(name, new_token, meta)
            return ApplyResult(record.key, ApplyOutcome.APPLIED, None, existing=None)

    written: list[Token] = []
    loads: list[bool] = []

    def observed_load() -> StoredState[Token]:
        stored = load()
        if entry is None and not loads:
            known.observe_absent(stored.token is None)
        loads.append(True)
        return stored

    def remembering_write(token: Token | None) -> None:
        written.append(write(token))

    result = read_decide_write(record, observed_load, remembering_write)
    if written:
        known.remember(name, written[-1], meta)
    return result
