"""IAM renderers and linter: the linter catches wildcards, Resource "*", account-level
Cosmos Owner / key auth and storage.admin; every rendered document passes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.cli import app
from mcrepl.orchestrator.config import McreplConfig, load_config
from mcrepl.policies.iam import ROLES, ResourceIds, lint, render_all, render_aws, render_azure, render_gcp

ROOT = Path(__file__).resolve().parent.parent
TABLE = "arn:aws:dynamodb:eu-west-1:123456789012:table/customers"
STREAM = f"{TABLE}/stream/2026-01-01T00:00:00.000"
SCOPE = ("/subscriptions/0000/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/acc"
         "/dbs/mcrepl/colls/customers")
ACCOUNT = SCOPE.split("/dbs/")[0]


def _ids(doc: dict) -> set[str]:
    return {v.rule_id for v in lint(doc, "t")}


def test_lint_catches_dynamodb_star_and_resource_star() -> None:
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": TABLE},
        {"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["dynamodb:Scan"], "Resource": "arn:aws:dynamodb:eu-west-1:123456789012:table/*"}]}
    found = [v for v in lint(doc, "policy.json") if v.rule_id != "iam.aws-resource-mismatch"]
    assert {v.rule_id for v in found} == {"iam.aws-wildcard-action", "iam.aws-wildcard-resource"}
    assert sum(v.rule_id == "iam.aws-wildcard-resource" for v in found) == 2
    assert all(v.resource.startswith("policy.json") and v.fix for v in found)


def test_lint_catches_cosmos_account_level_owner_and_key_auth() -> None:
    owner = {"properties": {"roleDefinitionId": "/subscriptions/0000/providers/Microsoft.Authorization/"
                                                "roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
                            "scope": ACCOUNT, "principalId": "p"}}
    data_at_account = {"properties": {"roleDefinitionId": f"{ACCOUNT}/sqlRoleDefinitions/x", "scope": ACCOUNT,
                                      "principalId": "p"}}
    key_auth = {"type": "Microsoft.DocumentDB/databaseAccounts", "name": "acc", "properties": {}}
    list_keys = {"properties": {"roleName": "reader", "permissions": [
        {"actions": ["Microsoft.DocumentDB/databaseAccounts/listKeys/action"]}]}}
    assert _ids(owner) == {"iam.azure-admin-role"}
    assert _ids(data_at_account) == {"iam.azure-account-scope"}
    assert _ids(key_auth) == {"iam.azure-key-auth"}
    assert _ids(list_keys) == {"iam.azure-key-auth"}


def test_lint_catches_storage_admin_where_object_user_suffices() -> None:
    found = lint({"bindings": [{"role": "roles/storage.admin", "members": ["serviceAccount:a@p.iam.gserviceaccount.com"]}]})
    assert [v.rule_id for v in found] == ["iam.gcp-admin-role"]
    assert "roles/storage.objectUser" in found[0].fix


@pytest.mark.parametrize("role", ROLES)
def test_each_renderer_is_scoped_and_lint_clean(role: str) -> None:
    aws = render_aws(role, [TABLE], [STREAM])
    assert all(r in (TABLE, STREAM) for st in aws["Statement"] for r in st["Resource"])
    assert not any(a.startswith("dynamodb:") is False for st in aws["Statement"] for a in st["Action"])
    azure = render_azure(role, SCOPE)
    assert azure["account"]["properties"]["disableLocalAuth"] is True
    gcp = render_gcp(role, "bucket-1", project="p")
    for doc in (aws, azure, gcp):
        assert lint(doc, role) == [], doc
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"}
    actions = {a for st in aws["Statement"] for a in st["Action"]}
    assert bool(actions & writes) == (role == "apply")
    assert ("dynamodb:GetRecords" in actions) == (role == "capture")
    assert ("dynamodb:CreateTable" in actions) == (role == "admin")
    assert "dynamodb:BatchWriteItem" not in actions          # only the application's seeding uses it


def test_azure_renderer_refuses_an_account_wide_scope() -> None:
    with pytest.raises(ConfigError) as info:
        render_azure("apply", ACCOUNT)
    assert "/dbs/" in str(info.value)


def test_gcp_custom_roles_hold_exactly_what_the_adapter_calls() -> None:
    """Predefined object roles lack storage.buckets.get (every open calls it): custom roles instead."""
    docs = {r: render_gcp(r, "b", project="p", prefix="mcrepl-prod") for r in ROLES}
    perms = {r: set(d["customRole"]["includedPermissions"]) for r, d in docs.items()}
    assert all("storage.buckets.get" in p for p in perms.values())
    assert perms["apply"] >= {"storage.objects.create", "storage.objects.delete"}   # replacing needs delete
    assert not perms["verify"] & {"storage.objects.create", "storage.objects.delete"}
    assert "storage.buckets.create" not in set().union(*perms.values())           # a project permission
    for role, doc in docs.items():
        assert doc["bindings"][0]["role"] == doc["customRole"]["name"] == f"projects/p/roles/mcrepl_prod_{role}"
    assert render_gcp("apply", "b", project="p", prefix="other")["customRole"]["name"] != docs["apply"]["customRole"]["name"]


def test_aws_grants_kms_for_customer_managed_keys_only_through_dynamodb() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/k1"
    plain = render_aws("apply", [TABLE], [STREAM])
    assert not any(a.startswith("kms:") for st in plain["Statement"] for a in st["Action"])
    (kms,) = [st for st in render_aws("apply", [TABLE], [STREAM], [key])["Statement"] if st["Resource"] == [key]]
    assert "kms:Decrypt" in kms["Action"]
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": "dynamodb.eu-west-1.amazonaws.com"}}
    admin = render_aws("admin", [TABLE], [STREAM], [key])
    assert "kms:CreateGrant" in {a for st in admin["Statement"] for a in st["Action"]}
    assert lint(render_aws("capture", [TABLE], [STREAM], [key]), "kms") == []


def _every_cloud() -> McreplConfig:
    return McreplConfig.model_validate({
        "providers": {"cosmos": {"auth": "aad"}},
        "provisioning": {"aws": {"account_id": "210987654321"}, "azure": {"subscription_id": "sub-1",
                                                                          "account_name": "acct"}},
        "datasets": {"customers": {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1",
                                   "replicas": ["cosmos:westeurope", "gcs:europe-west1", "dynamodb:eu-central-1"]},
                     "files": {"kind": "blob", "primary": "gcs:europe-west1", "replicas": ["gcs:europe-west3"]}}})


def test_render_all_covers_every_location_and_role_with_ids_from_the_config_and_passes_lint() -> None:
    config = _every_cloud()
    docs = render_all(config)
    assert set(docs) == {"aws", "azure", "gcp"}
    for cloud in docs.values():
        assert set(cloud) == set(ROLES)
    assert set(docs["aws"]["apply"]) == {"customers@dynamodb:eu-west-1", "customers@dynamodb:eu-central-1"}
    assert set(docs["gcp"]["verify"]) == {"customers@gcs:europe-west1", "files@gcs:europe-west1",
                                          "files@gcs:europe-west3"}
    text = json.dumps(docs)
    assert "210987654321" in text and "/subscriptions/sub-1/" in text and "databaseAccounts/acct/" in text
    assert lint(docs, "render") == []


def test_render_all_uses_stack_output_arns() -> None:
    config = _every_cloud()
    arn = "arn:aws:dynamodb:eu-west-1:210987654321:table/customers-abc123"
    outputs = {"datasets": {"customers": {"dynamodb:eu-west-1": {"arn": arn, "stream_arn": f"{arn}/stream/x"}}}}
    doc = render_all(config, ResourceIds.from_config(config, outputs))["aws"]["capture"]["customers@dynamodb:eu-west-1"]
    assert [st["Resource"] for st in doc["Statement"]] == [[arn], [f"{arn}/stream/x"]]


def test_cli_render_then_lint_round_trip(tmp_path: Path) -> None:
    runner = CliRunner()
    rendered = runner.invoke(app, ["iam", "render", "-c", str(ROOT / "examples" / "mcrepl.yaml")])
    assert rendered.exit_code == 0, rendered.output
    good = tmp_path / "rendered.json"
    good.write_text(rendered.stdout)
    assert json.loads(good.read_text())["aws"]["capture"]
    clean = runner.invoke(app, ["iam", "lint", str(good)])
    assert clean.exit_code == 0, clean.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("bindings:\n  - {role: roles/storage.admin, members: [allUsers]}\n")
    flagged = runner.invoke(app, ["iam", "lint", str(good), str(bad)])
    assert flagged.exit_code == 1
    lines = [l for l in flagged.stdout.splitlines() if l.startswith("iam.")]
    assert sorted(l.split()[0] for l in lines) == ["iam.gcp-admin-role", "iam.gcp-public-member"]
    assert all(str(bad) in l and "(fix: " in l for l in lines)


def test_example_config_loads() -> None:
    assert load_config(ROOT / "examples" / "mcrepl.yaml").policies.residency.classes["pii"] == ["EU"]
