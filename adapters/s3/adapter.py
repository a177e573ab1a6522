"""The S3 replica adapter: the shared object store adapter over S3's primitives.

Everything an object store shares comes from
:class:`~mcrepl.adapters.base.object_store.ObjectStoreAdapter` (mcrepl's public adapter
interface); what is S3's own is here and in :mod:`.bucket_io`, :mod:`.wire`, :mod:`.errors`:

* **Conditional apply** on the ETag: ``If-None-Match: *`` to create, ``If-Match`` to
  replace exactly the version read (S3 has enforced both since 2024). A 412 — or a 409
  ``ConditionalRequestConflict`` when a concurrent write won — reads and decides again.
* **Capture** lists the bucket in key order and compares it with the manifest in the
  cursor; a listing has no user metadata, so each listed object is completed by a
  ``HeadObject``. Deletes show up as names the listing skipped (``capture_sees_deletes``).
* **Limits**: 5 GiB per object (one PutObject), 2 KB of user metadata, 1,024-byte keys.

Known limit of ETag preconditions: S3's ETag is the MD5 of the content, so two writes of
identical bytes with different metadata share an ETag; a precondition cannot tell them
apart, and a listing tells them apart only by LastModified (one-second resolution).
"""

from __future__ import annotations

from mcrepl.adapters.base import RecordKey, ReplicaTarget
from mcrepl.adapters.base.object_store import ObjectStoreAdapter
from mcrepl.adapters.base.retry import RetryPolicy

from . import wire
from .bucket_io import BucketIO
from .settings import SPEC


class S3Adapter(ObjectStoreAdapter[str]):
    """A bucket holding one dataset; honours every :class:`~mcrepl.adapters.base.ReplicaAdapter` guarantee."""

    capabilities = SPEC.capabilities
    layout = wire.LAYOUT

    def open_io(self, target: ReplicaTarget, policy: RetryPolicy) -> BucketIO:
        return BucketIO(target, policy)

    def object_name(self, key: RecordKey) -> str:
        return wire.object_name(key, self.target.kind)

    def bucket_location(self) -> str | None:
        """Always the location's region: S3 (and moto) refuse a bucket created elsewhere than
        the regional endpoint the client speaks to."""
        return self.target.region


__all__ = ["S3Adapter"]
