"""The epoch record in DynamoDB, and writes the table itself refuses under a stale epoch.

The record is one item (``dataset`` → ``epoch``, ``primary``, ``published_at``) in the
table ``<data table>-mcrepl-epoch`` of the same region. A fenced write is one
``TransactWriteItems``: a ``ConditionCheck`` that the epoch item still names this
location under the writer's epoch, and the data item's conditional ``Put`` (the same
newer-wins condition as :meth:`DynamoDBAdapter.apply_batch`). Both hold or nothing is
written, so a writer in a demoted region is refused by DynamoDB, atomically.
See https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..base.errors import AdapterError, NotFoundError
from ..base.fence import EpochConflict, EpochFence, EpochRecord, StaleEpoch, refusal
from ..base.interface import ApplyOutcome, ApplyResult, ReplicaAdapter, ReplicaTarget, conflict_between, result_of
from ..base.record import Record, meta_if_valid
from ..base.retry import policy_for
from .adapter import newer_condition
from .clients import DynamoDBClients
from .errors import error_code
from .wire import encode_item

_KEY = "dataset"


class DynamoDBFence(EpochFence):
    """The epoch item of ``target.dataset`` in ``<table>-mcrepl-epoch``."""

    def __init__(self, target: ReplicaTarget) -> None:
        super().__init__(target)
        self.clients = DynamoDBClients(dataclasses.replace(target, resource=self.resource), policy_for(target.options))

    def ensure(self) -> None:
        """Create the (on-demand, stream-less) epoch table if missing and wait for it."""
        table = self.resource
        try:
            self.clients.guard("describe_table", lambda: self.clients.table.describe_table(TableName=table))
            return
        except NotFoundError:
            pass

        def create() -> None:
            try:
                self.clients.table.create_table(
                    TableName=table, KeySchema=[{"AttributeName": _KEY, "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": _KEY, "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST")
            except Exception as exc:
                if error_code(exc) != "ResourceInUseException":
                    raise
        self.clients.guard("create_table", create)
        self.clients.guard("wait_table", lambda: self.clients.table.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}))

    def read(self) -> EpochRecord | None:
        resp = self.clients.guard("get_item", lambda: self.clients.table.get_item(
            TableName=self.resource, Key={_KEY: {"S": self.target.dataset}}, ConsistentRead=True))
        return _decode(resp.get("Item"))

    def publish(self, epoch: int, primary: str, at: float) -> EpochRecord:
        record = EpochRecord(self.target.dataset, epoch, primary, at)

        def put() -> EpochRecord:
            try:
                self.clients.table.put_item(
                    TableName=self.resource,
                    Item={_KEY: {"S": record.dataset}, "epoch": {"N": str(epoch)}, "primary": {"S": primary},
                          "published_at": {"N": repr(at)}},
                    ConditionExpression="attribute_not_exists(#e) OR #e < :e",
                    ExpressionAttributeNames={"#e": "epoch"}, ExpressionAttributeValues={":e": {"N": str(epoch)}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except Exception as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                return self._stored_instead(epoch, primary)
            return record
        return self.clients.guard("put_item", put)

    def _stored_instead(self, epoch: int, primary: str) -> EpochRecord:
        stored = self.read()
        assert stored is not None, "the condition failed, so an epoch item exists"
        if stored.epoch == epoch and stored.primary != primary:
            raise EpochConflict(f"{self.target.replica} already holds epoch {epoch} with primary {stored.primary}, "
                                f"not {primary} (fix: keep one state file and promote again from it)",
                                replica=self.target.replica, dataset=self.target.dataset, operation="publish_epoch")
        return stored

    def write(self, adapter: ReplicaAdapter, record: Record, epoch: int) -> ApplyResult:
        """One transaction: the epoch item's condition and the data item's newer-wins put."""
        if record.meta is None:
            raise ValueError("a fenced write needs a stamped record")
        item = encode_item(record, adapter.target.key_schema, adapter.target.kind)
        condition, names, values = newer_condition(record.meta)
        check = {"ConditionCheck": {
            "TableName": self.resource, "Key": {_KEY: {"S": self.target.dataset}},
            "ConditionExpression": "#e = :e AND #p = :p", "ExpressionAttributeNames": {"#e": "epoch", "#p": "primary"},
            "ExpressionAttributeValues": {":e": {"N": str(epoch)}, ":p": {"S": self.target.replica}}}}
        put = {"Put": {"TableName": adapter.target.resource, "Item": item, "ConditionExpression": condition,
                       "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}}

        def transact() -> list[str]:
            try:
                self.clients.table.transact_write_items(TransactItems=[check, put])
            except Exception as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                return _reasons(exc)
            return []
        reasons = self.clients.guard("transact_write_items", transact, key=record.key.id)
        if not reasons:
            return ApplyResult(record.key, ApplyOutcome.APPLIED)
        if reasons[0] == "ConditionalCheckFailed":
            current = self.read()
            raise StaleEpoch(refusal(current, epoch, self.target.replica) or "refused by the epoch condition",
                             current=current, replica=self.target.replica, dataset=self.target.dataset,
                             provider="dynamodb", operation="fenced_write", key=record.key.id)
        if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
            existing = adapter.read(record.key)         # a concurrent writer got there first
            stored = meta_if_valid(existing) if existing is not None else None
            result = result_of(record, stored, existing)
            if result.outcome is ApplyOutcome.APPLIED:    # an application edited it in place: not versioned
                return ApplyResult(record.key, ApplyOutcome.CONFLICT, conflict_between(record.meta, stored),
                                   existing=existing)
            return result
        raise AdapterError(f"the fenced write was cancelled ({', '.join(reasons)})", retryable=True,
                           provider="dynamodb", replica=self.target.replica, dataset=self.target.dataset,
                           operation="fenced_write", key=record.key.id)

    def close(self) -> None:
        self.clients.close()


def _reasons(exc: Any) -> list[str]:
    """The per-item cancellation codes of a cancelled transaction (``None`` → ``"None"``)."""
    reasons = exc.response.get("CancellationReasons") or []
    if not reasons:                      # some emulators put them only in the message
        text = str(exc.response.get("Error", {}).get("Message", ""))
        inside = text.partition("[")[2].partition("]")[0]
        return [r.strip() for r in inside.split(",")] if inside else ["ConditionalCheckFailed"]
    return [str(r.get("Code") or "None") for r in reasons]


def _decode(item: dict[str, Any] | None) -> EpochRecord | None:
    if not item or "epoch" not in item:
        return None
    return EpochRecord(item[_KEY]["S"], int(item["epoch"]["N"]), item["primary"]["S"],
                       float(item.get("published_at", {}).get("N", "0")))


__all__ = ["DynamoDBFence"]
