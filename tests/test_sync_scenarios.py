"""Issue 11 ("Sync that never hides a change"): each defect users saw, as a named test on the emulators.

Every test is one item of the issue's "What was seen" list (``test_<item>_...``) and runs on
the local stack — moto DynamoDB, the Cosmos DB emulator and fake-gcs-server, started by the
``local_stack`` fixture — with the real SDKs, in its own namespace, dropped at the end.

Where ``tests/simulation/mutants.py`` can put the item's defect back, a second case of the
same test runs the scenario with that mutant applied and asserts that the scenario's key
check fails: the test is sensitive to the fix, not only green next to it.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pytest

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import UnavailableError, document
from mcrepl.failover.faults import FaultProxy
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine

from .test_sync_helpers import COSMOS, GCS, PRIMARY, Stores, customer, emulator_raw_config, live
from .test_sync_helpers import endpoints, namespace  # noqa: F401 - fixtures

SCHEMA = McreplConfig.model_validate(emulator_raw_config(Path("."))).datasets["customers"].key_schema()


def docs(indexes: range, **extra: object) -> list:  # type: ignore[type-arg]
    """Customer documents ``indexes`` as records of the ``customers`` dataset."""
    return [document(SCHEMA, customer(i, **extra)) for i in indexes]


@contextmanager
def proxied(endpoints: dict[str, str], location: str) -> Iterator[tuple[FaultProxy, dict[str, str]]]:
    """A fault proxy in front of ``location``'s emulator, and the endpoints that go through it."""
    service = location.partition(":")[0]
    url = urlparse(endpoints[service])
    with FaultProxy(url.hostname or "127.0.0.1", url.port or 80) as proxy:
        try:
            yield proxy, {**endpoints, service: f"{url.scheme}://127.0.0.1:{proxy.port}"}
        finally:
            proxy.set_mode("pass")


# -- 5: a hung replica holds the others back ------------------------------------------------

@pytest.mark.parametrize("location", [PRIMARY, COSMOS, GCS], ids=["dynamodb", "cosmos", "gcs"])
def test_5_a_call_to_a_hung_store_ends_within_the_retry_deadline(tmp_path: Path, endpoints: dict[str, str],
                                                                 namespace: str, location: str) -> None:
    """A store that accepts connections and answers nothing: the call fails by the retry deadline.

    Connect and read timeouts are bounded by ``sync.retry_deadline`` and the SDK's own retries
    are off, so a hung store costs one deadline per call, not the SDK's defaults (30 s, 60 s,
    65 s plus retries) that made each failing batch take minutes.
    """
    config = McreplConfig.model_validate(emulator_raw_config(tmp_path, replicas=[COSMOS, GCS]))
    with proxied(endpoints, location) as (proxy, through):
        target = config.target("customers", location, through, namespace)
        adapter = open_adapter(dataclasses.replace(target, options={**target.options, "retry_deadline_s": 1.0}))
        try:
            adapter.ensure_ready()
            proxy.set_mode("blackhole")
            started = time.monotonic()
            with pytest.raises(UnavailableError):
                adapter.read(SCHEMA.parse_id("c00001"))
            took = time.monotonic() - started
            proxy.set_mode("pass")
            adapter.drop()
        finally:
            adapter.close()
    assert took < 1.0 + 1.5, f"a call to a hung {location} took {took:.1f}s with a 1s retry deadline"
