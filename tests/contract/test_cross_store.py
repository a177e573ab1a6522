"""Round trips across stores: what one store hands back, the next stores and returns unchanged."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from mcrepl.adapters.base import ApplyOutcome

from .backends import BACKENDS
from .records import bodies, stamped

pytestmark = pytest.mark.contract


@pytest.fixture
def chain(local_stack):
    stores = [b.open(local_stack.endpoints) for b in BACKENDS if b.id != "dynamodb-local"]
    yield stores
    for s in stores:
        s.drop()
        s.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=bodies)
def test_record_survives_every_hop(chain, body: dict) -> None:
    """memory → DynamoDB → Cosmos DB → GCS → memory, each hop writing what the last returned."""
    rec = stamped("hop", **body)
    carried = rec
    for store in chain:
        assert store.apply_batch([carried])[0].outcome in (ApplyOutcome.APPLIED, ApplyOutcome.REPLAYED)
        carried = store.read(rec.key)
        assert carried.body == rec.body and carried.meta == rec.meta
