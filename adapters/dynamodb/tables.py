"""Table lifecycle: create (local stacks, tests) or check (real clouds), and drop.

A table mcrepl creates is on-demand (``PAY_PER_REQUEST``) with a
``NEW_AND_OLD_IMAGES`` stream: the new image is the change to replicate, the old image
carries the metadata the item had before (to extend version vectors and to tell a purge
of a tombstone from an application's delete).
"""

from __future__ import annotations

import time
from typing import Any

from ..base.errors import AdapterError, NotFoundError
from ..base.interface import ReplicaTarget
from .clients import DynamoDBClients
from .errors import error_code

STREAM_VIEW = "NEW_AND_OLD_IMAGES"
_ACTIVE_TIMEOUT_S = 300.0


def ensure_table(clients: DynamoDBClients, target: ReplicaTarget) -> None:
    """Create the table if missing and wait until it is ACTIVE; check an existing one fits."""
    try:
        table = _describe(clients, target)
    except NotFoundError:
        _create(clients, target)
        table = _wait_active(clients, target)
    else:
        if table.get("TableStatus") != "ACTIVE":
            table = _wait_active(clients, target)
    _check(table, target)


def drop_table(clients: DynamoDBClients, target: ReplicaTarget) -> None:
    """Delete the table; a table that is already gone is not an error."""
    try:
        clients.guard("delete_table", lambda: clients.table.delete_table(TableName=target.resource))
    except NotFoundError:
        pass


def _describe(clients: DynamoDBClients, target: ReplicaTarget) -> dict[str, Any]:
    return clients.guard("describe_table",
                         lambda: clients.table.describe_table(TableName=target.resource))["Table"]


def _create(clients: DynamoDBClients, target: ReplicaTarget) -> None:
    attrs = target.key_schema.attributes
    key_schema = [{"AttributeName": a.name, "KeyType": kt} for a, kt in zip(attrs, ("HASH", "RANGE"))]
    definitions = [{"AttributeName": a.name, "AttributeType": a.type} for a in attrs]

    def create() -> None:
        try:
            clients.table.create_table(
                TableName=target.resource, KeySchema=key_schema, AttributeDefinitions=definitions,
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW})
        except Exception as exc:
            if error_code(exc) != "ResourceInUseException":    # created meanwhile by someone else
                raise
    clients.guard("create_table", create)


def _wait_active(clients: DynamoDBClients, target: ReplicaTarget) -> dict[str, Any]:
    deadline = time.monotonic() + _ACTIVE_TIMEOUT_S
    delay = 0.05
    while True:
        table = _describe(clients, target)
        if table.get("TableStatus") == "ACTIVE":
            return table
        if time.monotonic() > deadline:
            raise AdapterError(f"DynamoDB table {target.resource!r} is still {table.get('TableStatus')} "
                               f"after {_ACTIVE_TIMEOUT_S:.0f}s", retryable=True, provider="dynamodb",
                               replica=target.replica, dataset=target.dataset, operation="ensure_ready")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def _check(table: dict[str, Any], target: ReplicaTarget) -> None:
    """An existing table must have the configured key and a stream with both images."""
    ctx: dict[str, Any] = {"provider": "dynamodb", "replica": target.replica, "dataset": target.dataset,
                           "operation": "ensure_ready"}
    types = {d["AttributeName"]: d["AttributeType"] for d in table.get("AttributeDefinitions", [])}
    have = [(k["AttributeName"], types.get(k["AttributeName"])) for k in
            sorted(table.get("KeySchema", []), key=lambda k: k["KeyType"] != "HASH")]
    want = [(a.name, a.type) for a in target.key_schema.attributes]
    if have != want:
        raise AdapterError(f"DynamoDB table {target.resource!r} has key {have}, but dataset "
                           f"{target.dataset!r} is configured with key {want} (fix: correct "
                           "datasets.*.key in the config, or recreate the table)", **ctx)
    spec = table.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled") or spec.get("StreamViewType") != STREAM_VIEW:
        raise AdapterError(f"DynamoDB table {target.resource!r} needs a stream with {STREAM_VIEW} "
                           "for change capture (fix: aws dynamodb update-table --table-name "
                           f"{target.resource} --stream-specification "
                           f"StreamEnabled=true,StreamViewType={STREAM_VIEW})", **ctx)


def item_count(clients: DynamoDBClients, target: ReplicaTarget) -> int | None:
    """DescribeTable's ``ItemCount`` (approximate on AWS, refreshed about every six hours)."""
    count = _describe(clients, target).get("ItemCount")
    return int(count) if count is not None else None
