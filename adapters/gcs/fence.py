"""The epoch record in Cloud Storage: the object ``epoch.json`` in the bucket ``<bucket>-mcrepl-epoch``.

Cloud Storage preconditions apply to one object only, so fenced writes check the
record, write, and check again (:func:`~mcrepl.adapters.base.fence.checked_write`).
Publication is a compare-and-swap on the object's generation (``ifGenerationMatch``;
0 = must not exist yet).
"""

from __future__ import annotations

import dataclasses

from ..base.fence import DocumentFence, EpochRecord
from ..base.interface import ReplicaTarget
from ..base.retry import policy_for
from .bucket_io import BucketIO

OBJECT = "epoch.json"


class GCSFence(DocumentFence[int]):
    """The epoch object of ``target.dataset`` in its own bucket beside the dataset's bucket."""

    def __init__(self, target: ReplicaTarget) -> None:
        super().__init__(target)
        self.io = BucketIO(dataclasses.replace(target, resource=self.resource), policy_for(target.options))

    def ensure(self) -> None:
        """Create the bucket if missing (in the dataset's region on real GCP)."""
        self.io.ensure_bucket(None if self.target.options.get("local") else self.target.region)

    def load(self) -> tuple[EpochRecord | None, int | None]:
        blob = self.io.get(OBJECT)
        if blob is None:
            return None, None
        generation = int(blob.generation or 0)
        return EpochRecord.from_json(self.io.download(OBJECT, generation)), generation

    def store(self, record: EpochRecord, token: int | None) -> None:
        self.io.upload(OBJECT, record.to_json(), "application/json", None, if_generation_match=token or 0)

    def close(self) -> None:
        self.io.close()


__all__ = ["GCSFence"]
