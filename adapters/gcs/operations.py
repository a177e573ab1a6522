"""Every Cloud Storage JSON API method this adapter calls, with the IAM permissions each needs.

Permissions per method: https://cloud.google.com/storage/docs/access-control/iam-json .
Two facts the predefined object roles miss: ``ensure_ready`` reads the bucket
(``storage.buckets.get``, in neither ``objectViewer`` nor ``objectUser``), and an upload
that replaces an object needs ``storage.objects.delete`` as well as ``create``. So every
mcrepl role gets a custom role made of exactly these permissions.
Creating a bucket is a *project* permission (``resource="project"``): whoever runs
Pulumi holds it; grants on a bucket cannot carry it.

:func:`classify_request` maps an HTTP request of ``google-cloud-storage`` to its JSON API
method; the recording test uses it on every request the client's session sends.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from ..base.operations import Operation, OperationInventory

OPERATIONS = OperationInventory("gcs", "adapters/gcs/operations.py", (
    Operation("storage.buckets.get", "bucket", ("ensure_ready", "create"), note="every open checks the bucket"),
    Operation("storage.buckets.insert", "project", ("create",), permissions=("storage.buckets.create",)),
    Operation("storage.buckets.delete", "bucket", ("drop",)),
    Operation("storage.objects.list", "bucket",
              ("capture_changes", "current_cursor", "list_digests", "purge_tombstones", "drop")),
    Operation("storage.objects.get", "bucket",
              ("capture_changes", "apply_batch", "list_digests", "read"),
              note="metadata reads and downloads of one generation"),
    Operation("storage.objects.insert", "bucket", ("apply_batch", "write_native", "write_heartbeat"),
              permissions=("storage.objects.create", "storage.objects.delete"),
              note="replacing an existing object needs delete as well as create"),
    Operation("storage.objects.delete", "bucket", ("purge_tombstones", "drop", "delete_native")),
    # the epoch record (bucket <bucket>-mcrepl-epoch, see fence.py) and mcrepl doctor
    Operation("storage.buckets.get@epoch", "epoch-bucket", ("publish_epoch", "doctor", "fenced_write"),
              permissions=("storage.buckets.get",)),
    Operation("storage.objects.get@epoch", "epoch-bucket", ("publish_epoch", "doctor", "fenced_write"),
              permissions=("storage.objects.get",)),
    Operation("storage.objects.insert@epoch", "epoch-bucket", ("publish_epoch",),
              permissions=("storage.objects.create", "storage.objects.delete"),
              note="conditional on the generation: never lowers the stored epoch"),
    Operation("storage.buckets.testIamPermissions", "bucket", ("doctor",), permissions=(),
              note="doctor: needs no permission of its own"),
))

_OBJECT = re.compile(r"^/(?:(?P<kind>upload|download)/)?storage/v1/b(?:/(?P<bucket>[^/]+)"
                     r"(?P<objects>/o(?:/(?P<object>.+))?)?)?$")


def classify_request(method: str, url: str) -> str:
    """The JSON API method (``storage.objects.get`` …) of one HTTP request, from its path."""
    path = urlparse(url).path
    m = _OBJECT.match(path)
    method = method.upper()
    if m is None:
        return f"storage.unknown:{method} {path}"
    if m.group("kind") == "upload":
        return "storage.objects.insert"
    if m.group("kind") == "download":
        return "storage.objects.get"
    if m.group("bucket") is None:
        return "storage.buckets.insert" if method == "POST" else "storage.buckets.list"
    if m.group("objects") is None:
        return {"GET": "storage.buckets.get", "DELETE": "storage.buckets.delete",
                "PATCH": "storage.buckets.patch", "PUT": "storage.buckets.update"}.get(method, f"storage.buckets.{method}")
    if m.group("object") is None:
        return "storage.objects.insert" if method == "POST" else "storage.objects.list"
    return {"GET": "storage.objects.get", "DELETE": "storage.objects.delete", "PATCH": "storage.objects.patch",
            "PUT": "storage.objects.update", "POST": "storage.objects.compose"}.get(method, f"storage.objects.{method}")


def bucket_of(url: str) -> str | None:
    """The bucket a request addresses (``None`` for project-level calls)."""
    m = _OBJECT.match(urlparse(url).path)
    return m.group("bucket") if m else None


__all__ = ["OPERATIONS", "bucket_of", "classify_request"]
