"""The epoch record in Cosmos DB: one document per dataset in the container ``<container>-mcrepl-epoch``.

Cosmos DB has no condition that spans two documents (and the emulator no transactional
batch), so fenced writes check the record, write, and check again
(:func:`~mcrepl.adapters.base.fence.checked_write`); publication is a compare-and-swap
on the document's etag (``If-Match``), creation a ``create`` that fails if it exists.
Reads are single-partition queries: the emulator answers a point read of a missing
document with HTTP 500.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey

from ..base.fence import DocumentFence, EpochRecord
from ..base.interface import ReplicaTarget
from ..base.retry import policy_for
from .auth import close_client, make_client
from .errors import cosmos_call

_BY_ID = "SELECT * FROM c WHERE c.id = @id"


class CosmosFence(DocumentFence[str]):
    """The epoch document of ``target.dataset`` beside the dataset's container."""

    def __init__(self, target: ReplicaTarget) -> None:
        super().__init__(target)
        self._where = dataclasses.replace(target, resource=self.resource)
        self._policy = policy_for(target.options)
        self._client: CosmosClient | None = None
        self._lock = threading.Lock()

    def _call(self, fn: Any, operation: str) -> Any:
        return cosmos_call(fn, self._where, operation, self.target.dataset, self._policy)

    @property
    def _cosmos(self) -> CosmosClient:
        with self._lock:
            if self._client is None:
                self._client = self._call(lambda: make_client(self.target.options), "connect")
            return self._client

    @property
    def _database_name(self) -> str:
        return str(self.target.options.get("database") or "mcrepl")

    @property
    def _container(self) -> ContainerProxy:
        return self._cosmos.get_database_client(self._database_name).get_container_client(self.resource)

    def ensure(self) -> None:
        """Create the container on the local stack; on Azure it is provisioned, so only read it."""
        if self.target.options.get("local"):
            def create() -> None:
                db = self._cosmos.create_database_if_not_exists(self._database_name)
                db.create_container_if_not_exists(self.resource, PartitionKey(path="/id"))
            self._call(create, "ensure_epoch")
            return
        self._call(lambda: self._container.read(), "ensure_epoch")

    def load(self) -> tuple[EpochRecord | None, str | None]:
        docs = self._call(lambda: list(self._container.query_items(
            _BY_ID, parameters=[{"name": "@id", "value": self.target.dataset}],
            partition_key=self.target.dataset)), "read_epoch")
        if not docs:
            return None, None
        return EpochRecord.from_json(docs[0]), str(docs[0]["_etag"])

    def store(self, record: EpochRecord, token: str | None) -> None:
        doc = {"id": record.dataset, **dataclasses.asdict(record)}
        if token is None:
            self._call(lambda: self._container.create_item(doc), "publish_epoch")
        else:
            self._call(lambda: self._container.replace_item(record.dataset, doc, etag=token,
                                                            match_condition=MatchConditions.IfNotModified),
                       "publish_epoch")

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                close_client(self._client)
                self._client = None


__all__ = ["CosmosFence"]
