"""The CrossGuard pack's rules on resource arguments.

Inputs come from two places: the exact camelCase inputs the example stacks register
under Pulumi's mock monitor (what the engine would hand the analyzer), and small
edits of them that break one rule each. The policies are called through
``ResourceValidationPolicy.validate`` with real ``pulumi_policy`` argument objects.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (PolicyCustomTimeouts, PolicyProviderResource, PolicyResourceOptions,
                           ResourceValidationArgs)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pulumi"))
sys.path.insert(0, str(ROOT / "pulumi/policy-pack"))

from mcrepl.orchestrator.config import load_config  # noqa: E402
from mcrepl_infra.testing import ProgramRun, Registered, run_program  # noqa: E402
from mcrepl_policy_rules import (BUCKET, COSMOS_ACCOUNT, TABLE, PackSettings, check_encryption,  # noqa: E402
                                 check_replication_ready, check_residency, pack_policies)

AWS_PRIMARY = ROOT / "examples/pulumi/aws-primary.yaml"
AZURE_PRIMARY = ROOT / "examples/pulumi/azure-primary.yaml"


@pytest.fixture(scope="module")
def stack() -> ProgramRun:
    return run_program(load_config(AWS_PRIMARY), "pack")


@pytest.fixture(scope="module")
def settings() -> PackSettings:
    return PackSettings.load({"configPath": str(AWS_PRIMARY)})


def _args(resource: Registered | tuple[str, dict], config: dict | None = None,
          provider_region: str | None = None) -> ResourceValidationArgs:
    typ, props = (resource.type, resource.inputs) if isinstance(resource, Registered) else resource
    region = provider_region or (resource.region if isinstance(resource, Registered) else None)
    provider = PolicyProviderResource("pulumi:providers:aws", {"region": region}, "urn:provider", "p") \
        if region else None
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    return ResourceValidationArgs(typ, props, f"urn:pulumi:s::p::{typ}::r", "r", opts, provider,
                                  config or {"configPath": str(AWS_PRIMARY)})


def _violations(args: ResourceValidationArgs) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for policy in pack_policies():
        messages: list[str] = []
        policy.validate(args, lambda message, urn=None, _m=messages: _m.append(message))
        if messages:
            found[policy.name] = messages
    return found


def _stores(run: ProgramRun) -> list[Registered]:
    return [r for r in run.mocks.resources if r.type in (TABLE, COSMOS_ACCOUNT, BUCKET)]


def test_every_store_of_both_example_stacks_passes_the_pack(stack: ProgramRun) -> None:
    stores = _stores(stack)
    assert {r.type for r in stores} == {TABLE, COSMOS_ACCOUNT, BUCKET}
    for resource in stores:
        assert _violations(_args(resource)) == {}, resource.name
    azure = run_program(load_config(AZURE_PRIMARY), "pack-azure")
    for resource in _stores(azure):
        assert _violations(_args(resource, {"configPath": str(AZURE_PRIMARY)})) == {}, resource.name


def _one(run: ProgramRun, typ: str, **match: Any) -> Registered:
    return next(r for r in run.mocks.of_type(typ) if all(r.inputs.get(k) == v for k, v in match.items()))


def test_table_in_a_region_outside_the_jurisdiction_is_a_residency_violation(stack: ProgramRun) -> None:
    table = _one(stack, TABLE, name="mcrepl-pack-customers")
    found = _violations(_args(table, provider_region="us-east-1"))
    assert list(found) == ["mcrepl-residency"]
    assert found["mcrepl-residency"] == [
        "[residency.class] dynamodb:us-east-1 is in US, but dataset 'customers' (pii) may live only in EU"]
    # the financial dataset may live in EU, UK or CH: London is fine for it, Virginia is not
    invoices = _one(stack, TABLE, name="mcrepl-pack-invoices")
    assert _violations(_args(invoices, provider_region="eu-west-2")) == {}
    assert "mcrepl-residency" in _violations(_args(invoices, provider_region="us-east-1"))


def test_unknown_region_is_never_allowed(settings: PackSettings) -> None:
    found = check_residency(BUCKET, {"location": "EUROPE-WEST99", "labels": {"mcrepl-dataset": "customers"}},
                            settings)
    assert len(found) == 1 and found[0].startswith("[residency.region-known] gcs:europe-west99")


def test_cosmos_failover_location_outside_the_jurisdiction(stack: ProgramRun, settings: PackSettings) -> None:
    account = copy.deepcopy(_one(stack, COSMOS_ACCOUNT).inputs)
    account["locations"].append({"locationName": "East US", "failoverPriority": 2})
    found = check_residency(COSMOS_ACCOUNT, account, settings)
    assert found == ["[residency.class] cosmos:eastus is in US, but dataset 'customers' (pii) may live only in EU"]


def test_table_without_a_customer_managed_key(stack: ProgramRun) -> None:
    table = copy.deepcopy(_one(stack, TABLE, name="mcrepl-pack-customers").inputs)
    table["serverSideEncryption"] = {"enabled": True}
    found = _violations(_args((TABLE, table), provider_region="eu-west-1"))
    assert list(found) == ["mcrepl-encryption"]
    assert found["mcrepl-encryption"][0].startswith("[encryption.at-rest] DynamoDB table has no customer-managed")


def test_bucket_without_cmek_and_cosmos_cmk_only_when_required(stack: ProgramRun, settings: PackSettings) -> None:
    bucket = copy.deepcopy(_one(stack, BUCKET, name="mcrepl-pack-customers-europe-west1-1de9b9").inputs)
    del bucket["encryption"]
    assert check_encryption(BUCKET, bucket, settings) == [
        "[encryption.at-rest] bucket has no CMEK (set encryption.defaultKmsKeyName)"]
    account = _one(stack, COSMOS_ACCOUNT).inputs
    assert check_encryption(COSMOS_ACCOUNT, account, settings) == []          # provider_managed config
    required = PackSettings(settings.config, require_cmk=True)
    assert [m.split("]")[0] for m in check_encryption(COSMOS_ACCOUNT, account, required)] == ["[encryption.at-rest"]
    assert PackSettings.load({"configPath": str(AZURE_PRIMARY)}).require_cmk is True   # at_rest: cmk_required
    weak_tls = {**account, "minimalTlsVersion": "Tls"}
    assert check_encryption(COSMOS_ACCOUNT, weak_tls, settings) == [
        "[encryption.tls] Cosmos DB account accepts TLS below 1.2 (set minimalTlsVersion: Tls12)"]


def test_replication_readiness_of_tables_buckets_and_accounts(stack: ProgramRun) -> None:
    table = copy.deepcopy(_one(stack, TABLE, name="mcrepl-pack-customers").inputs)
    table.update(streamViewType="KEYS_ONLY", pointInTimeRecovery={"enabled": False}, deletionProtectionEnabled=False)
    assert len(check_replication_ready(TABLE, table)) == 3
    bucket = copy.deepcopy(_one(stack, BUCKET, name="mcrepl-pack-customers-europe-west1-1de9b9").inputs)
    bucket.update(versioning={"enabled": False}, publicAccessPrevention="inherited")
    assert check_replication_ready(BUCKET, bucket) == ["bucket versioning must be enabled",
                                                        "public access prevention must be 'enforced'"]
    account = copy.deepcopy(_one(stack, COSMOS_ACCOUNT).inputs)
    account["locations"][1]["failoverPriority"] = 0
    assert check_replication_ready(COSMOS_ACCOUNT, account) == [
        "Cosmos locations need unique failover priorities 0..n-1 (0 = write region)"]


def test_without_a_config_only_known_regions_and_keys_are_checked(stack: ProgramRun) -> None:
    table = _one(stack, TABLE, name="mcrepl-pack-customers")
    bare = PackSettings()
    assert check_residency(TABLE, table.inputs, bare, {"region": "us-east-1"}) == []
    assert check_residency(TABLE, table.inputs, bare, {"region": "us-east-7"})[0].startswith(
        "[residency.region-known]")
    assert check_encryption(TABLE, table.inputs, bare) == []
