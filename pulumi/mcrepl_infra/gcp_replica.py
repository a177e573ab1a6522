"""Cloud Storage buckets of one GCS location, each ready to be an mcrepl replica.

Guarantees for every bucket: created in the dataset's location; uniform bucket-level
access (IAM only, no object ACLs); public access prevention ``enforced``; versioning
on, with noncurrent versions deleted after ``sync.tombstone_retention`` days so
overwritten objects stay recoverable exactly as long as tombstones are kept; CMEK
(``encryption.defaultKmsKeyName``): the replica's ``kms_key`` or a key ring + rotated
key made here in the same location, with the project's Cloud Storage service agent
granted encrypt/decrypt on it before the bucket is created (GCS refuses a key it
cannot use). Buckets and keys are ``protect``ed; key rings and keys are kept on
``destroy`` (``retainOnDelete``: Cloud KMS can never delete a key ring, and destroying a
key's versions would make every object under it unreadable).
"""

from __future__ import annotations

import math
from typing import Sequence

import pulumi
import pulumi_gcp as gcp

from .topology import BucketPlan

# Cloud KMS names multi-region locations differently from Cloud Storage.
_KMS_LOCATION = {"eu": "europe", "us": "us", "asia": "asia"}
KEY_ROTATION = "7776000s"   # 90 days
GCS_KEY_NAME = "mcrepl-buckets"


def kms_location(bucket_location: str) -> str:
    """The Cloud KMS location whose keys a bucket in ``bucket_location`` may use."""
    loc = bucket_location.lower()
    return _KMS_LOCATION.get(loc, loc)


class GcpReplica(pulumi.ComponentResource):
    """All mcrepl buckets in ``location``; ``buckets`` maps bucket name → bucket."""

    buckets: dict[str, gcp.storage.Bucket]
    kms_key_id: pulumi.Output[str] | None

    def __init__(self, name: str, location: str, plans: Sequence[BucketPlan], *, project: str,
                 ring_name: str, noncurrent_days: int, provider: gcp.Provider,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mcrepl:gcp:Replica", name, {"location": location}, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.location = location
        self.kms_key_id = None
        depends: list[pulumi.Resource] = []
        if any(p.kms_key is None for p in plans):
            retained = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True))
            ring = gcp.kms.KeyRing(f"{name}-ring", name=ring_name,
                                   location=kms_location(location), project=project, opts=retained)
            key = gcp.kms.CryptoKey(f"{name}-cmek", name=GCS_KEY_NAME, key_ring=ring.id,
                                    rotation_period=KEY_ROTATION,
                                    opts=pulumi.ResourceOptions.merge(retained, pulumi.ResourceOptions(protect=True)))
            agent = gcp.storage.get_project_service_account_output(project=project,
                                                                   opts=pulumi.InvokeOutputOptions(
                                                                       provider=provider))
            grant = gcp.kms.CryptoKeyIAMMember(
                f"{name}-cmek-agent", crypto_key_id=key.id,
                role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                member=agent.email_address.apply(lambda email: f"serviceAccount:{email}"), opts=child)
            depends.append(grant)
            self.kms_key_id = key.id
        self.buckets = {p.name: self._bucket(name, p, project, noncurrent_days,
                                             pulumi.ResourceOptions.merge(
                                                 child, pulumi.ResourceOptions(depends_on=depends, protect=True)))
                        for p in plans}
        self.register_outputs({"buckets": {n: b.url for n, b in self.buckets.items()}})

    def _bucket(self, name: str, plan: BucketPlan, project: str, noncurrent_days: int,
                opts: pulumi.ResourceOptions) -> gcp.storage.Bucket:
        return gcp.storage.Bucket(
            f"{name}-{plan.dataset}",
            name=plan.name,
            project=project,
            location=plan.location.split(":", 1)[1].upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            encryption=gcp.storage.BucketEncryptionArgs(default_kms_key_name=plan.kms_key or self.kms_key_id),
            lifecycle_rules=[gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                    days_since_noncurrent_time=noncurrent_days, with_state="ARCHIVED"))],
            force_destroy=False,
            labels={"mcrepl-dataset": plan.dataset},
            opts=opts)

    def outputs(self) -> dict[str, dict[str, pulumi.Input[str]]]:
        """``bucket name → {url, kms_key}`` for the stack outputs."""
        return {n: {"url": b.url, "self_link": b.self_link,
                    "kms_key": b.encryption.apply(lambda e: e.default_kms_key_name if e else None)}
                for n, b in self.buckets.items()}


def retention_days(seconds: float) -> int:
    """Whole days covering ``seconds`` (lifecycle conditions count in days)."""
    return max(1, math.ceil(seconds / 86400))
