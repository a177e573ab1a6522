"""Every S3 API call this adapter makes, as IAM actions, and which mcrepl role needs each.

S3's IAM actions are not its API names: ``HeadObject`` and ``GetObject`` both need
``s3:GetObject``; ``ListObjectsV2`` and ``HeadBucket`` need ``s3:ListBucket`` on the
bucket; object actions are granted on ``arn:aws:s3:::BUCKET/*`` (``resource="object"``),
bucket actions on ``arn:aws:s3:::BUCKET``. Conditional writes need nothing more than
``s3:PutObject``. See https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
Importing this module loads no SDK.
"""

from __future__ import annotations

from mcrepl.adapters.base.operations import Operation, OperationInventory

OPERATIONS = OperationInventory("s3", "adapters/s3/operations.py", (
    Operation("s3:ListBucket", "bucket",
              ("ensure_ready", "capture_changes", "current_cursor", "list_digests", "purge_tombstones", "drop",
               "create"),
              note="ListObjectsV2 for capture, digests and purges; HeadBucket on every open"),
    Operation("s3:CreateBucket", "bucket", ("create",), note="only when the bucket is missing"),
    Operation("s3:DeleteBucket", "bucket", ("drop",)),
    Operation("s3:GetObject", "object",
              ("capture_changes", "current_cursor", "apply_batch", "list_digests", "read", "purge_tombstones",
               "drop"),
              note="HeadObject (metadata: listings carry none; drop lists through the same call) and "
                   "GetObject pinned with If-Match"),
    Operation("s3:PutObject", "object", ("apply_batch", "write_native", "write_heartbeat"),
              note="conditional on If-None-Match / If-Match"),
    Operation("s3:DeleteObject", "object", ("purge_tombstones", "drop", "delete_native"),
              note="tombstone purges conditional on If-Match"),
))

#: botocore operation name → the IAM action it needs
_ACTION = {"HeadObject": "GetObject", "ListObjectsV2": "ListBucket", "HeadBucket": "ListBucket"}


def call_name(operation: str) -> str:
    """The IAM action of one botocore S3 operation (``HeadObject`` → ``s3:GetObject``)."""
    return f"s3:{_ACTION.get(operation, operation)}"


__all__ = ["OPERATIONS", "call_name"]
