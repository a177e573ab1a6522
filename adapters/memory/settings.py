"""``providers.memory``: the in-memory reference adapter's settings and spec."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, Mapping

from pydantic import Field

from ..base.interface import Capabilities
from ..base.settings import AdapterSettings
from ..base.spec import AdapterSpec


class MemorySettings(AdapterSettings):
    """A process-local store; ``namespace`` keeps tests apart."""

    credential_home: ClassVar[str] = "nowhere: the in-memory store has no credentials"

    namespace: str = Field("", description="stores of different namespaces never share data")
    initial_capture: Literal["log", "feed", "scan"] = Field(
        "log", description="what capture from no cursor reads: the whole log, each key's latest change, "
                           "or a key-order scan then the log")
    capture: Literal["log", "listing", "feed"] = Field(
        "log", description="how capture sees changes: the change log (as a DynamoDB stream), by "
                           "comparing listings with a manifest (as GCS and S3 capture: a write deleted "
                           "again between two listings is never seen, nor is any old image), or as a "
                           "latest-version change feed (as Cosmos DB's: each changed item once, in its "
                           "state when read, at the place of its last change; no deletes, no old images)")


class MemorySpec(AdapterSpec):
    """Capture by listing is no change log: not incremental capture (as GCS and S3); a latest-version
    feed shows no deletes (as Cosmos DB's)."""

    def capabilities_for(self, options: Mapping[str, Any]) -> Capabilities:
        caps = self.capabilities             # a mode only takes away (a spec built on this one keeps its limits)
        mode = options.get("capture")
        return dataclasses.replace(caps, incremental_capture=caps.incremental_capture and mode != "listing",
                                   capture_sees_deletes=caps.capture_sees_deletes and mode != "feed")


SPEC = MemorySpec(
    name="memory", adapter="mcrepl.adapters.memory.adapter:MemoryAdapter", settings=MemorySettings,
    capabilities=Capabilities(incremental_capture=True, transactional_batch=True,
                              max_record_bytes=16 * 1024 * 1024, capture_sees_deletes=True),
    cloud="local", install="nothing: it ships with mcrepl", summary="mcrepl's in-memory reference store "
    "(tests, simulation, property-test oracle)", resource_kind="store")
