"""The in-repo backends the shipped contract suite runs against, each a real store.

Every backend is a real store reached over the network through its real SDK (moto
server, AWS DynamoDB Local, the Cosmos DB emulator package, fake-gcs-server), except
``memory``: our own reference implementation of our own interface, the oracle. Each is
described by data only — provider, local-stack service, settings, the limits its store
rejects — so the suite itself (``mcrepl.testing``) never learns which backend it runs on.
The S3 adapter runs the same suite from its own module (tests/contract/test_s3.py), the
way a third party's package does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from mcrepl.adapters import adapter_spec, open_adapter
from mcrepl.adapters.base import DatasetKind, KeyAttribute, KeySchema, ReplicaAdapter, ReplicaTarget

DYNAMODB_LIMITS = {"39-digit-number": "number-precision", "number-out-of-range": "number-range",
                   "empty-set": "empty-set", "nesting-33-levels": "nesting-depth",
                   "item-450kb": "item-too-large", "item-2.1mb": "item-too-large"}


@dataclass(frozen=True)
class Backend:
    """A contract-suite backend: which provider, which local-stack service, which settings."""

    id: str
    provider: str
    service: str | None               # local-stack service serving it; None for memory
    region: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: the option that keeps namespaces apart besides the resource name (Cosmos: the database)
    namespace_option: str | None = None
    #: BAD_INPUTS cases (and "name-1200-bytes") → the rule this store rejects them with
    rejections: Mapping[str, str] = field(default_factory=dict)

    def target(self, endpoints: Mapping[str, str], *, kind: DatasetKind = "document",
               key_schema: KeySchema | None = None, name: str | None = None) -> ReplicaTarget:
        """A target in a namespace of its own, so tests never see each other's data."""
        name = name or f"ct-{uuid.uuid4().hex[:12]}"
        options = adapter_spec(self.provider).settings(**self.settings).options()
        if self.namespace_option:
            options[self.namespace_option] = name
        if self.service:
            options |= {"endpoint": endpoints[self.service], "local": True}
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
    Backend("memory", "memory", None, "local", namespace_option="namespace"),
    # capture by listing, as GCS and S3 capture (the simulation's listing-captured stores)
    Backend("memory-listing", "memory", None, "local", settings={"capture": "listing"}, namespace_option="namespace"),
    # a latest-version change feed, as Cosmos DB's (the simulation's feed-captured store)
    Backend("memory-feed", "memory", None, "local", settings={"capture": "feed"}, namespace_option="namespace"),
    Backend("moto", "dynamodb", "dynamodb", "eu-west-1", rejections=DYNAMODB_LIMITS),
    Backend("dynamodb-local", "dynamodb", "dynamodb-local", "eu-west-1", rejections=DYNAMODB_LIMITS),
    # batches as TransactWriteItems (batch_writes: auto sends one put per record on the local stack)
    Backend("dynamodb-local-transact", "dynamodb", "dynamodb-local", "eu-west-1",
            settings={"batch_writes": "transact"}, rejections=DYNAMODB_LIMITS),
    Backend("cosmos-emulator", "cosmos", "cosmos", "westeurope", namespace_option="database",
            rejections={"item-2.1mb": "item-too-large", "name-1200-bytes": "id-too-long"}),
    Backend("fake-gcs", "gcs", "gcs", "europe-west1", settings={"auth": "anonymous"},
            rejections={"name-1200-bytes": "name-too-long"}),
]
#: the S3 backend, for the cross-store chain (its contract run is tests/contract/test_s3.py)
S3 = Backend("moto-s3", "s3", "s3", "eu-west-1", rejections={"name-1200-bytes": "name-too-long"})
