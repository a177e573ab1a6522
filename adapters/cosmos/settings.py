"""``providers.cosmos`` in mcrepl.yaml, and the Cosmos DB adapter's spec (no SDK import here)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar, Literal, Mapping

from pydantic import Field, model_validator

from ..base.errors import ConfigError
from ..base.interface import Capabilities
from ..base.settings import AdapterSettings, LocatedValueError
from ..base.spec import AdapterSpec

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024


class CosmosSettings(AdapterSettings):
    """How to reach Cosmos DB: by account key (from an env var) or by Entra ID (``aad``)."""

    credential_home: ClassVar[str] = (
        "the environment variable named by providers.cosmos.key_env (default MCREPL_COSMOS_KEY), or auth: aad")

    auth: Literal["key", "aad"] = Field("key", description="key: the account key from key_env; aad: Entra ID "
                                                           "(DefaultAzureCredential)")
    key_env: str = Field("MCREPL_COSMOS_KEY", description="the environment variable holding the account key")
    database: str = Field("mcrepl", description="the database holding one container per dataset")
    change_feed: Literal["auto", "on", "off"] = Field(
        "auto", description="capture by change feed (on), by _ts window query (off), or auto: the feed "
                            "except on the local emulator, which has no incremental change feed")

    def credentials_fix(self) -> str:
        return f"the environment variable {self.key_env} (providers.cosmos.key_env), or auth: aad"

    @model_validator(mode="after")
    def _key_env_is_a_name(self) -> "CosmosSettings":
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.key_env):
            raise LocatedValueError("is not an environment variable name (it names the variable that holds "
                                    "the key, never the key itself)", at="key_env",
                                    fix="write a variable name such as MCREPL_COSMOS_KEY and export the key in it")
        return self


def uses_change_feed(options: Mapping[str, Any]) -> bool:
    """Whether capture follows the change feed (else the ``_ts`` window) for these options."""
    setting = str(options.get("change_feed", "auto"))
    if setting not in ("auto", "on", "off"):
        raise ConfigError(f"unknown change_feed setting {setting!r}", path="providers.cosmos.change_feed",
                          fix="use 'auto', 'on' or 'off'")
    return setting == "on" or (setting == "auto" and not options.get("local"))


class CosmosSpec(AdapterSpec):
    """Capture mode follows ``change_feed``; on the local emulator each region gets its own database."""

    def capabilities_for(self, options: Mapping[str, Any]) -> Capabilities:
        # the _ts window re-reads rather than following a log: not incremental capture
        return dataclasses.replace(self.capabilities, incremental_capture=uses_change_feed(options))

    def location_options(self, options: dict[str, Any], region: str, namespace: str) -> dict[str, Any]:
        if options.get("local"):
            # one emulator serves every region: a database per region keeps replicas apart
            return {**options, "database": f"{namespace}{options['database']}-{region}"}
        return options


SPEC = CosmosSpec(
    name="cosmos", adapter="mcrepl.adapters.cosmos.adapter:CosmosAdapter", settings=CosmosSettings,
    capabilities=Capabilities(incremental_capture=True, transactional_batch=False,
                              max_record_bytes=MAX_DOCUMENT_BYTES, capture_sees_deletes=False),
    cloud="azure", install="pip install 'mcrepl[azure]'", summary="Azure Cosmos DB (NoSQL API): a container "
    "per dataset, etag preconditions, capture by change feed or _ts window", resource_kind="container",
    operations="mcrepl.adapters.cosmos.operations:OPERATIONS", local_service="cosmos",
    fence="mcrepl.adapters.cosmos.fence:CosmosFence")
