# local_stack fixture ready
"""Shared fixtures: the local cloud stack every integration and contract test talks to.

``local_stack`` is one :class:`mcrepl.orchestrator.localstack.LocalStack` per test
session (per xdist worker): services start on free 127.0.0.1 ports the first time a
test asks for them and are stopped, process group and all, when the session ends.

Point the suite at other services (real clouds, Microsoft's Cosmos DB emulator) by
setting, before running pytest:

* ``MCREPL_TEST_DYNAMODB_ENDPOINT``       instead of the moto server
* ``MCREPL_TEST_DYNAMODB_LOCAL_ENDPOINT`` instead of AWS DynamoDB Local
* ``MCREPL_TEST_COSMOS_ENDPOINT``         instead of @vercel/cosmosdb-server
  (with ``MCREPL_COSMOS_KEY`` holding that account's key)
* ``MCREPL_TEST_GCS_ENDPOINT``            instead of fake-gcs-server

Such endpoints are used as given and never started or stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from mcrepl.orchestrator.localstack import SERVICE_NAMES, LocalStack

#: service name → the environment variable that replaces it with an existing endpoint
ENDPOINT_OVERRIDES = {
    "dynamodb": "MCREPL_TEST_DYNAMODB_ENDPOINT",
    "dynamodb-local": "MCREPL_TEST_DYNAMODB_LOCAL_ENDPOINT",
    "cosmos": "MCREPL_TEST_COSMOS_ENDPOINT",
    "gcs": "MCREPL_TEST_GCS_ENDPOINT",
}


def external_endpoints() -> dict[str, str]:
    """The services the environment points at existing endpoints."""
    return {name: os.environ[var] for name, var in ENDPOINT_OVERRIDES.items() if os.environ.get(var)}


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The emulators, started lazily: ``local_stack.endpoint("cosmos")`` starts one,
    ``local_stack.endpoints`` starts all four (in parallel) and maps name → URL.

    Cosmos DB targets marked local use the emulator's published key unless
    ``MCREPL_COSMOS_KEY`` is set (set it for an official emulator with another key).
    """
    stack = LocalStack(SERVICE_NAMES, external=external_endpoints())
    try:
        yield stack
    finally:
        stack.stop()
