"""Conditional apply of many records per request: ``TransactWriteItems`` of up to 100 puts.

Each put carries the record's own newer-wins condition (:func:`.adapter.newer_condition`),
so the store still decides per record. A transaction is all or nothing: when one
condition fails DynamoDB cancels it and its ``CancellationReasons`` say, item by item,
which conditions failed (with the blocking item, ``ReturnValuesOnConditionCheckFailure``)
and which would have passed (``None``). Those are decided here exactly as the one-put
path decides them (replay, stale, conflict); the ones that would have passed go again
in the next transaction. See
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html

One thing a transaction cannot do is return the item it replaced (``ReturnValues`` is
not accepted there), and the one-put path uses that item to report a stored vector
naming an origin the incoming vector does not list at all (the condition cannot see
such origins). So a transactional put also requires the stored vector to hold exactly
the incoming vector's seen origins (``size`` and ``attribute_exists``); any other stored
vector (a new origin, one not seen yet) fails that condition, and the record goes
through the one-put path, which decides it with the replaced item in hand. Likewise any
cancellation reason other than a condition or ``None`` (a validation error of one item,
a conflicting transaction, throttling) hands that record to the one-put path, so a
transaction never decides less exactly than a single put would.

A transaction may not name one item twice: records go in rounds holding one version of
each key (the k-th version of every key in round k), as the one-put path orders them.
Transactional writes consume twice the write capacity of plain puts on AWS; they save
round trips, which is what bounds a replica far away.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..base.conditional import rounds_by_key
from ..base.errors import RecordError
from ..base.interface import ApplyOutcome, ApplyResult, ReplicaTarget, decide, rejected, result_of
from ..base.record import Record, ReplicationMeta, meta_if_valid
from .clients import DynamoDBClients
from .errors import error_code
from .wire import META_ATTR, Item, decode_item, decode_meta, encode_item

#: DynamoDB's limit of actions per transaction (raised from 25 to 100 in 2022)
TRANSACT_MAX = 100
_ROUNDS = 8              # transactions of one chunk before its leftovers go one put at a time

SinglePut = Callable[[Record], ApplyResult]
Condition = tuple[str, dict[str, str], dict[str, Any]]


def exact_origins_condition(newer: Condition, meta: ReplicationMeta) -> Condition:
    """``newer`` narrowed to stored vectors whose origins are exactly those ``meta`` has seen.

    An absent item or an item without ``_mcrepl`` still passes (its first clause); every
    other stored item must, besides being older, list each seen origin of ``meta`` and no
    other. The ``attribute_exists`` checks come before ``size`` so that ``size`` is only
    evaluated on a vector that exists.
    """
    condition, names, values = newer
    seen = [i for i, (_, token) in enumerate(sorted(meta.vector.items())) if token]
    if not seen:
        return newer
    values = {**values, ":nseen": {"N": str(len(seen))}}
    exact = " AND ".join([*(f"attribute_exists(#m.#vv.#o{i})" for i in seen), "size(#m.#vv) = :nseen"])
    head, sep, rest = condition.partition(" OR (")
    assert sep, "newer_condition's shape changed"
    return f"{head} OR ({exact} AND {rest}", names, values


def apply_transacted(clients: DynamoDBClients, target: ReplicaTarget, records: Sequence[Record],
                     condition_of: Callable[[ReplicationMeta], Condition], single: SinglePut,
                     workers: int = 8, max_items: int = TRANSACT_MAX) -> list[ApplyResult]:
    """Apply ``records`` in transactions of up to ``max_items`` puts; results in input order.

    ``single`` is the adapter's one-put apply, used for every record a transaction cannot
    decide exactly (see the module docstring). Rounds run one after another, the chunks
    of a round concurrently on ``workers`` threads.
    """
    results: list[ApplyResult | None] = [None] * len(records)
    puts: dict[int, dict[str, Any]] = {}
    for i, record in enumerate(records):
        try:
            puts[i] = _put_of(record, target, condition_of)
        except RecordError as err:
            results[i] = rejected(record, err, target)
    order = [i for i in range(len(records)) if i in puts]
    chunks: list[list[list[int]]] = []
    for round_ in rounds_by_key([records[i] for i in order]):
        idx = [order[j] for j in round_]
        chunks.append([idx[s:s + max_items] for s in range(0, len(idx), max_items)])

    def run(chunk: list[int]) -> None:
        for i, result in _apply_chunk(clients, target, records, puts, chunk, single):
            results[i] = result

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="apply-dynamodb-tx") as pool:
        for round_chunks in chunks:
            list(pool.map(run, round_chunks))
    return [r for r in results if r is not None]


def _put_of(record: Record, target: ReplicaTarget,
            condition_of: Callable[[ReplicationMeta], Condition]) -> dict[str, Any]:
    if record.meta is None:
        raise RecordError("unstamped", "apply_batch needs records stamped with a version")
    item = encode_item(record, target.key_schema, target.kind)
    condition, names, values = condition_of(record.meta)
    return {"Put": {"TableName": target.resource, "Item": item, "ConditionExpression": condition,
                    "ExpressionAttributeNames": names, "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}


def _apply_chunk(clients: DynamoDBClients, target: ReplicaTarget, records: Sequence[Record],
                 puts: dict[int, dict[str, Any]], chunk: list[int],
                 single: SinglePut) -> list[tuple[int, ApplyResult]]:
    """Decide every record of ``chunk``: transactions while they decide some, then one put each."""
    out: list[tuple[int, ApplyResult]] = []
    pending = chunk
    for _ in range(_ROUNDS):
        if not pending:
            return out
        reasons = _transact(clients, [puts[i] for i in pending])
        if reasons is None:           # committed: every put landed over an item it had seen
            out.extend((i, ApplyResult(records[i].key, ApplyOutcome.APPLIED)) for i in pending)
            return out
        retry: list[int] = []
        for i, reason in zip(pending, reasons):
            code = str(reason.get("Code") or "None")
            if code == "None":
                retry.append(i)        # its condition held: only another item cancelled it
                continue
            decided = _decided(records[i], target, reason) if code == "ConditionalCheckFailed" else None
            out.append((i, decided if decided is not None else _one(records[i], target, single)))
        if len(retry) == len(pending):  # nothing decided (a reason list we cannot read): one by one
            break
        pending = retry
    out.extend((i, _one(records[i], target, single)) for i in pending)
    return out


def _decided(record: Record, target: ReplicaTarget, reason: dict[str, Any]) -> ApplyResult | None:
    """The one-put path's result for a failed condition, when the blocking item settles it; else ``None``.

    Only when the plain newer-wins condition itself fails on the stored item (checked
    here on its metadata, as DynamoDB evaluated it) is the one put's answer known without
    sending it: the decision on the stored record (replay, stale, conflict). When only
    the exact-origins guard failed, or the stored record would let the record land (its
    body was edited in place), ``None``: the one-put path decides those.
    """
    assert record.meta is not None
    old_item: Item | None = reason.get("Item") or None
    raw = decode_meta(old_item.get(META_ATTR)) if old_item else None
    if old_item is None or raw is None or not _newer_condition_fails(record.meta, raw):
        return None
    try:
        old = decode_item(old_item, target.key_schema, target.kind)
    except RecordError:
        return None                   # the one-put path reports an undecodable stored item
    stored = meta_if_valid(old)
    if decide(record.meta, stored) is ApplyOutcome.APPLIED:
        return None
    return result_of(record, stored, old)


def _newer_condition_fails(incoming: ReplicationMeta, stored: ReplicationMeta) -> bool:
    """Whether :func:`.adapter.newer_condition` for ``incoming`` refuses an item carrying ``stored``."""
    if stored.version == incoming.version:
        return True
    for origin, token in incoming.vector.items():
        held = stored.vector.get(origin) or None          # empty tokens are never stored
        if held is not None and (not token or held > token):
            return True
    return False


def _one(record: Record, target: ReplicaTarget, single: SinglePut) -> ApplyResult:
    try:
        return single(record)
    except RecordError as err:
        return rejected(record, err, target)


def _transact(clients: DynamoDBClients, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``None`` when the transaction committed, else its cancellation reasons, one per item.

    A reason list that does not match the items (an emulator that gives only the message)
    comes back as all ``None`` reasons, so the caller falls back to one put per record.
    """
    def call() -> list[dict[str, Any]] | None:
        try:
            clients.table.transact_write_items(TransactItems=items)
        except Exception as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
            if len(reasons) != len(items):
                return [{"Code": "None"}] * len(items)
            return [dict(r) for r in reasons]
        return None
    try:
        return clients.guard("transact_write_items", call)
    except RecordError:
        # an item the service refused outright (too large, too deep): which one is not said,
        # so every record of the chunk is decided on its own
        return [{"Code": "ValidationError"}] * len(items)


__all__ = ["TRANSACT_MAX", "apply_transacted", "exact_origins_condition"]
