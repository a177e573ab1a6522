"""Google Cloud Storage replica: one bucket per dataset per replica, one object per record.

Everything an object store shares (conditional apply without a read where the state is
known, capture by listing against a manifest, pinned reads, digests, purges) is
:class:`~mcrepl.adapters.base.object_store.ObjectStoreAdapter`; this class adds GCS's
naming rules, its layout (``md5Hash`` as the content digest) and its I/O
(:mod:`.bucket_io`): generations are both the precondition token and the manifest version.
"""

from __future__ import annotations

from ..base.interface import ReplicaTarget
from ..base.object_store import ObjectStoreAdapter
from ..base.record import RecordKey
from ..base.retry import RetryPolicy
from . import wire
from .bucket_io import BucketIO
from .settings import SPEC


class GCSAdapter(ObjectStoreAdapter[int]):
    """A bucket holding one dataset; honours every :class:`ReplicaAdapter` guarantee.

    GCS has no change log (``incremental_capture=False``): capture lists the bucket and
    diffs it with a manifest, which also reveals native deletes. Objects hold up to 5 TiB.
    """

    capabilities = SPEC.capabilities
    layout = wire.LAYOUT

    def open_io(self, target: ReplicaTarget, policy: RetryPolicy) -> BucketIO:
        return BucketIO(target, policy)

    def object_name(self, key: RecordKey) -> str:
        return wire.object_name(key, self.target.kind)
