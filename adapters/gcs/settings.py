"""``providers.gcs`` in mcrepl.yaml, and the Cloud Storage adapter's spec (no SDK import here)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..base.interface import Capabilities
from ..base.naming import bucket_name
from ..base.settings import AdapterSettings
from ..base.spec import AdapterSpec

MAX_OBJECT_BYTES = 5 * 1024 ** 4        # GCS limit on one object (5 TiB)


class GCSSettings(AdapterSettings):
    """How to reach Cloud Storage: ADC on real GCP, anonymous for the emulator."""

    credential_home: ClassVar[str] = (
        "Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS=/path/to/key.json or "
        "'gcloud auth application-default login'")

    project: str | None = Field(None, description="default: ADC's project on GCP, 'mcrepl-local' on the "
                                                  "emulator")
    auth: Literal["adc", "anonymous"] = Field("adc", description="adc: Application Default Credentials; "
                                                                 "anonymous: emulators")
    bucket_prefix: str = Field("mcrepl", description="buckets are named PREFIX-DATASET-REGION")


class BucketSpec(AdapterSpec):
    """Buckets are named ``bucket_prefix-dataset-region`` (valid and unique per region)."""

    def resource_name(self, settings: AdapterSettings, base: str, region: str) -> str:
        return bucket_name(str(getattr(settings, "bucket_prefix")), base, region)


SPEC = BucketSpec(
    name="gcs", adapter="mcrepl.adapters.gcs.adapter:GCSAdapter", settings=GCSSettings,
    capabilities=Capabilities(incremental_capture=False, transactional_batch=False,
                              max_record_bytes=MAX_OBJECT_BYTES, capture_sees_deletes=True,
                              orders_writes_across_keys=False),
    cloud="gcp", install="pip install 'mcrepl[gcp]'", summary="Google Cloud Storage: a bucket per dataset, "
    "generation preconditions, capture by listing against a manifest", resource_kind="bucket",
    operations="mcrepl.adapters.gcs.operations:OPERATIONS", local_service="gcs",
    fence="mcrepl.adapters.gcs.fence:GCSFence")
