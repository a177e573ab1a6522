"""``providers.dynamodb`` in mcrepl.yaml, and the DynamoDB adapter's spec (no SDK import here)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Mapping

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
    batch_writes: Literal["auto", "transact", "single"] = Field(
        "auto", description="transact: a batch's conditional puts go as TransactWriteItems of up to 100 "
                            "(fewer round trips; twice the write capacity per item on AWS); single: one "
                            "conditional PutItem per record; auto: transact on AWS, single on the local stack "
                            "(moto rolls a cancelled transaction back by restoring a copy of the whole table, "
                            "losing writes made meanwhile by other requests)")


def uses_transactions(options: Mapping[str, Any]) -> bool:
    """Whether ``apply_batch`` sends transactions for these target options (see ``batch_writes``)."""
    setting = str(options.get("batch_writes", "auto"))
    return setting == "transact" or (setting == "auto" and not options.get("local"))


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
