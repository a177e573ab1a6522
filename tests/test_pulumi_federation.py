"""Issue 16 under Pulumi's mocks: sync runners reach every cloud without long-lived keys.

The program runs with ``pulumi.runtime.set_mocks``; the example stacks have runners in
AWS and GCP (aws-primary) and Azure (azure-primary), and a third config puts runners in
all three clouds. What is checked is what each cloud will evaluate: the AWS trust
policy's principals and conditions, the GCP pool providers' conditions and the
impersonation binding, Azure's federated credentials, and that the runner's grants are
exactly the rendered least-privilege set. The settings a runner configures are loaded by
the real client libraries (google-auth, botocore, azure-identity) without any network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pulumi"))

from mcrepl.adapters.base import ConfigError  # noqa: E402
from mcrepl.orchestrator.config import McreplConfig, load_config  # noqa: E402
from mcrepl.policies.iam import ROLES, RUNNER_ROLES, ResourceIds, lint, render_all  # noqa: E402
from mcrepl_infra.testing import ACCOUNT, AWS_ISSUER, ProgramRun, Registered, run_program  # noqa: E402

AWS_PRIMARY = ROOT / "examples/pulumi/aws-primary.yaml"
AZURE_PRIMARY = ROOT / "examples/pulumi/azure-primary.yaml"
TENANT = "22222222-3333-4444-5555-666666666666"
ROLE = "aws:iam/role:Role"
FIC = "azure-native:managedidentity:FederatedIdentityCredential"
POOL_PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"


def _everywhere(**aws: Any) -> McreplConfig:
    """aws-primary with runners in all three clouds."""
    raw = yaml.safe_load(AWS_PRIMARY.read_text())
    raw["provisioning"]["runners"]["azure"] = {"tenant_id": TENANT, "token_audience": "api://mcrepl-runner"}
    raw["provisioning"]["aws"].update(aws)
    return McreplConfig.model_validate(raw)


@pytest.fixture(scope="module")
def everywhere() -> ProgramRun:
    return run_program(_everywhere(), "fed")


def _runner_role(run: ProgramRun) -> Registered:
    return next(r for r in run.mocks.of_type(ROLE) if r.inputs["name"].endswith("-runner"))


def _trust(run: ProgramRun) -> dict[str, dict]:
    return {st["Sid"]: st for st in json.loads(_runner_role(run).inputs["assumeRolePolicy"])["Statement"]}


def test_aws_trusts_exactly_the_runner_identities_of_the_other_clouds(everywhere: ProgramRun) -> None:
    trust = _trust(everywhere)
    assert set(trust) == {"RunnerInAws", "RunnerInGcp", "RunnerInAzure"}
    assert trust["RunnerInAws"]["Principal"] == {"Service": ["ec2.amazonaws.com"]}
    (sa,) = [a for a in everywhere.mocks.of_type("gcp:serviceaccount/account:Account")
             if a.inputs["accountId"].endswith("-runner")]
    uid = sa.outputs["uniqueId"]
    assert trust["RunnerInGcp"]["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["RunnerInGcp"]["Condition"] == {"StringEquals": {
        "accounts.google.com:aud": uid, "accounts.google.com:sub": uid, "accounts.google.com:oaud": "sts.amazonaws.com"}}
    (uami,) = [i for i in everywhere.mocks.of_type("azure-native:managedidentity:UserAssignedIdentity")
               if i.inputs["resourceName"].endswith("-runner")]
    host = f"sts.windows.net/{TENANT}/"
    assert trust["RunnerInAzure"]["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"}
    assert trust["RunnerInAzure"]["Condition"] == {"StringEquals": {
        f"{host}:aud": "api://mcrepl-runner", f"{host}:sub": uami.outputs["principalId"]}}
    # the tenant's OIDC provider is an account singleton: looked up, not created
    assert not everywhere.mocks.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert [c.args["url"] for c in everywhere.mocks.calls
            if c.token == "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider"] == [f"https://{host}"]


def test_gcp_pool_admits_only_the_aws_runner_role_and_the_azure_identity(everywhere: ProgramRun) -> None:
    (pool,) = everywhere.mocks.of_type("gcp:iam/workloadIdentityPool:WorkloadIdentityPool")
    providers = {p.inputs["workloadIdentityPoolProviderId"]: p.inputs for p in everywhere.mocks.of_type(POOL_PROVIDER)}
    assert set(providers) == {"aws-runner", "azure-runner"}
    role_name = _runner_role(everywhere).inputs["name"]
    assert providers["aws-runner"]["aws"] == {"accountId": ACCOUNT}
    assert providers["aws-runner"]["attributeCondition"] == \
        f"attribute.aws_role == 'arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}'"
    uami_principal = everywhere.outputs["federation"]["identities"]["azure"]["principal_id"]
    assert providers["azure-runner"]["oidc"] == {"issuerUri": f"https://sts.windows.net/{TENANT}/",
                                                 "allowedAudiences": ["api://mcrepl-runner"]}
    assert providers["azure-runner"]["attributeCondition"] == f"assertion.sub == '{uami_principal}'"
    members = {m.inputs["member"]: m.inputs for m in everywhere.mocks.of_type("gcp:serviceaccount/iAMMember:IAMMember")}
    pool_name = pool.outputs["name"]
    assert set(members) == {
        f"principalSet://iam.googleapis.com/{pool_name}/attribute.aws_role/arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}",
        f"principal://iam.googleapis.com/{pool_name}/subject/{uami_principal}"}
    assert {m["role"] for m in members.values()} == {"roles/iam.workloadIdentityUser"}
    assert {m["serviceAccountId"] for m in members.values()} == {
        f"projects/mcrepl-demo/serviceAccounts/{everywhere.outputs['federation']['identities']['gcp']['email']}"}


def test_azure_federated_credentials_name_the_exact_issuer_and_subject(everywhere: ProgramRun) -> None:
    creds = {c.inputs["federatedIdentityCredentialResourceName"]: c.inputs for c in everywhere.mocks.of_type(FIC)}
    assert set(creds) == {"aws-runner", "gcp-runner"}
    ids = everywhere.outputs["federation"]["identities"]
    assert (creds["gcp-runner"]["issuer"], creds["gcp-runner"]["subject"]) == \
        ("https://accounts.google.com", ids["gcp"]["unique_id"])
    assert (creds["aws-runner"]["issuer"], creds["aws-runner"]["subject"]) == (AWS_ISSUER, ids["aws"]["role_arn"])
    assert {tuple(c["audiences"]) for c in creds.values()} == {("api://AzureADTokenExchange",)}
    assert {c["resourceName"] for c in creds.values()} == {"mcrepl-fed-runner"}
    # the AWS runner may mint outbound tokens for that audience and nothing else
    (grant,) = [p for p in everywhere.mocks.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["name"].endswith("-token")]
    (statement,) = json.loads(grant.inputs["policy"])["Statement"]
    assert statement["Action"] == "sts:GetWebIdentityToken"
    assert statement["Condition"] == {"ForAnyValue:StringEquals": {"sts:IdentityTokenAudience": "api://AzureADTokenExchange"}}


def test_each_example_federates_exactly_its_runner_locations() -> None:
    aws_primary = run_program(load_config(AWS_PRIMARY), "aws-primary")
    assert set(aws_primary.outputs["federation"]["runners"]) == {"aws", "gcp"}
    assert set(_trust(aws_primary)) == {"RunnerInAws", "RunnerInGcp"}
    assert {c.inputs["federatedIdentityCredentialResourceName"] for c in aws_primary.mocks.of_type(FIC)} == \
        {"aws-runner", "gcp-runner"}
    assert {p.inputs["workloadIdentityPoolProviderId"] for p in aws_primary.mocks.of_type(POOL_PROVIDER)} == \
        {"aws-runner"}
    azure_primary = run_program(load_config(AZURE_PRIMARY), "azure-primary")
    assert set(azure_primary.outputs["federation"]["runners"]) == {"azure"}
    assert set(_trust(azure_primary)) == {"RunnerInAzure"}        # nothing in AWS itself assumes it
    assert not azure_primary.mocks.of_type(FIC) and not azure_primary.mocks.of_type(POOL_PROVIDER)


def _aws_grants(policy: dict) -> set[tuple[str, str, str]]:
    """(action, resource, condition) triples: what IAM evaluates, however statements are grouped."""
    out = set()
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        out |= {(a, r, json.dumps(st.get("Condition"), sort_keys=True)) for a in actions for r in resources}
    return out


def _expected(run: ProgramRun, config: McreplConfig) -> dict:
    ids = ResourceIds.from_config(config, run.outputs)
    return render_all(config, ids)


@pytest.mark.parametrize("which", ["aws-primary", "azure-primary", "everywhere"])
def test_runner_grants_equal_the_rendered_least_privilege_set(which: str, everywhere: ProgramRun) -> None:
    config = _everywhere() if which == "everywhere" else load_config(ROOT / f"examples/pulumi/{which}.yaml")
    run = everywhere if which == "everywhere" else run_program(config, which)
    rendered = _expected(run, config)
    role_name = _runner_role(run).inputs["name"]
    attached = [json.loads(p.inputs["policy"]) for p in run.mocks.of_type("aws:iam/rolePolicy:RolePolicy")
                if p.inputs["name"].startswith(f"{role_name}-") and not p.inputs["name"].endswith("-token")]
    assert set().union(*map(_aws_grants, attached)) == \
        set().union(*(_aws_grants(d) for r in RUNNER_ROLES for d in rendered["aws"][r].values()))
    principal = run.outputs["federation"]["identities"]["azure"]["principal_id"]
    assigned = sorted((a.inputs["roleDefinitionId"], a.inputs["scope"])
                      for a in run.mocks.of_type("azure-native:cosmosdb:SqlResourceSqlRoleAssignment")
                      if a.inputs["principalId"] == principal)
    assert assigned == sorted((d["roleAssignment"]["properties"]["roleDefinitionId"],
                               d["roleAssignment"]["properties"]["scope"])
                              for r in RUNNER_ROLES for d in rendered["azure"][r].values())
    if "gcp" in rendered:
        member = run.outputs["federation"]["identities"]["gcp"]["member"]
        bound = sorted((b.inputs["bucket"], b.inputs["role"])
                       for b in run.mocks.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
                       if b.inputs["member"] == member)
        assert bound == sorted((d["resource"].rsplit("/", 1)[1], d["bindings"][0]["role"])
                               for r in RUNNER_ROLES for d in rendered["gcp"][r].values())
    # never admin's grants, and the exported documents are what lint and validate read
    assert "admin" not in RUNNER_ROLES and set(ROLES) - set(RUNNER_ROLES) == {"admin"}
    identities = run.outputs["federation"]["identities"]
    assert lint({cloud: i["documents"] for cloud, i in identities.items()}, "federation") == []


def test_account_wide_federation_is_created_only_when_the_stack_owns_it() -> None:
    run = run_program(_everywhere(manage_account_federation=True), "owner")
    (provider,) = run.mocks.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs == {"url": f"https://sts.windows.net/{TENANT}/", "clientIdLists": ["api://mcrepl-runner"]}
    assert len(run.mocks.of_type("aws:iam/outboundWebIdentityFederation:OutboundWebIdentityFederation")) == 1
    assert not [c for c in run.mocks.calls if "OpenIdConnect" in c.token or "Outbound" in c.token]


def _settings(run: ProgramRun) -> Iterator[tuple[str, str, dict]]:
    for where, targets in run.outputs["federation"]["runners"].items():
        for target, entry in targets.items():
            yield where, target, entry


def test_runner_settings_load_in_the_real_client_libraries(everywhere: ProgramRun, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """What a runner configures is accepted by google-auth, botocore and azure-identity as-is."""
    import botocore.session
    import google.auth
    from azure.identity import WorkloadIdentityCredential
    from google.auth import aws as google_aws
    from google.auth import identity_pool

    seen = set()
    for where, target, entry in _settings(everywhere):
        if where == target:
            continue
        seen.add((where, target))
        if target == "gcp":
            creds, _ = google.auth.load_credentials_from_dict(entry["credential_config"])
            assert isinstance(creds, google_aws.Credentials if where == "aws" else identity_pool.Credentials)
            assert creds.service_account_email == everywhere.outputs["federation"]["identities"]["gcp"]["email"]
        elif target == "aws":
            token = tmp_path / "aws-token"
            token.write_text("header.payload.signature")
            for key, value in {**entry["env"], "AWS_WEB_IDENTITY_TOKEN_FILE": str(token)}.items():
                monkeypatch.setenv(key, value)
            monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
            creds = botocore.session.Session().get_credentials()
            assert creds.method == "assume-role-with-web-identity"
        else:
            token = tmp_path / "azure-token"
            token.write_text("header.payload.signature")
            credential = WorkloadIdentityCredential(tenant_id=entry["env"]["AZURE_TENANT_ID"],
                                                    client_id=entry["env"]["AZURE_CLIENT_ID"],
                                                    token_file_path=str(token))
            assert entry["env"]["AZURE_FEDERATED_TOKEN_FILE"] and credential is not None
    assert seen == {(a, b) for a in ("aws", "azure", "gcp") for b in ("aws", "azure", "gcp") if a != b}


def test_an_azure_runner_without_an_app_registration_is_refused_with_the_fix() -> None:
    raw = yaml.safe_load(AZURE_PRIMARY.read_text())
    del raw["provisioning"]["runners"]["azure"]["token_audience"]
    with pytest.raises(ConfigError, match="az ad app create") as info:
        run_program(McreplConfig.model_validate(raw), "noaud")
    assert info.value.path == "provisioning.runners.azure.token_audience"


def test_an_aws_runner_without_tables_needs_a_region() -> None:
    raw = yaml.safe_load(AZURE_PRIMARY.read_text())
    raw["datasets"]["orders"]["replicas"] = ["gcs:europe-west3"]          # no DynamoDB left
    raw["provisioning"]["gcp"] = {"project": "mcrepl-demo"}
    raw["provisioning"]["runners"] = {"aws": {}}
    del raw["provisioning"]["dns"]
    with pytest.raises(ConfigError, match="region") as info:
        run_program(McreplConfig.model_validate(raw), "noregion")
    assert info.value.path == "provisioning.runners.aws.region"


def test_validate_lints_the_runner_documents_of_a_stack(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mcrepl.orchestrator.cli import app

    outputs = json.loads((ROOT / "examples/pulumi/aws-primary.outputs.json").read_text())
    policy = outputs["federation"]["identities"]["aws"]["documents"]["apply"]["all-tables"]
    policy["Statement"][0]["Action"].append("dynamodb:*")
    tampered = tmp_path / "outputs.json"
    tampered.write_text(json.dumps(outputs))
    bad = CliRunner().invoke(app, ["validate", str(AWS_PRIMARY), "--stack-outputs", str(tampered), "--format", "json"])
    assert bad.exit_code == 1
    found = json.loads(bad.stdout)["violations"]
    assert "iam.aws-wildcard-action" in {v["rule_id"] for v in found}
    assert {v["resource"] for v in found} == {"stack:federation.aws:aws.apply.all-tables"}
