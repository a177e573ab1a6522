"""The backends the contract suite runs against, and how to open a fresh namespace on each.

Every backend is a real store reached over the network through its real SDK (moto
server, AWS DynamoDB Local, the Cosmos DB emulator package, fake-gcs-server), except
``memory``: our own reference implementation of our own interface, the oracle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import DatasetKind, KeyAttribute, KeySchema, ReplicaAdapter, ReplicaTarget
from mcrepl.orchestrator.config import CosmosSettings, DynamoDBSettings, GCSSettings


@dataclass(frozen=True)
class Backend:
    """A contract-suite backend: which provider, and which local-stack endpoint serves it."""

    id: str
    provider: str
    endpoint_key: str | None          # key in local_stack.endpoints, None for memory
    region: str

    def target(self, endpoints: Mapping[str, str], *, kind: DatasetKind = "document",
               key_schema: KeySchema | None = None, name: str | None = None) -> ReplicaTarget:
        """A target in a namespace of its own, so tests never see each other's data."""
        name = name or f"ct-{uuid.uuid4().hex[:12]}"
        options: dict[str, Any]
        if self.provider == "dynamodb":
            options = DynamoDBSettings().model_dump()
        elif self.provider == "cosmos":
            options = CosmosSettings().model_dump() | {"database": name}
        elif self.provider == "gcs":
            options = GCSSettings(auth="anonymous").model_dump()
        else:
            options = {"namespace": name}
        if self.endpoint_key:
            options |= {"endpoint": endpoints[self.endpoint_key], "local": True}
        schema = key_schema or (KeySchema(KeyAttribute("name")) if kind == "blob"
                                else KeySchema(KeyAttribute("pk")))
        return ReplicaTarget(replica=f"{self.provider}:{self.region}", provider=self.provider,
                             region=self.region, dataset="contract", kind=kind, key_schema=schema,
                             resource=name, options=options)

    def open(self, endpoints: Mapping[str, str], **kw: Any) -> ReplicaAdapter:
        adapter = open_adapter(self.target(endpoints, **kw))
        adapter.ensure_ready()
        return adapter


BACKENDS = [
    Backend("memory", "memory", None, "local"),
    Backend("moto", "dynamodb", "dynamodb", "eu-west-1"),
    Backend("dynamodb-local", "dynamodb", "dynamodb-local", "eu-west-1"),
    Backend("cosmos-emulator", "cosmos", "cosmos", "westeurope"),
    Backend("fake-gcs", "gcs", "gcs", "europe-west1"),
]
