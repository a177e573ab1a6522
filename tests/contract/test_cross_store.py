"""Round trips across every store: memory → DynamoDB → Cosmos DB → GCS → S3 → memory, no value changed."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from mcrepl.adapters.base import ReplicaAdapter
from mcrepl.testing import ChainContract

from .backends import BACKENDS, S3

HOPS = ["memory", "moto", "cosmos-emulator", "fake-gcs"]


class TestEveryStore(ChainContract):
    @pytest.fixture
    def chain(self, local_stack: Any) -> Iterator[list[ReplicaAdapter]]:
        by_id = {b.id: b for b in BACKENDS}
        backends = [by_id[h] for h in HOPS] + [S3, by_id["memory"]]
        stores = [b.open({b.service: local_stack.endpoint(b.service)} if b.service else {}) for b in backends]
        yield stores
        for s in stores:
            s.drop()
            s.close()
