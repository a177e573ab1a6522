"""PolicyRouter decisions on single records (the emulator run is in test_policies_sync.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcrepl.adapters.base import KeyAttribute, KeySchema, RecordError, Version, document, tombstone_of
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.policies.encryption import LocalKeyring, is_encrypted
from mcrepl.policies.router import PolicyRouter
from mcrepl.policies.routing import Quarantined, Send, Withheld

US, EU, UK = "dynamodb:us-east-1", "gcs:europe-west3", "cosmos:uksouth"
SCHEMA = KeySchema(KeyAttribute("id"))
V = Version(1_700_000_000_000, 0, "dynamodb:eu-west-1")


@pytest.fixture()
def router(tmp_path: Path) -> PolicyRouter:
    config = McreplConfig.model_validate({
        "state_dir": str(tmp_path), "datasets": {"customers": {
            "key": {"partition": "id"}, "primary": "dynamodb:eu-west-1", "replicas": [US, EU, UK],
            "sensitive_fields": ["email"]}},
        "policies": {"residency": {"records": [{"datasets": ["customers"], "field": "country", "restrict": ["EU"]}]},
                     "encryption": {"fields": [{"dataset": "customers", "plaintext_in": ["EU"]}]}}})
    return PolicyRouter(config, LocalKeyring.create(tmp_path / "keyring.json"))


def _rec(**body: object):  # type: ignore[no-untyped-def]
    return document(SCHEMA, {"id": "c1", "email": "a@example.com", **body}).stamped(V)


def test_an_eu_record_is_withheld_outside_the_eu_with_a_value_free_reason(router: PolicyRouter) -> None:
    decision = router.route("customers", _rec(country="DE"), [US, EU, UK])
    assert sorted(decision.send) == [EU] and sorted(decision.withheld) == [UK, US]
    for why in decision.withheld.values():
        assert why.rule == "residency.record-field" and "DE" not in why.reason and "a@example.com" not in why.reason
    assert router.withheld_total("customers") == 2 and router.withheld_total(replica=US) == 1


def test_records_from_unrestricted_jurisdictions_go_everywhere_encrypted_outside_the_eu(router: PolicyRouter) -> None:
    record = _rec(country="US")
    decision = router.route("customers", record, [US, EU, UK])
    assert sorted(decision.send) == sorted([US, EU, UK])
    assert decision.send[EU] is record
    for replica in (US, UK):
        sent = decision.send[replica]
        assert is_encrypted(sent.body["email"]) and sent.body["country"] == "US"
        assert sent.meta.version == record.meta.version and sent.meta.vector == record.meta.vector
        assert sent.meta.plain_hash == record.meta.content_hash
        assert sent.meta.content_hash == sent.digest_hash() != record.meta.content_hash
        back = router.decrypt_record("customers", sent)
        assert back.body == record.body and back.meta.content_hash == record.meta.content_hash


def test_missing_or_non_iso_country_is_quarantined_where_the_rule_restricts_and_deletes_always_pass(
        router: PolicyRouter) -> None:
    for record in (_rec(), _rec(country="Germany"), _rec(country=49), _rec(country="XX"), _rec(country="")):
        decision = router.route("customers", record, [US, EU, UK])
        # restrict: [EU] — an EU replica may hold any record; US and UK may not hold EU ones
        assert sorted(decision.send) == [EU] and not decision.withheld
        assert sorted(decision.quarantined) == sorted([UK, US])
        for replica, err in decision.quarantined.items():
            assert isinstance(decision.outcome(replica), Quarantined)
            assert (err.rule, err.field, err.dataset, err.key, err.target) == (
                "residency.record-field", "country", "customers", "c1", replica)
            assert "Germany" not in str(err) and "XX" not in str(err) and "49" not in str(err)
    assert router.quarantined[("customers", US, "residency.record-field")] == 5
    tomb = tombstone_of(SCHEMA, _rec().key, V)
    assert sorted(router.route("customers", tomb, [US, EU]).send) == sorted([EU, US])


def test_without_restrict_an_unroutable_record_is_quarantined_everywhere(tmp_path: Path) -> None:
    config = McreplConfig.model_validate({"state_dir": str(tmp_path), "datasets": {"customers": {
        "key": {"partition": "id"}, "primary": "dynamodb:eu-west-1", "replicas": [US, EU]}},
        "policies": {"residency": {"records": [{"datasets": ["customers"], "field": "country"}]}}})
    decision = PolicyRouter(config).route("customers", _rec(country="ZZ"), [US, EU])
    assert sorted(decision.quarantined) == sorted([EU, US]) and not decision.send


def test_el_and_uk_map_to_greece_and_great_britain(router: PolicyRouter) -> None:
    greek = router.route("customers", _rec(country="el"), [US, EU, UK])
    assert sorted(greek.send) == [EU] and sorted(greek.withheld) == sorted([UK, US])
    british = router.route("customers", _rec(country="UK"), [US, EU, UK])     # UK is not restricted here
    assert sorted(british.send) == sorted([US, EU, UK]) and not british.quarantined


def test_an_undeclared_classification_is_withheld_everywhere_at_run_time(tmp_path: Path) -> None:
    from mcrepl.policies.router import router_for
    config = McreplConfig.model_validate({"state_dir": str(tmp_path), "datasets": {"customers": {
        "key": {"partition": "id"}, "primary": "dynamodb:eu-west-1", "replicas": [US, EU],
        "classification": "pii-typo"}}})
    router = router_for(config)
    assert isinstance(router, PolicyRouter)
    decision = router.route("customers", _rec(country="US"), [US, EU])
    assert not decision.send and {w.rule for w in decision.withheld.values()} == {
        "residency.classification-declared"}


def test_every_replica_gets_exactly_one_outcome(router: PolicyRouter) -> None:
    for country in ("DE", "US", "XX", None):
        record = _rec(country=country) if country else _rec()
        decision = router.route("customers", record, [US, EU, UK])
        outcomes = [decision.outcome(r) for r in (US, EU, UK)]
        assert all(isinstance(o, (Send, Withheld, Quarantined)) for o in outcomes)
        parts = [set(decision.send), set(decision.withheld), set(decision.quarantined)]
        assert sum(len(p) for p in parts) == 3 and set().union(*parts) == {US, EU, UK}


def test_a_record_whose_ciphertext_does_not_verify_is_quarantined_not_sent(router: PolicyRouter) -> None:
    a = router.route("customers", _rec(country="US"), [US]).send[US]
    b = router.route("customers", _rec(country="US", email="b@example.com"), [US]).send[US]
    from dataclasses import replace
    decision = router.route("customers", replace(a, body=b.body), [US, EU])
    assert not decision.send and sorted(decision.quarantined) == sorted([EU, US])
    assert {e.rule for e in decision.quarantined.values()} == {"encryption.field-integrity"}


def test_ciphertext_captured_from_a_replica_is_decrypted_before_routing_to_plaintext_replicas(router: PolicyRouter) -> None:
    sent_to_us = router.route("customers", _rec(country="US"), [US]).send[US]
    again = router.route("customers", sent_to_us, [EU, UK])
    assert again.send[EU].body["email"] == "a@example.com"
    assert is_encrypted(again.send[UK].body["email"])


def test_decrypt_record_detects_a_body_that_does_not_match_its_plain_hash(router: PolicyRouter) -> None:
    a = router.route("customers", _rec(country="US"), [US]).send[US]
    b = router.route("customers", _rec(country="US", email="b@example.com"), [US]).send[US]
    from dataclasses import replace
    swapped = replace(a, body=b.body)       # same record key, another version's ciphertext
    with pytest.raises(RecordError) as info:
        router.decrypt_record("customers", swapped)
    assert info.value.rule == "encryption.field-integrity" and "example.com" not in str(info.value)


def test_router_for_uses_the_policy_router_only_when_policies_route(router: PolicyRouter) -> None:
    from mcrepl.policies.router import router_for
    from mcrepl.policies.routing import PassThroughRouter
    assert isinstance(router_for(router.config), PolicyRouter)
    plain = McreplConfig.model_validate({"datasets": {"customers": {
        "key": {"partition": "id"}, "primary": "dynamodb:eu-west-1", "replicas": [US]}}})
    assert isinstance(router_for(plain), PassThroughRouter)
