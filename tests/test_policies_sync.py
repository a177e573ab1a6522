"""Residency and field encryption during a real sync against the emulators.

A record with ``country: DE`` never reaches a US replica (DynamoDB, Cloud Storage and
Cosmos DB emulators), nor does one without a country (quarantined there), the withheld
count is reported per lane, and the US replicas hold
only ciphertext for the sensitive fields — checked by reading the items back from each
emulator — while the EU replica holds plaintext.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import document
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine
from mcrepl.policies.encryption import LocalKeyring, is_encrypted
from mcrepl.policies.router import PolicyRouter

PRIMARY = "dynamodb:eu-west-1"
US_REPLICAS = ["dynamodb:us-east-1", "gcs:us-east1", "cosmos:eastus"]
EU_REPLICA = "gcs:europe-west3"
COUNTRIES = {"c-de": "DE", "c-fr": "FR", "c-us": "US", "c-jp": "JP", "c-gb": "GB", "c-none": None}
EU_KEYS, NO_COUNTRY = {"c-de", "c-fr"}, {"c-none"}


def _config(tmp_path: Path) -> McreplConfig:
    return McreplConfig.model_validate({
        "profile": "local", "state_dir": str(tmp_path / "state"),
        "providers": {"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local", "auth": "key"},
                      "gcs": {"endpoint": "local", "auth": "anonymous"}},
        "datasets": {"customers": {"key": {"partition": "customer_id"}, "primary": PRIMARY,
                                   "replicas": [*US_REPLICAS, EU_REPLICA], "sensitive_fields": ["email", "phone"],
                                   "schedule": {"every": "1s"}}},
        "policies": {"residency": {"records": [{"datasets": ["customers"], "field": "country", "restrict": ["EU"]}]},
                     "encryption": {"fields": [{"dataset": "customers", "plaintext_in": ["EU"]}]}}})


def _body(key: str, country: str | None) -> dict:
    body = {"customer_id": key, "email": f"{key}@example.com", "phone": "+49 301234567", "plan": "team",
            "address": {"city": "Somewhere"}}
    if country:
        body["country"] = country
    return body


@pytest.fixture()
def world(tmp_path: Path, local_stack):  # type: ignore[no-untyped-def]
    config = _config(tmp_path)
    endpoints = local_stack.endpoints
    namespace = f"p{uuid.uuid4().hex[:6]}"
    adapters = {t.replica: open_adapter(t) for t in config.targets("customers", endpoints, namespace)}
    yield config, endpoints, namespace, adapters
    for adapter in adapters.values():
        try:
            adapter.drop()
        finally:
            adapter.close()


def test_country_de_never_reaches_a_us_replica_and_us_replicas_hold_only_ciphertext(tmp_path: Path, world) -> None:  # type: ignore[no-untyped-def]
    config, endpoints, namespace, adapters = world
    schema = config.datasets["customers"].key_schema()
    primary = adapters[PRIMARY]
    primary.ensure_ready()
    records = {k: document(schema, _body(k, c)) for k, c in COUNTRIES.items()}
    primary.write_native(list(records.values()))

    router = PolicyRouter(config, LocalKeyring.create(tmp_path / "keyring.json"))
    state = StateStore(tmp_path / "state.db")
    engine = SyncEngine(config, state, local_endpoints=endpoints,
                        namespace=namespace, router=router)
    try:
        report = engine.run_once()
    finally:
        engine.close()

    lanes = report.datasets["customers"].lanes
    for replica in US_REPLICAS:
        assert lanes[replica].withheld == len(EU_KEYS), replica
        assert lanes[replica].rejected == len(NO_COUNTRY), replica
        assert lanes[replica].applied == len(COUNTRIES) - len(EU_KEYS | NO_COUNTRY), replica
    # restrict: [EU]: a record without a country may be an EU one, so it is quarantined for the
    # US replicas (never sent, journaled with the rule and the field, never the value), while
    # the EU replica, allowed to hold any record, gets it
    quarantined = {(q["key_id"], q["replica"]): q for q in state.journal.quarantined("customers")}
    assert set(quarantined) == {(k, r) for k in NO_COUNTRY for r in US_REPLICAS}
    assert all(q["rule"] == "residency.record-field" and q["field"] == "country" for q in quarantined.values())
    assert lanes[EU_REPLICA].withheld == 0 and lanes[EU_REPLICA].applied == len(COUNTRIES)
    assert router.withheld_total("customers") == 3 * len(EU_KEYS)
    assert sum(router.quarantined.values()) == 3 * len(NO_COUNTRY)

    for replica in US_REPLICAS:
        stored = {d.key_id for d in adapters[replica].list_digests()}
        assert stored == set(COUNTRIES) - EU_KEYS - NO_COUNTRY, replica
        for key in EU_KEYS:
            assert adapters[replica].read(records[key].key) is None, (replica, key)
        for key in stored:
            held = adapters[replica].read(records[key].key)           # read back from the emulator
            assert held is not None and held.meta is not None and held.meta.plain_hash
            assert is_encrypted(held.body["email"]) and is_encrypted(held.body["phone"]), (replica, key)
            assert f"{key}@example.com" not in repr(held.body)
            assert held.body["plan"] == "team" and held.body["country"] == COUNTRIES[key]
            plain = router.decrypt_record("customers", held)
            assert plain.body == records[key].body, (replica, key)

    eu = adapters[EU_REPLICA]
    for key in COUNTRIES:
        held = eu.read(records[key].key)
        assert held is not None and held.body == records[key].body, key   # plaintext inside the EU
