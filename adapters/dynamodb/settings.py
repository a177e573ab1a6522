"""``providers.dynamodb`` in mcrepl.yaml, and the DynamoDB adapter's spec (no SDK import here)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..base.interface import Capabilities
from ..base.settings import AdapterSettings
from ..base.spec import AdapterSpec


class DynamoDBSettings(AdapterSettings):
    """How to reach DynamoDB. ``endpoint: local`` means the stack from ``mcrepl local up``."""

    credential_home: ClassVar[str] = (
        "the standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a named profile "
        "(providers.dynamodb.profile / AWS_PROFILE)")

    profile: str | None = Field(None, description="a named profile of the AWS shared config (default: the "
                                                  "standard chain)")
    table_prefix: str = Field("", description="prepended to every table name")
    batch_writes: Literal["transact", "single"] = Field(
        "transact", description="transact: a batch's conditional puts go as TransactWriteItems of up to 100 "
                                "(fewer round trips; twice the write capacity per item on AWS); single: one "
                                "conditional PutItem per record")


class DynamoDBSpec(AdapterSpec):
    """Tables are named ``table_prefix + dataset``."""

    def resource_name(self, settings: AdapterSettings, base: str, region: str) -> str:
        assert isinstance(settings, DynamoDBSettings)
        return f"{settings.table_prefix}{base}"


SPEC = DynamoDBSpec(
    name="dynamodb", adapter="mcrepl.adapters.dynamodb.adapter:DynamoDBAdapter", settings=DynamoDBSettings,
    capabilities=Capabilities(incremental_capture=True, transactional_batch=True,
                              max_record_bytes=400 * 1024, capture_sees_deletes=True),
    cloud="aws", install="pip install 'mcrepl[aws]'", summary="Amazon DynamoDB: a table per dataset, "
    "conditional puts, a scan then the table's stream", resource_kind="table",
    operations="mcrepl.adapters.dynamodb.operations:OPERATIONS", local_service="dynamodb",
    fence="mcrepl.adapters.dynamodb.fence:DynamoDBFence")
