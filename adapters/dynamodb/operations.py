"""Every DynamoDB and DynamoDB Streams operation this adapter performs, for IAM.

Names are IAM action names (``dynamodb:PutItem``); DynamoDB Streams calls are
``dynamodb:`` actions too and are granted on the stream ARN, not the table's. Tables
encrypted with a customer-managed KMS key also need KMS permissions: DynamoDB calls KMS
on the caller's behalf (so the recording test never sees these calls), and the grants
are limited to that use with ``kms:ViaService``.
See https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/encryption.usagenotes.html
"""

from __future__ import annotations

from ..base.operations import Operation, OperationInventory

#: methods that read or write items, so need the table's key when it is a customer's key
_DATA = ("capture_changes", "current_cursor", "apply_batch", "purge_tombstones", "list_digests", "read",
         "write_heartbeat", "read_many")

OPERATIONS = OperationInventory("dynamodb", "adapters/dynamodb/operations.py", (
    Operation("dynamodb:DescribeTable", "table", ("ensure_ready", "capture_changes", "current_cursor", "create"),
              note="ensure_ready checks key schema and stream; capture reads the stream ARN"),
    Operation("dynamodb:CreateTable", "table", ("create",), note="only when the table is missing"),
    Operation("dynamodb:DeleteTable", "table", ("drop",)),
    Operation("dynamodb:Scan", "table", ("capture_changes", "list_digests", "purge_tombstones"),
              note="capture's first pass and fallback; verify's digests; finding old tombstones"),
    Operation("dynamodb:BatchGetItem", "table", ("read", "read_many"),
              note="consistent reads of one key or many (up to 100 a request)"),
    Operation("dynamodb:PutItem", "table", ("apply_batch", "write_heartbeat"),
              note="one conditional put per record (batch_writes: single, a batch of one, or a record a "
                   "transaction could not decide); the heartbeat's plain put at the primary"),
    Operation("dynamodb:DeleteItem", "table", ("purge_tombstones",), note="conditional on the tombstone's version"),
    Operation("dynamodb:BatchWriteItem", "table", ("write_native", "delete_native"),
              note="the application's writes (seeding), never mcrepl's"),
    Operation("dynamodb:DescribeStream", "stream", ("capture_changes", "current_cursor")),
    Operation("dynamodb:GetShardIterator", "stream", ("capture_changes", "current_cursor")),
    Operation("dynamodb:GetRecords", "stream", ("capture_changes", "current_cursor")),
    # the epoch record (table <table>-mcrepl-epoch, see fence.py) and mcrepl doctor
    Operation("dynamodb:DescribeTable@epoch", "epoch-table", ("publish_epoch", "doctor"),
              permissions=("dynamodb:DescribeTable",), note="ensure the epoch table exists"),
    Operation("dynamodb:CreateTable@epoch", "epoch-table", ("publish_epoch",),
              permissions=("dynamodb:CreateTable",), note="only when the epoch table is missing"),
    Operation("dynamodb:GetItem@epoch", "epoch-table", ("publish_epoch", "doctor", "fenced_write"),
              permissions=("dynamodb:GetItem",)),
    Operation("dynamodb:PutItem@epoch", "epoch-table", ("publish_epoch",), permissions=("dynamodb:PutItem",),
              note="conditional: never lowers the stored epoch"),
    Operation("dynamodb:TransactWriteItems", "table", ("fenced_write",),
              permissions=("dynamodb:PutItem", "dynamodb:ConditionCheckItem"),
              note="the application's fenced write (the epoch item's condition and the data put, atomically)"),
    Operation("dynamodb:TransactWriteItems@apply", "table", ("apply_batch",), permissions=("dynamodb:PutItem",),
              note="apply_batch's conditional puts, up to 100 per transaction (batch_writes: transact; each put "
                   "is authorised as PutItem)"),
    Operation("dynamodb:DescribeContinuousBackups", "table", ("doctor",), note="doctor: PITR"),
    Operation("sts:GetCallerIdentity", "account", ("doctor",), note="doctor: who the credentials are; needs no grant"),
    Operation("iam:SimulatePrincipalPolicy", "account", ("doctor",),
              note="doctor: the identity's effective permissions on the tables"),
    Operation("route53:ListResourceRecordSets", "zone", ("switch_dns",)),
    Operation("route53:ChangeResourceRecordSets", "zone", ("switch_dns",)),
    Operation("route53:GetHealthCheck", "health-check", ("switch_dns",)),
    Operation("route53:UpdateHealthCheck", "health-check", ("switch_dns",)),
    Operation("kms:Decrypt", "key", _DATA, when="cmk",
              note="DynamoDB decrypts the table key with the caller's permission"),
    Operation("kms:DescribeKey", "key", (*_DATA, "create"), when="cmk"),
    Operation("kms:CreateGrant", "key", ("create",), when="cmk",
              note="creating a table under a customer key lets DynamoDB use the key"),
))


def call_name(service: str, operation: str) -> str:
    """The IAM action of a botocore call (``dynamodbstreams`` calls are ``dynamodb:`` actions)."""
    prefix = "dynamodb" if service in ("dynamodb", "dynamodbstreams", "dynamodb-streams") else service
    return f"{prefix}:{operation}"


__all__ = ["OPERATIONS", "call_name"]
