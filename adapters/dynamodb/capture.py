"""Change capture for one table: a full scan first, then the table's stream.

Cursor shapes (JSON dicts, read only by this module):

* scan phase: ``{"phase": "scan", "last_key": …, "stream": ARN, "from": <stream position>}``
  (``last_key`` is the scan's ``LastEvaluatedKey`` in JSON-safe form; ``from`` is the
  stream position taken before the scan started);
* stream phase: ``{"phase": "stream", "stream": ARN, "shards": {shard_id: last_sequence_number},
  "finished": [closed shards read to their end], "overlap_until": {shard_id: sequence_number}}``.

When the scan ends, capture reads the stream from the position taken before the scan,
so nothing written meanwhile is missed. The records written *while* the scan ran (up to
the position taken when it ended, ``overlap_until``) are returned as overlap pages: the
scan may already have read a later state of their keys, and the engine settles that by
position (see ``ChangePage.overlap``), never by comparing timestamps.

A stream cursor the stream can no longer serve (another stream ARN after the stream was
re-enabled, trimmed records, a vanished shard, an expired iterator, a malformed cursor)
falls back to a new full scan, with a warning saying why. The scan re-reads the whole
table, so this costs time, never data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..base.errors import AdapterError, RecordError
from ..base.interface import Change, ChangePage, Cursor, ReplicaTarget
from ..base.record import Record, meta_if_valid
from .clients import DynamoDBClients
from .streams import CursorUnusable, StreamPosition, position_at_end, read_changes
from .wire import decode_item, key_from_json, key_to_json

log = logging.getLogger("mcrepl.adapters.dynamodb")


def stream_arn(clients: DynamoDBClients, target: ReplicaTarget) -> str:
    """The table's current stream ARN, or an error with the fix when its stream is off."""
    table = clients.guard("describe_table",
                          lambda: clients.table.describe_table(TableName=target.resource))["Table"]
    spec = table.get("StreamSpecification") or {}
    arn = table.get("LatestStreamArn")
    if not spec.get("StreamEnabled") or not arn:
        raise AdapterError(f"DynamoDB table {target.resource!r} has no stream, so changes can't be "
                           "captured (fix: aws dynamodb update-table --table-name "
                           f"{target.resource} --stream-specification "
                           "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES)",
                           provider="dynamodb", replica=target.replica, dataset=target.dataset,
                           operation="capture_changes")
    return str(arn)


def capture(clients: DynamoDBClients, target: ReplicaTarget, cursor: Cursor | None,
            limit: int) -> ChangePage:
    """The next page of changes after ``cursor`` (see the module docstring for the phases)."""
    limit = max(1, int(limit))
    if cursor is None:
        return _scan_page(clients, target, _new_scan(clients, target), limit)
    phase = cursor.get("phase") if isinstance(cursor, Mapping) else None
    try:
        if phase == "scan":
            if cursor.get("stream") != stream_arn(clients, target):
                raise CursorUnusable("the table's stream was replaced while the scan ran")
            return _scan_page(clients, target, dict(cursor), limit)
        if phase == "stream":
            return _stream_page(clients, target, StreamPosition.from_cursor(cursor), limit)
        raise CursorUnusable(f"the cursor's phase {phase!r} is not 'scan' or 'stream'")
    except CursorUnusable as exc:
        log.warning("dynamodb %s/%s: capture restarts with a full table scan: %s",
                    target.replica, target.resource, exc.reason)
        return _scan_page(clients, target, _new_scan(clients, target), limit)


def current_position(clients: DynamoDBClients, target: ReplicaTarget) -> Cursor:
    """A stream cursor after every existing record (reads every shard to its end: O(stream size)).

    DynamoDB has no "latest sequence number" call, and a ``LATEST`` iterator can't be
    saved, so the only durable 'now' is the last record of each shard. Streams keep 24
    hours of records, which bounds the cost on AWS; on emulators it is small.
    """
    return position_at_end(clients, stream_arn(clients, target)).to_cursor()


def _new_scan(clients: DynamoDBClients, target: ReplicaTarget) -> dict[str, Any]:
    # the stream position is taken before the scan starts, so nothing written during it is lost
    arn = stream_arn(clients, target)
    return {"phase": "scan", "last_key": None, "stream": arn, "from": position_at_end(clients, arn).to_cursor()}


def _scan_page(clients: DynamoDBClients, target: ReplicaTarget, cursor: dict[str, Any],
               limit: int) -> ChangePage:
    kwargs: dict[str, Any] = {"TableName": target.resource, "Limit": limit, "ConsistentRead": True}
    if cursor.get("last_key"):
        kwargs["ExclusiveStartKey"] = key_from_json(cursor["last_key"])
    resp = clients.guard("scan", lambda: clients.table.scan(**kwargs))
    changes, rejected = [], []
    for item in resp.get("Items", []):
        try:
            record = decode_item(item, target.key_schema, target.kind)
        except RecordError as err:          # quarantined by the engine; the scan goes on
            rejected.append(err.located(dataset=target.dataset, target=target.replica))
            continue
        changes.append(Change(Record(record.key, record.body, meta_if_valid(record))))
    last = resp.get("LastEvaluatedKey")
    if last:
        return ChangePage(changes, {**cursor, "last_key": key_to_json(last)}, more=True, scanned=True,
                          rejected=rejected)
    # scan done: the stream from the position taken before it; what was written while it ran
    # (up to the position now) is its overlap window, which the engine settles by position
    start = StreamPosition.from_cursor(cursor["from"]) if cursor.get("from") else StreamPosition(str(cursor["stream"]))
    after = start.with_overlap_until(position_at_end(clients, str(cursor["stream"]), since=start))
    return ChangePage(changes, after.to_cursor(), more=True, scanned=True, rejected=rejected)


def _stream_page(clients: DynamoDBClients, target: ReplicaTarget, pos: StreamPosition,
                 limit: int) -> ChangePage:
    changes, after, more, rejected, overlap = read_changes(clients, target.key_schema, target.kind, pos, limit)
    # Records the cursor's stream still gives are changes made before any replacement (a
    # disabled stream takes no more), so the table is asked for its current stream only when
    # the page is empty: a busy follower's poll skips that request, an idle one still notices.
    if not changes and not rejected:
        current = stream_arn(clients, target)
        if pos.stream != current:
            raise CursorUnusable(f"the cursor names stream {pos.stream!r} but the table's stream is now "
                                 f"{current!r} (the stream was disabled and enabled again)")
    return ChangePage(changes, after.to_cursor(), more=more, overlap=overlap,
                      rejected=[e.located(dataset=target.dataset, target=target.replica) for e in rejected])
