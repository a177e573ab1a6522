"""Issue 16 under Pulumi's mocks: many stacks of one config, protected data, Azure CMK identity,
stack-file settings.

Every test runs the real program with ``pulumi.runtime.set_mocks``; resource options
(``protect``, ``retainOnDelete``) are recorded by a stack transformation in the harness.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pulumi"))

from mcrepl.adapters.base import ConfigError  # noqa: E402
from mcrepl.orchestrator.config import load_config  # noqa: E402
from mcrepl_infra.testing import ProgramRun, run_program  # noqa: E402

EXAMPLES = [ROOT / "examples/pulumi/aws-primary.yaml", ROOT / "examples/pulumi/azure-primary.yaml"]
#: input properties that hold a name the cloud keeps (per account, project or globally)
NAME_KEYS = ("name", "accountName", "accountId", "roleId", "resourceName", "resourceGroupName", "profileName",
             "workloadIdentityPoolId", "url")
#: types whose loss loses data: tables, keys, the Cosmos account/database/containers, buckets
DATA_TYPES = {"aws:dynamodb/table:Table", "aws:kms/key:Key", "azure-native:cosmosdb:DatabaseAccount",
              "azure-native:cosmosdb:SqlResourceSqlDatabase", "azure-native:cosmosdb:SqlResourceSqlContainer",
              "gcp:storage/bucket:Bucket", "gcp:kms/cryptoKey:CryptoKey"}
#: names that live inside a stack's own account/group/table (so can't collide), or are DNS
#: names the config itself chooses per environment
SCOPED = {"azure-native:cosmosdb:SqlResourceSqlDatabase", "azure-native:cosmosdb:SqlResourceSqlContainer",
          "azure-native:cosmosdb:SqlResourceSqlRoleDefinition", "azure-native:cosmosdb:SqlResourceSqlRoleAssignment",
          "aws:iam/rolePolicy:RolePolicy", "gcp:kms/cryptoKey:CryptoKey", "aws:route53/record:Record",
          # inside the stack's own managed identity / workload identity pool
          "azure-native:managedidentity:FederatedIdentityCredential",
          "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"}


def _physical(run: ProgramRun) -> set[tuple[str, str]]:
    out = set()
    for r in run.mocks.resources:
        if r.type.startswith(("mcrepl:", "pulumi:")) or r.type in SCOPED:
            continue
        for key in NAME_KEYS:
            value = r.inputs.get(key)
            if isinstance(value, str) and value and not (key == "resourceGroupName" and r.type !=
                                                         "azure-native:resources:ResourceGroup"):
                out.add((r.type, value))
        if r.type == "azure-native:trafficmanager:Profile":
            out.add((r.type, r.inputs["dnsConfig"]["relativeName"]))
    return out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_two_stacks_of_one_config_share_no_physical_name(path: Path) -> None:
    config = load_config(path)
    dev, prod = run_program(config, "dev"), run_program(config, "prod")
    names_dev, names_prod = _physical(dev), _physical(prod)
    assert len(names_dev) >= 10
    assert not names_dev & names_prod, sorted(names_dev & names_prod)
    # and the stack outputs point the sync engine at the stack's own names
    for per_loc in dev.outputs["datasets"].values():
        for at, out in per_loc.items():
            assert "dev" in out["resource"] or at.startswith("cosmos:")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_data_resource_is_protected_and_key_rings_are_retained(path: Path) -> None:
    run = run_program(load_config(path), "protect")
    data = [(t, n) for (t, n) in run.mocks.options if t in DATA_TYPES]
    assert data
    unprotected = [(t, n) for (t, n) in data if not run.mocks.options[(t, n)][0]]
    assert unprotected == []
    for (t, n), (_, retained) in run.mocks.options.items():
        if t in ("gcp:kms/keyRing:KeyRing", "gcp:kms/cryptoKey:CryptoKey"):
            assert retained, f"{n} would be destroyed, but Cloud KMS can never delete it"


def test_key_ring_names_take_a_generation_so_a_destroyed_stack_can_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(EXAMPLES[0])
    first = {r.inputs["name"] for r in run_program(config, "kms").mocks.of_type("gcp:kms/keyRing:KeyRing")}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"mcrepl:kmsGeneration": "2"}))
    second = {r.inputs["name"] for r in run_program(config, "kms").mocks.of_type("gcp:kms/keyRing:KeyRing")}
    assert first and second and not first & second


def test_azure_cmk_account_has_a_user_assigned_default_identity_granted_on_the_vault() -> None:
    run = run_program(load_config(EXAMPLES[1]), "cmk")
    (account,) = run.mocks.of_type("azure-native:cosmosdb:DatabaseAccount")
    (identity,) = [i for i in run.mocks.of_type("azure-native:managedidentity:UserAssignedIdentity")
                   if i.inputs["resourceName"].endswith("cosmos-cmk")]
    identity_id = identity.outputs.get("id") or f"{identity.name}_id"
    assert account.inputs["identity"]["type"] == "UserAssigned"
    assert list(account.inputs["identity"]["userAssignedIdentities"]) == [identity_id]
    assert account.inputs["defaultIdentity"] == f"UserAssignedIdentity={identity_id}"
    vault = [a for a in run.mocks.of_type("azure-native:authorization:RoleAssignment")
             if a.inputs["scope"].endswith("/vaults/mcrepl-vault")]
    assert len(vault) == 1 and vault[0].inputs["roleDefinitionId"].endswith("e147488a-f6f5-4113-8e2d-b22465e65bf6")
    assert account.inputs["publicNetworkAccess"] == "Disabled"
    assert all(loc["isZoneRedundant"] for loc in account.inputs["locations"])
    (endpoint,) = run.mocks.of_type("azure-native:network:PrivateEndpoint")
    assert endpoint.inputs["privateLinkServiceConnections"][0]["groupIds"] == ["Sql"]


def test_public_access_is_limited_to_the_allowed_ranges() -> None:
    (account,) = run_program(load_config(EXAMPLES[0]), "ip").mocks.of_type("azure-native:cosmosdb:DatabaseAccount")
    assert account.inputs["publicNetworkAccess"] == "Enabled"
    assert account.inputs["ipRules"] == [{"ipAddressOrRange": "203.0.113.0/28"}]


@pytest.mark.parametrize("setting", ["aws:region", "azure-native:location"])
def test_ignored_stack_settings_are_refused_with_the_fix(setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({setting: "eu-west-1"}))
    with pytest.raises(ConfigError) as info:
        run_program(load_config(EXAMPLES[0]), "settings")
    assert f"pulumi config rm {setting}" in str(info.value)


def test_a_gcp_project_that_contradicts_the_config_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"gcp:project": "someone-else"}))
    with pytest.raises(ConfigError, match="provisioning.gcp.project"):
        run_program(load_config(EXAMPLES[0]), "settings")
