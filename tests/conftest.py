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
* ``MCREPL_TEST_S3_ENDPOINT``             instead of the moto S3 server

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
    "s3": "MCREPL_TEST_S3_ENDPOINT",
}


def external_endpoints() -> dict[str, str]:
    """The services the environment points at existing endpoints."""
    return {name: os.environ[var] for name, var in ENDPOINT_OVERRIDES.items() if os.environ.get(var)}


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The emulators, started lazily: ``local_stack.endpoint("cosmos")`` starts one,
    ``local_stack.endpoints`` starts all of them (in parallel) and maps name → URL.

    Cosmos DB targets marked local use the emulator's published key unless
    ``MCREPL_COSMOS_KEY`` is set (set it for an official emulator with another key).
    """
    stack = LocalStack(SERVICE_NAMES, external=external_endpoints())
    try:
        yield stack
    finally:
        stack.stop()


# --- per-backend count of the adapter contract suite, printed at the end of every run -------------

_CONTRACT_BACKENDS = ("memory", "moto", "dynamodb-local", "cosmos-emulator", "fake-gcs", "s3")
_contract_counts: dict[str, dict[str, int]] = {}


def _contract_backend(nodeid: str) -> str | None:
    if "tests/contract/" not in nodeid:
        return None
    if "tests/contract/test_s3.py" in nodeid:
        return "s3"
    params = nodeid.rpartition("[")[2].rstrip("]") if "[" in nodeid else ""
    for backend in _CONTRACT_BACKENDS:
        if params == backend or params.startswith(f"{backend}-") or params.endswith(f"-{backend}") \
                or f"-{backend}-" in params:
            return backend
    return "cross-store"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count contract-suite outcomes per backend (on the xdist controller too: reports reach it)."""
    backend = _contract_backend(report.nodeid)
    if backend is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        counts = _contract_counts.setdefault(backend, {"passed": 0, "failed": 0, "skipped": 0})
        counts[report.outcome] = counts.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many contract tests ran against each backend."""
    if not _contract_counts:
        return
    terminalreporter.section("adapter contract suite per backend")
    for backend in (*_CONTRACT_BACKENDS, "cross-store"):
        if backend in _contract_counts:
            c = _contract_counts[backend]
            terminalreporter.write_line(f"{backend:16} {c['passed']:4} passed  {c['failed']:3} failed  "
                                        f"{c['skipped']:3} skipped")
