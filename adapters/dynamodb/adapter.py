"""DynamoDB behind the replica interface: one table per dataset per region.

Each item is the record's body in native DynamoDB types plus the reserved ``_mcrepl``
map (see :mod:`.wire`). Apply needs no read: every record is one conditional
put whose condition compares version tokens *and* the version vector inside DynamoDB
(see :func:`newer_condition`), so a concurrent version is never overwritten; the item
returned with a failed condition tells a replay (same token) from a stale write from a
conflict. A batch goes out as ``TransactWriteItems`` of up to 100 such puts
(:mod:`.transact`; option ``batch_writes``: ``transact``, and ``auto`` on AWS) or one
``PutItem`` per record (``single``, and ``auto`` on the local stack: moto restores a copy
of the whole table when a transaction is cancelled, undoing concurrent writes).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from ..base.conditional import apply_each
from ..base.digest_ranges import DigestRange, ranges_for
from ..base.errors import AdapterError, RecordError
from ..base.interface import (
    ApplyOutcome,
    ApplyResult,
    ChangePage,
    Cursor,
    Digest,
    ReplicaAdapter,
    ReplicaTarget,
    conflict_between,
    decide,
    result_of,
)
from ..base.record import Record, RecordKey, ReplicationMeta, meta_if_valid
from ..base.reserved import heartbeat_record
from ..base.pools import pool_size
from ..base.retry import policy_for
from .capture import capture, current_position
from .clients import DynamoDBClients
from .errors import error_code, error_item
from .settings import SPEC, uses_transactions
from .tables import drop_table, ensure_table, item_count
from .transact import apply_transacted, exact_origins_condition
from .wire import META_ATTR, Item, decode_item, decode_key, decode_meta, encode_item, encode_key

_UNCHANGED_META = "#m = :old"          # overwrite exactly the native-edited state we read
_SCAN_SEGMENTS = 4
_MAX_SEGMENTS = 1000          # DynamoDB's own limit is 1,000,000; more only costs empty pages
_BATCH_WRITE_MAX = 25
_BATCH_GET_MAX = 100
_APPLY_ATTEMPTS = 8


class DynamoDBAdapter(ReplicaAdapter):
    """One DynamoDB table (``target.resource``) in ``target.region``.

    ``target.options``: ``endpoint`` (None for AWS), ``profile``, ``table_prefix`` and
    ``local`` (dummy credentials for the local stack). Clients are created on first use,
    so an adapter can be built cheaply from a picklable target anywhere.
    """

    capabilities = SPEC.capabilities

    def __init__(self, target: ReplicaTarget, workers: int = 8) -> None:
        super().__init__(target)
        self.workers = workers
        self.clients = DynamoDBClients(target, policy_for(target.options), max_connections=pool_size(target.options, max(10, 2 * workers)))
        self.transact = uses_transactions(target.options)

    # --- lifecycle ---------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        """Create the table (on-demand, stream with both images) or check the existing one."""
        ensure_table(self.clients, self.target)

    def drop(self) -> None:
        """Delete the table (tests and ``local down``); an absent table is not an error."""
        drop_table(self.clients, self.target)

    def close(self) -> None:
        """Close the boto3 clients; they are rebuilt if the adapter is used again."""
        self.clients.close()

    # --- capture -------------------------------------------------------------------------------

    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        """Scan first (``cursor=None``), then the stream; see :mod:`.capture` for the guarantees."""
        return capture(self.clients, self.target, cursor, limit)

    def current_cursor(self) -> Cursor:
        """A stream cursor after every record the stream holds (cost grows with the stream)."""
        return current_position(self.clients, self.target)

    # --- apply -----------------------------------------------------------------------------------

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        """Conditional puts, in transactions of up to 100 or one ``PutItem`` each; results in input order.

        Records of one key are applied in batch order (the k-th record of every key goes
        in round k), so a batch carrying a key's successive versions reports each as
        applied, exactly as delivering them one by one would; distinct keys run concurrently.
        A single record goes as one put either way (a transaction of one costs more).
        """
        if self.transact and len(records) > 1:
            return apply_transacted(self.clients, self.target, records, applicable_condition,
                                    self._apply_one, workers=self.workers)
        return apply_each(self.target, records, self._apply_one, workers=self.workers)

    def _apply_one(self, record: Record) -> ApplyResult:
        if record.meta is None:
            raise RecordError("unstamped", "apply_batch needs records stamped with a version")
        item = encode_item(record, self.target.key_schema, self.target.kind)
        newer = applicable_condition(record.meta)
        condition, names, values = newer
        for _ in range(_APPLY_ATTEMPTS):
            landed, old_item = self._put_if(record, item, condition, names, values)
            old = decode_item(old_item, self.target.key_schema, self.target.kind) if old_item else None
            stored = meta_if_valid(old) if old is not None else None
            if landed:
                # the condition admits only stored vectors over exactly the origins the incoming one
                # has seen, or the exact metadata read and decided below: never a concurrent version
                return ApplyResult(record.key, ApplyOutcome.APPLIED, conflict_between(record.meta, stored),
                                   existing=old)
            if decide(record.meta, stored) is not ApplyOutcome.APPLIED:
                return result_of(record, stored, old)
            # the stored item's metadata no longer describes its body (an application edited
            # it in place): it counts as unversioned, so overwrite exactly what we read
            if old_item is None or META_ATTR not in old_item:
                condition, names, values = newer
            else:
                condition, names, values = _UNCHANGED_META, {"#m": META_ATTR}, {":old": old_item[META_ATTR]}
        raise AdapterError("conditional write kept losing races with concurrent writers", retryable=True,
                           provider="dynamodb", replica=self.target.replica, dataset=self.target.dataset,
                           operation="apply_batch", key=record.key.id)

    def _put_if(self, record: Record, item: Item, condition: str, names: dict[str, str],
                values: dict[str, Any]) -> tuple[bool, Item | None]:
        """(landed, the item as it was): the item before the write, or the one that blocked it."""
        def put() -> tuple[bool, Item | None]:
            try:
                resp = self.clients.table.put_item(
                    TableName=self.target.resource, Item=item, ConditionExpression=condition,
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                    ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False, error_item(exc)
                raise
            return True, resp.get("Attributes") or None
        return self.clients.guard("put_item", put, key=record.key.id)

    # --- reads -----------------------------------------------------------------------------------

    def read(self, key: RecordKey) -> Record | None:
        """The stored record with its metadata as stored (consistent read).

        A ``BatchGetItem`` of one key, as :meth:`read_many`: reading then needs one permission
        (``dynamodb:BatchGetItem``) whether the lanes read a window or anti-entropy one key.
        """
        return self.read_many([key])[0]

    def read_many(self, keys: Sequence[RecordKey]) -> list[Record | None]:
        """Consistent ``BatchGetItem`` reads, 100 distinct keys per call; answers in ``keys`` order."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, Record] = {}
        for start in range(0, len(unique), _BATCH_GET_MAX):
            for item in self._batch_get([encode_key(k, self.target.key_schema)
                                         for k in unique[start:start + _BATCH_GET_MAX]]):
                record = decode_item(item, self.target.key_schema, self.target.kind)
                found[record.key.id] = record
        return [found.get(key.id) for key in keys]

    def _batch_get(self, keys: list[Item]) -> list[Item]:
        """Every item of ``keys`` that exists, re-asking for ``UnprocessedKeys`` with jittered backoff."""
        items: list[Item] = []
        pending: list[Item] = keys
        delay = 0.05
        deadline = time.monotonic() + self.clients.policy.deadline_s
        while pending:
            request = {self.target.resource: {"Keys": pending, "ConsistentRead": True}}
            resp = self.clients.guard("batch_get_item",
                                      partial(self.clients.table.batch_get_item, RequestItems=request))
            items += resp.get("Responses", {}).get(self.target.resource, [])
            pending = resp.get("UnprocessedKeys", {}).get(self.target.resource, {}).get("Keys", [])
            if pending:
                if time.monotonic() > deadline:
                    raise AdapterError(f"DynamoDB left {len(pending)} reads unprocessed until the retry "
                                       "deadline (throttled)", retryable=True, provider="dynamodb",
                                       replica=self.target.replica, dataset=self.target.dataset,
                                       operation="batch_get_item")
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, self.clients.policy.max_backoff_s)
        return items

    def list_digests(self) -> Iterator[Digest]:
        """Digests from a parallel scan (``_SCAN_SEGMENTS`` segments, one page each in flight)."""
        return (self._digest_of(item) for item in self._parallel_scan())

    def digest_ranges(self) -> list[DigestRange]:
        """Parallel-scan segments, as many as keep a segment near :data:`RANGE_TARGET_KEYS` items.

        The size is DescribeTable's ``ItemCount`` (refreshed about every six hours on AWS:
        it only sizes the split; every segment is scanned to its end whatever it says).
        """
        n = ranges_for(item_count(self.clients, self.target), minimum=_SCAN_SEGMENTS, maximum=_MAX_SEGMENTS)
        return [DigestRange(i, n, i, f"scan segment {i} of {n}") for i in range(n)]

    def list_range_digests(self, part: DigestRange) -> Iterator[Digest]:
        """One scan segment (``Segment``/``TotalSegments``), page by page."""
        start: Any = None
        while True:
            kwargs: dict[str, Any] = {"TableName": self.target.resource, "Segment": int(part.spec),
                                      "TotalSegments": part.of, "ConsistentRead": True}
            if start is not None:
                kwargs["ExclusiveStartKey"] = start
            resp = self.clients.guard("scan", lambda: self.clients.table.scan(**kwargs))
            yield from (self._digest_of(item) for item in resp.get("Items", []))
            start = resp.get("LastEvaluatedKey")
            if start is None:
                return

    def _digest_of(self, item: Item) -> Digest:
        try:
            record = decode_item(item, self.target.key_schema, self.target.kind)
        except RecordError:
            # not a record of this dataset (capture quarantines it): hash the raw item so a
            # comparison shows it as a difference, as the GCS adapter does, instead of failing
            return Digest.of_undecodable(decode_key(item, self.target.key_schema).id, item)
        meta = meta_if_valid(record)
        if meta is not None:
            return Digest(record.key.id, meta.version.token, meta.comparable_hash, meta.tombstone)
        return Digest(record.key.id, None, record.digest_hash(False), False)

    def _parallel_scan(self, **extra: Any) -> Iterator[Item]:
        """Every item, read by parallel scan segments; memory stays at one page per segment."""
        last: dict[int, Any] = {seg: None for seg in range(_SCAN_SEGMENTS)}

        def page(seg: int) -> tuple[int, dict[str, Any]]:
            kwargs: dict[str, Any] = {"TableName": self.target.resource, "Segment": seg,
                                      "TotalSegments": _SCAN_SEGMENTS, "ConsistentRead": True, **extra}
            if last[seg] is not None:
                kwargs["ExclusiveStartKey"] = last[seg]
            return seg, self.clients.guard("scan", lambda: self.clients.table.scan(**kwargs))

        with ThreadPoolExecutor(max_workers=_SCAN_SEGMENTS, thread_name_prefix="scan-dynamodb") as pool:
            active = list(last)
            while active:
                results = list(pool.map(page, active))
                active = []
                for seg, resp in results:
                    yield from resp.get("Items", [])
                    last[seg] = resp.get("LastEvaluatedKey")
                    if last[seg] is not None:
                        active.append(seg)

    # --- native writes -------------------------------------------------------------------------

    def write_native(self, records: Sequence[Record]) -> None:
        """Plain ``BatchWriteItem`` puts, no ``_mcrepl``; a key written twice keeps its last body."""
        latest: dict[RecordKey, Item] = {}
        for record in records:
            item = encode_item(record, self.target.key_schema, self.target.kind, with_meta=False)
            latest.pop(record.key, None)
            latest[record.key] = item
        self._batch_write([{"PutRequest": {"Item": item}} for item in latest.values()])

    def write_heartbeat(self, written_ms: int) -> None:
        """The heartbeat as one plain ``PutItem`` (no ``_mcrepl``): the stream reports it as a native write."""
        record = heartbeat_record(self.target.key_schema, written_ms, blob_dataset=self.target.kind == "blob")
        item = encode_item(record, self.target.key_schema, self.target.kind, with_meta=False)
        self.clients.guard("put_item", lambda: self.clients.table.put_item(TableName=self.target.resource, Item=item),
                           key=record.key.id)

    def delete_native(self, keys: Sequence[RecordKey]) -> None:
        """Plain ``BatchWriteItem`` deletes (physical, no tombstone)."""
        unique = list(dict.fromkeys(keys))
        self._batch_write([{"DeleteRequest": {"Key": encode_key(k, self.target.key_schema)}}
                           for k in unique])

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """Write in chunks of 25, re-sending ``UnprocessedItems`` with jittered backoff."""
        for start in range(0, len(requests), _BATCH_WRITE_MAX):
            pending = requests[start:start + _BATCH_WRITE_MAX]
            delay = 0.05
            deadline = time.monotonic() + self.clients.policy.deadline_s
            while pending:
                batch = {self.target.resource: pending}
                resp = self.clients.guard("batch_write_item",
                                          partial(self.clients.table.batch_write_item,
                                                  RequestItems=batch))
                pending = resp.get("UnprocessedItems", {}).get(self.target.resource, [])
                if pending:
                    if time.monotonic() > deadline:
                        raise AdapterError(f"DynamoDB left {len(pending)} writes unprocessed until the "
                                           "retry deadline (throttled)", retryable=True,
                                           provider="dynamodb", replica=self.target.replica,
                                           dataset=self.target.dataset, operation="batch_write_item")
                    time.sleep(random.uniform(0, delay))
                    delay = min(delay * 2, self.clients.policy.max_backoff_s)

    # --- tombstones ----------------------------------------------------------------------------

    def purge_tombstones(self, older_than_ms: int) -> int:
        """Delete tombstones older than ``older_than_ms``, each only if its version is unchanged."""
        removed = 0
        names = {"#m": META_ATTR, "#t": "t"}
        for item in self._parallel_scan(FilterExpression="#m.#t = :true",
                                        ExpressionAttributeNames=names,
                                        ExpressionAttributeValues={":true": {"BOOL": True}}):
            meta = decode_meta(item.get(META_ATTR))
            if meta is None or not meta.tombstone or meta.version.wall_ms >= older_than_ms:
                continue
            removed += self._delete_if_version(item, meta)
        return removed

    def _delete_if_version(self, item: Item, meta: ReplicationMeta) -> int:
        key = {a.name: item[a.name] for a in self.target.key_schema.attributes}

        def delete() -> int:
            try:
                self.clients.table.delete_item(
                    TableName=self.target.resource, Key=key, ConditionExpression="#m.#v = :v",
                    ExpressionAttributeNames={"#m": META_ATTR, "#v": "v"},
                    ExpressionAttributeValues={":v": {"S": meta.version.token}})
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return 0                 # a newer version landed since the scan: keep it
                raise
            return 1
        return self.clients.guard("delete_item", delete)



def applicable_condition(meta: ReplicationMeta) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The condition of every conditional put: :func:`newer_condition` over exactly the seen origins.

    A condition expression can only test the origins it names, so :func:`newer_condition`
    alone lets through a stored version from an origin the incoming vector does not list —
    a concurrent version, overwritten (a demoted primary's write recovered after the new
    primary's own writes to the key, when the log did not yet know their origin). Narrowed
    to stored vectors of exactly the seen origins, every other case fails the condition and
    is decided from the item it returns (a successor over fewer origins is then written
    over exactly that item).
    """
    return exact_origins_condition(newer_condition(meta), meta)


def newer_condition(meta: ReplicationMeta) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``(ConditionExpression, names, values)`` admitting a write only over versions ``meta`` has seen.

    The stored version must be another one and, for every origin in the incoming vector,
    the stored vector's token may not be newer; an origin listed with an empty token
    (known, nothing seen from it) must be absent from the stored vector. Anything else is
    a replay, a stale write or a conflict, told apart from the returned item.
    """
    names = {"#m": META_ATTR, "#v": "v", "#vv": "vv"}
    values: dict[str, Any] = {":v": {"S": meta.version.token}}
    checks = []
    for i, (origin, token) in enumerate(sorted(meta.vector.items())):
        names[f"#o{i}"] = origin
        if token:
            values[f":t{i}"] = {"S": token}
            checks.append(f"(attribute_not_exists(#m.#vv.#o{i}) OR #m.#vv.#o{i} <= :t{i})")
        else:
            checks.append(f"attribute_not_exists(#m.#vv.#o{i})")
    return ("attribute_not_exists(#m) OR (" + " AND ".join(["#m.#v <> :v", *checks]) + ")"), names, values
