"""``providers.s3`` in mcrepl.yaml, and the S3 adapter's spec. Imports no SDK.

This is the file a third-party adapter copies first: a settings model derived from
:class:`~mcrepl.adapters.base.settings.AdapterSettings`, and an
:class:`~mcrepl.adapters.base.spec.AdapterSpec` published as the ``mcrepl.adapters`` entry
point ``s3 = "mcrepl.adapters.s3:SPEC"`` (pyproject.toml).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mcrepl.adapters.base import Capabilities
from mcrepl.adapters.base.naming import bucket_name
from mcrepl.adapters.base.settings import AdapterSettings
from mcrepl.adapters.base.spec import AdapterSpec

#: the largest object one PutObject writes (multipart uploads have no preconditions
#: mcrepl relies on, so it never uses them)
MAX_OBJECT_BYTES = 5 * 1024 ** 3


class S3Settings(AdapterSettings):
    """How to reach Amazon S3: the standard AWS credential chain, or a named profile."""

    credential_home: ClassVar[str] = (
        "the standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a named profile "
        "(providers.s3.profile / AWS_PROFILE)")

    profile: str | None = Field(None, description="a named profile of the AWS shared config (default: the "
                                                  "standard chain)")
    bucket_prefix: str = Field("mcrepl", description="buckets are named PREFIX-DATASET-REGION (S3 bucket "
                                                     "names are global: choose a prefix of your own)")
    path_style: bool = Field(False, description="address buckets in the path (emulators and S3-compatible "
                                                "stores) instead of the host name")


class S3Spec(AdapterSpec):
    """Buckets are named ``bucket_prefix-dataset-region``, like GCS buckets."""

    def resource_name(self, settings: AdapterSettings, base: str, region: str) -> str:
        assert isinstance(settings, S3Settings)
        return bucket_name(settings.bucket_prefix, base, region)


SPEC = S3Spec(
    name="s3", adapter="mcrepl.adapters.s3.adapter:S3Adapter", settings=S3Settings,
    capabilities=Capabilities(incremental_capture=False, transactional_batch=False,
                              max_record_bytes=MAX_OBJECT_BYTES, capture_sees_deletes=True,
                              orders_writes_across_keys=False),
    cloud="aws", install="pip install 'mcrepl[aws]'",
    summary="Amazon S3: a bucket per dataset, ETag / If-None-Match preconditions, capture by listing "
            "against a manifest", resource_kind="bucket",
    operations="mcrepl.adapters.s3.operations:OPERATIONS", local_service="s3")
