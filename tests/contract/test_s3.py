"""The S3 adapter against the shipped contract suite, unchanged, as a third party runs it.

Everything S3-specific the suite needs is here: how to open a store (a bucket on the
local stack's moto S3 server, through the real boto3 client) and which inputs the store
refuses. Copy this module to run the suite against your own adapter.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator, Mapping

import pytest

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import KeyAttribute, KeySchema, ReplicaAdapter, ReplicaTarget
from mcrepl.adapters.s3.settings import S3Settings
from mcrepl.testing import AdapterContract, StoreFactory, dropping


def s3_target(endpoint: str, *, kind: Any = "document", key_schema: KeySchema | None = None,
              name: str | None = None) -> ReplicaTarget:
    schema = key_schema or KeySchema(KeyAttribute("name" if kind == "blob" else "pk"))
    options = S3Settings(endpoint=endpoint).options() | {"local": True}
    return ReplicaTarget("s3:eu-west-1", "s3", "eu-west-1", "contract", kind, schema,
                         name or f"ct-{uuid.uuid4().hex[:12]}", options)


class TestS3(AdapterContract):
    @pytest.fixture
    def open_store(self, local_stack: Any) -> Iterator[StoreFactory]:
        endpoint = local_stack.endpoint("s3")

        def open_one(**kw: Any) -> ReplicaAdapter:
            return open_adapter(s3_target(endpoint, **kw))

        with dropping(open_one) as factory:
            yield factory

    @pytest.fixture
    def rejections(self) -> Mapping[str, str]:
        return {"name-1200-bytes": "name-too-long"}          # S3 keys hold at most 1,024 UTF-8 bytes
