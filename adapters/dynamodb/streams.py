"""Reading a DynamoDB stream shard by shard, with a cursor of per-shard sequence numbers.

Guarantees (what :mod:`.capture` builds on):

* every record after the cursor is returned once: ``GetRecords`` is asked for at most
  the records still wanted, and the cursor keeps the sequence number of the last record
  returned per shard, so a restart resumes exactly after it (``AFTER_SEQUENCE_NUMBER``);
* per-key order: a key's changes move to a child shard only when its parent closes, and
  a child is read only after its parent is finished;
* a position the stream can no longer serve (trimmed data, a vanished shard or stream,
  an expired iterator) raises :class:`CursorUnusable`; the caller falls back to a full scan.

A follower polls the same stream several times a second, so what a poll learns is kept
for the next one (:class:`~.stream_memo.StreamMemo`, as the KCL keeps its shard iterators
and syncs its shard list only now and then): a steady poll is one ``GetRecords`` per open
shard, not a ``DescribeStream`` and a ``GetShardIterator`` before it. The memo only saves requests; a
remembered iterator is used only for exactly the position the cursor names, and an
iterator that expired is replaced by a fresh one, never taken for a lost position.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from ..base.errors import RecordError
from ..base.interface import Change, Cursor, DatasetKind
from ..base.record import KeySchema, Record, meta_if_valid
from .clients import DynamoDBClients
from .errors import error_code
from .stream_memo import Shard
from .wire import META_ATTR, decode_item, decode_key, decode_meta, key_body

#: errors meaning "this stream position is gone", answered by a fresh full scan
LOST_POSITION_CODES = frozenset({"TrimmedDataAccessException", "ExpiredIteratorException",
                                 "ResourceNotFoundException"})
_MAX_RECORDS_PER_CALL = 1000        # GetRecords' own upper limit
_MAX_EMPTY_READS_CLOSED = 50        # a closed shard may answer empty pages before its end
CHASE_S = 0.1
"""How long one read follows an open shard's moving tip after it has records to return."""


class CursorUnusable(Exception):
    """The saved stream position can't be resumed; ``reason`` says why (for the log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class StreamPosition:
    """Where capture stands in one stream: the last sequence number returned per shard.

    ``shards[id] is None`` means "read from the shard's start"; ``finished`` lists
    closed shards read to their end (dropped once the stream no longer lists them).
    """

    stream: str
    shards: dict[str, str | None] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    overlap_until: dict[str, str] = field(default_factory=dict)
    """Per shard, the last sequence number written while a table scan ran ("" = the shard's
    end): records up to it are the scan's overlap window (see ``ChangePage.overlap``)."""

    def to_cursor(self) -> Cursor:
        """The JSON-safe stream-phase cursor for this position."""
        cursor: Cursor = {"phase": "stream", "stream": self.stream, "shards": dict(self.shards),
                          "finished": sorted(self.finished)}
        if self.overlap_until:
            cursor["overlap_until"] = dict(self.overlap_until)
        return cursor

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any]) -> StreamPosition:
        """Read a stream-phase cursor back; a malformed one is :class:`CursorUnusable`."""
        try:
            shards = {str(k): (str(v) if v is not None else None) for k, v in dict(cursor["shards"]).items()}
            overlap = {str(k): str(v) for k, v in dict(cursor.get("overlap_until") or {}).items()}
            return cls(str(cursor["stream"]), shards, {str(s) for s in cursor.get("finished", [])}, overlap)
        except (KeyError, TypeError, ValueError) as exc:
            raise CursorUnusable(f"the stream cursor is malformed ({type(exc).__name__})") from exc

    def with_overlap_until(self, end: "StreamPosition") -> "StreamPosition":
        """This position (taken before a scan) with the window up to ``end`` (taken after it) marked."""
        bounds: dict[str, str] = {}
        for sid, seq in end.shards.items():
            if seq is not None and seq != self.shards.get(sid):
                bounds[sid] = seq
        for sid in end.finished - self.finished:
            bounds[sid] = ""
        return StreamPosition(self.stream, dict(self.shards), set(self.finished), bounds)


def _stream_call(clients: DynamoDBClients, operation: str, fn: Callable[[], Any]) -> Any:
    """A guarded streams call where 'position lost' errors become :class:`CursorUnusable`."""
    def attempt() -> Any:
        try:
            return fn()
        except Exception as exc:
            code = error_code(exc)
            if code in LOST_POSITION_CODES:
                raise CursorUnusable(f"{operation} answered {code}") from exc
            raise
    return clients.guard(operation, attempt)


def list_shards(clients: DynamoDBClients, stream_arn: str) -> list[Shard]:
    """Every shard the stream lists, parents before children (and remembered for :func:`known_shards`)."""
    shards: list[Shard] = []
    start: str | None = None
    while True:
        kwargs: dict[str, Any] = {"StreamArn": stream_arn}
        if start:
            kwargs["ExclusiveStartShardId"] = start
        desc = _stream_call(clients, "describe_stream",
                            partial(clients.streams.describe_stream, **kwargs))["StreamDescription"]
        for s in desc.get("Shards", []):
            shards.append(Shard(s["ShardId"], s.get("ParentShardId"),
                                "EndingSequenceNumber" in s.get("SequenceNumberRange", {})))
        start = desc.get("LastEvaluatedShardId")
        if not start:
            ordered = _parents_first(shards)
            clients.stream_memo.keep_shards(stream_arn, ordered)
            return ordered


def known_shards(clients: DynamoDBClients, stream_arn: str, named: Iterable[str]) -> list[Shard]:
    """The remembered shard list while it is fresh and has every shard in ``named``; else a new listing."""
    shards = clients.stream_memo.shards(stream_arn)
    if shards is None or not set(named) <= {s.id for s in shards}:
        return list_shards(clients, stream_arn)
    return shards


def _parents_first(shards: Sequence[Shard]) -> list[Shard]:
    by_id = {s.id: s for s in shards}

    def depth(s: Shard) -> int:
        d, seen = 0, {s.id}
        while s.parent in by_id and s.parent not in seen:
            s = by_id[s.parent]
            seen.add(s.id)
            d += 1
        return d
    return sorted(shards, key=lambda s: (depth(s), s.id))


def _iterator(clients: DynamoDBClients, arn: str, shard: str, after: str | None) -> str | None:
    kwargs: dict[str, Any] = {"StreamArn": arn, "ShardId": shard}
    if after is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
    return _stream_call(clients, "get_shard_iterator",
                        partial(clients.streams.get_shard_iterator, **kwargs)).get("ShardIterator")


def read_shard(clients: DynamoDBClients, arn: str, shard: Shard, after: str | None,
               limit: int) -> tuple[list[dict[str, Any]], bool, bool]:
    """Up to ``limit`` raw records after ``after``; whether a closed shard was read to its end;
    and whether the read stopped short of the shard's tip (more may be there now).

    An open shard is read until it answers an empty page (its tip), but for no longer than
    :data:`CHASE_S` once it has given records: under a steady write rate the tip moves on
    while it is read, and what was read waits uncommitted until the read returns. The
    caller reads on at once (``more``). The iterator for where the read stopped is
    remembered, so the next read from there starts with ``GetRecords``.
    """
    memo = clients.stream_memo
    iterator = memo.take_iterator(arn, shard.id, after)
    remembered = iterator is not None
    if iterator is None:
        iterator = _iterator(clients, arn, shard.id, after)
    records: list[dict[str, Any]] = []
    empty_reads = 0
    short = False
    deadline = time.monotonic() + CHASE_S
    while iterator and len(records) < limit:
        if records and time.monotonic() >= deadline:
            short = True
            break
        want = min(_MAX_RECORDS_PER_CALL, limit - len(records))
        try:
            resp = _stream_call(clients, "get_records",
                                partial(clients.streams.get_records, ShardIterator=iterator,
                                        Limit=want))
        except CursorUnusable:
            if not remembered:
                raise
            remembered = False               # it expired while kept: a fresh one for the same position
            iterator = _iterator(clients, arn, shard.id, records[-1]["dynamodb"]["SequenceNumber"]
                                 if records else after)
            continue
        remembered = False
        batch = resp.get("Records", [])
        records += batch
        iterator = resp.get("NextShardIterator")
        if batch:
            empty_reads = 0
            continue
        empty_reads += 1
        if not shard.closed or empty_reads >= _MAX_EMPTY_READS_CLOSED:
            break
    if iterator:
        memo.keep_iterator(arn, shard.id, records[-1]["dynamodb"]["SequenceNumber"] if records else after,
                           iterator)
    return records, iterator is None, short


def read_changes(clients: DynamoDBClients, schema: KeySchema, kind: DatasetKind, pos: StreamPosition,
                 limit: int) -> tuple[list[Change], StreamPosition, bool, list[RecordError], bool]:
    """The next changes after ``pos`` (at most ``limit``), the position after them, ``more``,
    the stream records that could not be decoded (passed over, for quarantine), and whether
    these changes are the overlap window of a preceding scan (then only window shards are
    read, each up to its bound, so a page is all overlap or none)."""
    shards = known_shards(clients, pos.stream, pos.shards)
    known = {s.id for s in shards}
    for sid, seq in pos.shards.items():
        if sid not in known and seq is not None and sid not in pos.finished:
            raise CursorUnusable(f"shard {sid} left the stream before it was read to its end "
                                 "(its records were trimmed)")
    window = {s: b for s, b in pos.overlap_until.items() if s in known}
    overlap = bool(window)
    new = StreamPosition(pos.stream, {s: q for s, q in pos.shards.items() if s in known},
                         {s for s in pos.finished if s in known}, dict(window))
    changes: list[Change] = []
    rejected: list[RecordError] = []
    more = False
    for shard in shards:
        if shard.id in new.finished:
            continue
        if shard.parent in known and shard.parent not in new.finished:
            more = True                  # its parent still has records to give first
            continue
        if overlap and shard.id not in window:
            more = True                  # read after the window closes
            continue
        remaining = limit - len(changes)
        if remaining <= 0:
            more = True
            break
        records, ended, short = read_shard(clients, pos.stream, shard, new.shards.get(shard.id), remaining)
        if overlap:
            records, ended = _within(records, ended, window[shard.id], new, shard.id)
        if records:
            new.shards[shard.id] = records[-1]["dynamodb"]["SequenceNumber"]
        else:
            new.shards.setdefault(shard.id, None)
        for raw in records:
            try:
                change = to_change(raw, schema, kind)
            except RecordError as err:
                rejected.append(err)
                continue
            if change is not None:
                changes.append(change)
        if ended:
            new.finished.add(shard.id)
            new.shards.pop(shard.id, None)
            clients.stream_memo.forget_shards(pos.stream)   # its children are listed from now on
        elif len(records) >= remaining or short:
            more = True
    if overlap:
        more = True                      # the page that closes the window comes next
    return changes, new, more, rejected, overlap


def _within(records: list[dict[str, Any]], ended: bool, bound: str, pos: StreamPosition,
            shard: str) -> tuple[list[dict[str, Any]], bool]:
    """Records up to the shard's window bound; the bound is dropped from ``pos`` once reached."""
    if bound == "":
        if ended:
            pos.overlap_until.pop(shard, None)
        return records, ended
    inside = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) <= int(bound)]
    last = inside[-1]["dynamodb"]["SequenceNumber"] if inside else pos.shards.get(shard)
    if len(inside) < len(records) or (last is not None and int(last) >= int(bound)) or ended:
        pos.overlap_until.pop(shard, None)
    return inside, ended and len(inside) == len(records)


def position_at_end(clients: DynamoDBClients, stream_arn: str,
                    since: StreamPosition | None = None) -> StreamPosition:
    """A position after every record the stream holds now.

    Closed shards hold only records written before now: they are finished without being
    read. Open shards are read to their tip, since DynamoDB has no call that names a
    shard's latest sequence number (and a ``LATEST`` iterator cannot be saved). A known
    earlier position ``since`` (the one taken before a scan) is where each shard's read
    starts: only what was written after it is read again, not the whole 24 hours.
    """
    pos = StreamPosition(stream_arn)
    for shard in list_shards(clients, stream_arn):
        if shard.closed:
            pos.finished.add(shard.id)
            continue
        last = since.shards.get(shard.id) if since is not None and since.stream == stream_arn else None
        while True:
            records, ended, _ = read_shard(clients, stream_arn, shard, last, 10 * _MAX_RECORDS_PER_CALL)
            if records:
                last = records[-1]["dynamodb"]["SequenceNumber"]
            if ended:
                pos.finished.add(shard.id)
                break
            if not records:
                pos.shards[shard.id] = last
                break
    return pos


def to_change(raw: Mapping[str, Any], schema: KeySchema, kind: DatasetKind) -> Change | None:
    """One stream record as a :class:`Change` (``None`` for the removal of a purged tombstone).

    An item whose metadata no longer matches its body was written by an application
    (``record.meta=None``); ``previous`` is the metadata the old image carried, so the
    engine can extend that version's vector.
    """
    ddb = raw["dynamodb"]
    observed = _millis(ddb.get("ApproximateCreationDateTime"))
    old = ddb.get("OldImage")
    previous = decode_meta(old.get(META_ATTR)) if old else None
    if raw.get("eventName") == "REMOVE":
        if previous is not None and previous.tombstone:
            return None                  # purge_tombstones at work, not an application delete
        key = decode_key(ddb["Keys"], schema)
        return Change(Record(key, key_body(key, schema, kind), None), observed, previous,
                      native_delete=True)
    record = decode_item(ddb["NewImage"], schema, kind)
    return Change(Record(record.key, record.body, meta_if_valid(record)), observed, previous)


def _millis(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, (int, float)):
        return int(value * 1000)
    return None
