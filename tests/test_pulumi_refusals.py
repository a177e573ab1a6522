"""Topologies the program must refuse before declaring a single resource.

The policy engine runs first; a residency or encryption violation fails the run (as it
would fail ``pulumi preview``) with the engine's rule ids, and the mock monitor sees no
cloud resource at all. Shapes one stack cannot hold are :class:`ConfigError`s.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pulumi"))

from mcrepl.adapters.base import ConfigError, PolicyError  # noqa: E402
from mcrepl.orchestrator.config import McreplConfig  # noqa: E402
from mcrepl_infra.identities import rendered_documents  # noqa: E402
from mcrepl_infra.testing import RecordingMocks, run_program  # noqa: E402

BASE = yaml.safe_load((ROOT / "examples/pulumi/aws-primary.yaml").read_text())


def _config(edit: Any) -> McreplConfig:
    raw = copy.deepcopy(BASE)
    edit(raw)
    return McreplConfig.model_validate(raw)


def _refused(config: McreplConfig) -> tuple[PolicyError, RecordingMocks]:
    mocks = RecordingMocks()
    with pytest.raises(PolicyError) as info:
        run_program(config, "refused", mocks=mocks)
    return info.value, mocks


def test_residency_violation_fails_with_the_engine_rule_id_and_creates_nothing() -> None:
    config = _config(lambda raw: raw["datasets"]["customers"]["replicas"].append("dynamodb:us-east-1"))
    error, mocks = _refused(config)
    assert {v.rule_id for v in error.violations} == {"residency.classification"}
    assert "residency.classification" in str(error) and "customers@dynamodb:us-east-1" in str(error)
    assert mocks.resources == []


def test_missing_customer_managed_key_fails_with_the_engine_rule_id() -> None:
    def cmk_required(raw: dict) -> None:
        raw["policies"]["encryption"] = {"at_rest": "cmk_required"}
    error, mocks = _refused(_config(cmk_required))
    # DynamoDB and GCS keys are made by the stack (reported as planned keys); Cosmos has none.
    assert {(v.rule_id, v.resource) for v in error.violations} == {
        ("encryption.at-rest-cmk", "customers@cosmos:westeurope")}
    assert "encryption.at-rest-cmk" in str(error)
    assert mocks.resources == []


def test_cmk_required_passes_once_every_store_has_a_key() -> None:
    def cmk_everywhere(raw: dict) -> None:
        raw["policies"]["encryption"] = {"at_rest": "cmk_required"}
        raw["datasets"]["customers"]["replicas"][0] = {
            "at": "cosmos:westeurope", "kms_key": "https://vault1.vault.azure.net/keys/cosmos"}
    run = run_program(_config(cmk_everywhere), "cmk")
    (account,) = run.mocks.of_type("azure-native:cosmosdb:DatabaseAccount")
    assert account.inputs["keyVaultKeyUri"] == "https://vault1.vault.azure.net/keys/cosmos"


def test_cosmos_failover_region_outside_the_jurisdiction_is_refused() -> None:
    config = _config(lambda raw: raw["provisioning"]["azure"].update(failover_regions=["northeurope", "eastus"]))
    error, mocks = _refused(config)
    assert [(v.rule_id, v.resource) for v in error.violations] == [
        ("residency.cosmos-failover", "provisioning.azure.failover_regions[1]")]
    assert mocks.resources == []


def test_key_auth_on_cosmos_is_refused_by_the_rbac_rule() -> None:
    error, _ = _refused(_config(lambda raw: raw["providers"]["cosmos"].update(auth="key")))
    assert {v.rule_id for v in error.violations} == {"iam.cosmos-rbac"}


def test_cosmos_replicas_in_two_regions_are_a_config_error() -> None:
    config = _config(lambda raw: raw["datasets"]["invoices"]["replicas"].append("cosmos:northeurope"))
    with pytest.raises(ConfigError, match="one Cosmos account"):
        run_program(config, "two-cosmos")


def test_a_location_the_program_cannot_provision_is_a_config_error() -> None:
    """An S3 location is never mistaken for a Cloud Storage bucket; the program says it does not make it."""
    config = _config(lambda raw: raw["datasets"]["invoices"]["replicas"].append("s3:eu-west-1"))
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match="does not provision s3 locations"):
        run_program(config, "s3", mocks=mocks)


def test_dns_for_a_gcs_primary_is_a_config_error() -> None:
    def gcs_primary(raw: dict) -> None:
        raw["datasets"]["invoices"]["primary"] = "gcs:europe-west4"
        raw["datasets"]["invoices"]["replicas"] = ["dynamodb:eu-west-1"]
        raw["provisioning"]["dns"]["records"] = {"invoices": "invoices-writes"}
    with pytest.raises(ConfigError, match="Cloud Storage primary"):
        run_program(_config(gcs_primary), "gcs-dns")


def test_cosmos_scopes_follow_the_real_account_id() -> None:
    """A config without a subscription id still grants on the account the stack made."""
    config = _config(lambda raw: raw["provisioning"]["azure"].pop("subscription_id"))
    account = ("/subscriptions/99999999-9999-9999-9999-999999999999/resourceGroups/mcrepl-demo/providers/"
               "Microsoft.DocumentDB/databaseAccounts/mcrepl-demo-aws-primary")
    docs = rendered_documents(config, {"providers": {"cosmos": {"account_id": account, "database": "mcrepl",
                                                                "account_name": "mcrepl-demo-aws-primary"}}})
    scope = docs["azure"]["apply"]["customers@cosmos:westeurope"]["roleAssignment"]["properties"]["scope"]
    assert scope == f"{account}/dbs/mcrepl/colls/customers"
