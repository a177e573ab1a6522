"""The Pulumi program under Pulumi's mock runtime: the two example stacks, exactly.

Every test runs the real program (``pulumi/mcrepl_infra``) with ``pulumi.runtime.set_mocks``
(no engine, no cloud) and checks the registered resources and the resolved stack
outputs against the example configs in ``examples/pulumi/``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pulumi"))   # the program's package; pulumi/ has no __init__.py

from mcrepl.orchestrator.config import McreplConfig, load_config  # noqa: E402
from mcrepl.policies.engine import evaluate  # noqa: E402
from mcrepl.policies.iam import ResourceIds, lint, render_all  # noqa: E402
from mcrepl_infra.testing import ProgramRun, run_program  # noqa: E402

AWS_PRIMARY = ROOT / "examples/pulumi/aws-primary.yaml"
AZURE_PRIMARY = ROOT / "examples/pulumi/azure-primary.yaml"

TABLE = "aws:dynamodb/table:Table"
ACCOUNT_T = "azure-native:cosmosdb:DatabaseAccount"
CONTAINER = "azure-native:cosmosdb:SqlResourceSqlContainer"
BUCKET = "gcp:storage/bucket:Bucket"


@pytest.fixture(scope="module")
def aws_primary() -> ProgramRun:
    return run_program(load_config(AWS_PRIMARY), "aws-primary")


@pytest.fixture(scope="module")
def azure_primary() -> ProgramRun:
    return run_program(load_config(AZURE_PRIMARY), "azure-primary")


def _cloud_types(run: ProgramRun) -> Counter:
    return Counter(r.type for r in run.mocks.resources if not r.type.startswith("mcrepl:"))


def test_aws_primary_yields_exactly_the_expected_resources(aws_primary: ProgramRun) -> None:
    assert _cloud_types(aws_primary) == Counter({
        "pulumi:providers:aws": 1, "aws:kms/key:Key": 1, "aws:kms/alias:Alias": 1, TABLE: 2,
        "aws:iam/role:Role": 4 + 1,                                            # + the sync runner's
        "aws:iam/rolePolicy:RolePolicy": 8 + 3 + 1,    # 4 roles x 2 tables; runner: 3 roles + its token grant
        "aws:route53/healthCheck:HealthCheck": 1, "aws:route53/record:Record": 2,
        "azure-native:resources:ResourceGroup": 1, ACCOUNT_T: 1,
        "azure-native:cosmosdb:SqlResourceSqlDatabase": 1, CONTAINER: 1,
        "azure-native:managedidentity:UserAssignedIdentity": 4 + 1,
        "azure-native:managedidentity:FederatedIdentityCredential": 2,         # the AWS and the GCP runner
        "azure-native:cosmosdb:SqlResourceSqlRoleDefinition": 3,
        "azure-native:cosmosdb:SqlResourceSqlRoleAssignment": 3 + 3,           # runner: capture, apply, verify
        "azure-native:authorization:RoleAssignment": 1,                        # admin: Cosmos DB Operator
        "pulumi:providers:gcp": 1, "gcp:kms/keyRing:KeyRing": 1, "gcp:kms/cryptoKey:CryptoKey": 1,
        "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember": 1, BUCKET: 2,
        "gcp:serviceaccount/account:Account": 4 + 1, "gcp:projects/iAMCustomRole:IAMCustomRole": 4,
        "gcp:storage/bucketIAMMember:BucketIAMMember": 8 + 6,                  # 4 roles x 2 buckets; runner 3 x 2
        "gcp:iam/workloadIdentityPool:WorkloadIdentityPool": 1,                # the AWS runner reaches GCP
        "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider": 1,
        "gcp:serviceaccount/iAMMember:IAMMember": 1,
    })
    components = Counter(r.type for r in aws_primary.mocks.resources if r.type.startswith("mcrepl:"))
    assert components == Counter({"mcrepl:aws:Replica": 1, "mcrepl:azure:Replica": 1, "mcrepl:gcp:Replica": 1,
                                  "mcrepl:identities:Identities": 1, "mcrepl:dns:Failover": 1,
                                  "mcrepl:federation:Federation": 1})


def test_azure_primary_yields_exactly_the_expected_resources(azure_primary: ProgramRun) -> None:
    assert _cloud_types(azure_primary) == Counter({
        "pulumi:providers:aws": 1, TABLE: 1,                                   # kms_key given: no key made
        "aws:iam/role:Role": 4 + 1, "aws:iam/rolePolicy:RolePolicy": 4 + 3,    # + the runner's (no token grant)
        "aws:route53/record:Record": 1,                                        # CNAME to Traffic Manager
        "azure-native:resources:ResourceGroup": 1, ACCOUNT_T: 1,
        "azure-native:cosmosdb:SqlResourceSqlDatabase": 1, CONTAINER: 1,
        "azure-native:managedidentity:UserAssignedIdentity": 4 + 1,            # apply uses the given principal;
        "azure-native:cosmosdb:SqlResourceSqlRoleDefinition": 3,               # + CMK identity + runner
        "azure-native:cosmosdb:SqlResourceSqlRoleAssignment": 3 + 3,
        "azure-native:authorization:RoleAssignment": 2,                        # + CMK identity on the vault
        "azure-native:network:PrivateEndpoint": 1,
        "azure-native:trafficmanager:Profile": 1,
    })


def test_tables_have_key_schema_streams_pitr_cmk_and_protection(aws_primary: ProgramRun,
                                                                azure_primary: ProgramRun) -> None:
    created_key = aws_primary.mocks.of_type("aws:kms/key:Key")[0]
    assert created_key.inputs["enableKeyRotation"] is True and created_key.region == "eu-west-1"
    tables = {t.inputs["name"]: t for t in aws_primary.mocks.of_type(TABLE)}
    assert set(tables) == {"mcrepl-aws-primary-customers", "mcrepl-aws-primary-invoices"}   # project-stack-dataset
    tables = {t.inputs["tags"]["mcrepl:dataset"]: t for t in tables.values()}
    customers = tables["customers"]
    assert customers.inputs["hashKey"] == "customer_id" and customers.inputs["rangeKey"] == "version"
    assert customers.inputs["attributes"] == [{"name": "customer_id", "type": "S"}, {"name": "version", "type": "N"}]
    assert tables["invoices"].inputs["hashKey"] == "name" and "rangeKey" not in tables["invoices"].inputs
    for table in tables.values():
        assert table.region == "eu-west-1" and table.provider == "aws-eu-west-1-provider"
        assert table.inputs["streamEnabled"] is True
        assert table.inputs["streamViewType"] == "NEW_AND_OLD_IMAGES"
        assert table.inputs["pointInTimeRecovery"] == {"enabled": True}
        assert table.inputs["serverSideEncryption"] == {"enabled": True, "kmsKeyArn": created_key.outputs["arn"]}
        assert table.inputs["deletionProtectionEnabled"] is True
        assert table.inputs["billingMode"] == "PAY_PER_REQUEST"
    (orders,) = azure_primary.mocks.of_type(TABLE)
    assert orders.region == "eu-central-1" and orders.inputs["name"] == "mcrepl-azure-primary-orders"
    assert orders.inputs["serverSideEncryption"]["kmsKeyArn"] == \
        load_config(AZURE_PRIMARY).datasets["orders"].replicas[0].kms_key


def test_cosmos_account_locations_priorities_consistency_cmk_and_ttl(aws_primary: ProgramRun,
                                                                    azure_primary: ProgramRun) -> None:
    (account,) = aws_primary.mocks.of_type(ACCOUNT_T)
    assert [(loc["locationName"], loc["failoverPriority"]) for loc in account.inputs["locations"]] == \
        [("westeurope", 0), ("northeurope", 1)]
    assert account.inputs["consistencyPolicy"] == {"defaultConsistencyLevel": "Session"}
    assert account.inputs["enableAutomaticFailover"] is True
    assert account.inputs["disableLocalAuth"] is True          # providers.cosmos.auth: aad
    assert account.inputs["minimalTlsVersion"] == "Tls12"
    assert "keyVaultKeyUri" not in account.inputs             # no kms_key on the cosmos replica
    (container,) = aws_primary.mocks.of_type(CONTAINER)
    assert container.inputs["resource"] == {"id": "customers", "defaultTtl": -1,
                                            "partitionKey": {"paths": ["/id"], "kind": "Hash"}}
    (account,) = azure_primary.mocks.of_type(ACCOUNT_T)
    assert [(loc["locationName"], loc["failoverPriority"]) for loc in account.inputs["locations"]] == \
        [("westeurope", 0), ("northeurope", 1), ("francecentral", 2)]
    assert account.inputs["consistencyPolicy"]["defaultConsistencyLevel"] == "BoundedStaleness"
    assert account.inputs["keyVaultKeyUri"] == "https://mcrepl-vault.vault.azure.net/keys/cosmos-cmk"


def test_buckets_in_location_with_ubla_cmek_versioning_and_pap(aws_primary: ProgramRun) -> None:
    (key,) = aws_primary.mocks.of_type("gcp:kms/cryptoKey:CryptoKey")
    (ring,) = aws_primary.mocks.of_type("gcp:kms/keyRing:KeyRing")
    assert ring.inputs["location"] == "europe-west1"
    (grant,) = aws_primary.mocks.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
    assert grant.inputs["member"].endswith("@gs-project-accounts.iam.gserviceaccount.com")
    buckets = {b.inputs["name"]: b for b in aws_primary.mocks.of_type(BUCKET)}
    assert set(buckets) == {"mcrepl-aws-primary-customers-europe-west1-70b31b",
                            "mcrepl-aws-primary-invoices-europe-west1-70b31b"}        # global: a stable hash
    for bucket in buckets.values():
        assert bucket.inputs["location"] == "EUROPE-WEST1" and bucket.inputs["project"] == "mcrepl-demo"
        assert bucket.inputs["uniformBucketLevelAccess"] is True
        assert bucket.inputs["publicAccessPrevention"] == "enforced"
        assert bucket.inputs["versioning"] == {"enabled": True}
        assert bucket.inputs["lifecycleRules"][0]["condition"]["daysSinceNoncurrentTime"] == 7  # tombstone_retention
    assert buckets["mcrepl-aws-primary-customers-europe-west1-70b31b"].inputs["encryption"] == {"defaultKmsKeyName": key.outputs["id"]}
    assert buckets["mcrepl-aws-primary-invoices-europe-west1-70b31b"].inputs["encryption"]["defaultKmsKeyName"] == \
        "projects/mcrepl-demo/locations/europe-west1/keyRings/finance/cryptoKeys/invoices"


def test_route53_failover_records_for_an_aws_primary(aws_primary: ProgramRun) -> None:
    """Traffic follows promotion: the health check exists (promote and doctor read it) but is not
    attached, so Route 53 answers PRIMARY until ``mcrepl failover promote`` rewrites it."""
    (check,) = aws_primary.mocks.of_type("aws:route53/healthCheck:HealthCheck")
    assert check.inputs["fqdn"] == "writes-eu-west-1.example.com"
    assert (check.inputs["type"], check.inputs["resourcePath"], check.inputs["port"]) == ("HTTPS", "/healthz", 443)
    records = {r.inputs["failoverRoutingPolicies"][0]["type"]: r
               for r in aws_primary.mocks.of_type("aws:route53/record:Record")}
    assert set(records) == {"PRIMARY", "SECONDARY"}
    for record in records.values():
        assert record.inputs["name"] == "customers-writes.example.com" and record.inputs["type"] == "CNAME"
        assert record.inputs["zoneId"] == "Z0123456789ABCDEFGHIJ" and record.inputs["ttl"] == 60
        assert "healthCheckId" not in record.inputs
        assert aws_primary.mocks.ignored[("aws:route53/record:Record", record.name)] == ["records", "healthCheckId"]
    assert records["PRIMARY"].inputs["records"] == ["writes-eu-west-1.example.com"]
    assert records["SECONDARY"].inputs["records"] == ["writes-westeurope.example.com"]
    switch = aws_primary.outputs["dns"]["customers"]["switch"]
    assert switch == {"zone_id": "Z0123456789ABCDEFGHIJ", "record_name": "customers-writes.example.com",
                      "record_type": "CNAME", "health_check_id": check.outputs["id"],
                      "set_identifiers": {role: r.inputs["setIdentifier"] for role, r in records.items()}}
    assert aws_primary.outputs["dns"]["customers"]["hosts"] == {
        "dynamodb:eu-west-1": "writes-eu-west-1.example.com", "cosmos:westeurope": "writes-westeurope.example.com"}


def test_health_check_failover_attaches_the_check_when_asked() -> None:
    raw = yaml.safe_load(AWS_PRIMARY.read_text())
    raw["provisioning"]["dns"]["health_check_failover"] = True
    run = run_program(McreplConfig.model_validate(raw), "hc")
    (check,) = run.mocks.of_type("aws:route53/healthCheck:HealthCheck")
    records = {r.inputs["failoverRoutingPolicies"][0]["type"]: r.inputs
               for r in run.mocks.of_type("aws:route53/record:Record")}
    assert records["PRIMARY"]["healthCheckId"] == check.outputs["id"]
    assert "healthCheckId" not in records["SECONDARY"]


def test_traffic_manager_priority_routing_for_an_azure_primary(azure_primary: ProgramRun) -> None:
    (profile,) = azure_primary.mocks.of_type("azure-native:trafficmanager:Profile")
    assert profile.inputs["trafficRoutingMethod"] == "Priority"
    assert profile.inputs["monitorConfig"]["path"] == "/health"
    assert [(e["name"], e["priority"], e["target"], e["endpointStatus"]) for e in profile.inputs["endpoints"]] == [
        ("primary", 1, "orders-api-westeurope.example.eu", "Enabled"),
        ("secondary", 2, "orders-api-eu-central-1.example.eu", "Disabled")]   # promote enables it
    assert azure_primary.mocks.ignored[("azure-native:trafficmanager:Profile", profile.name)] == ["endpoints"]
    assert azure_primary.outputs["dns"]["orders"]["switch"]["profile_name"] == profile.inputs["profileName"]
    (cname,) = azure_primary.mocks.of_type("aws:route53/record:Record")
    assert cname.inputs["name"] == "orders-writes.example.eu"
    assert cname.inputs["records"] == [profile.outputs["dnsConfig"]["fqdn"]]
    assert azure_primary.outputs["dns"]["orders"]["routing"] == "traffic-manager"


def _cli_render(config_path: Path, outputs: dict, tmp_path: Path) -> dict:
    """``mcrepl iam render --stack-outputs`` exactly as a user runs it."""
    from typer.testing import CliRunner

    from mcrepl.orchestrator.cli import app

    out_file = tmp_path / "outputs.json"
    out_file.write_text(json.dumps(outputs))
    result = CliRunner().invoke(app, ["iam", "render", "--config", str(config_path),
                                      "--stack-outputs", str(out_file)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("which", ["aws_primary", "azure_primary"])
def test_attached_iam_documents_equal_iam_render_and_pass_lint(which: str, request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    run: ProgramRun = request.getfixturevalue(which)
    path = AWS_PRIMARY if which == "aws_primary" else AZURE_PRIMARY
    config = load_config(path)
    expected = _cli_render(path, run.outputs, tmp_path)
    assert expected == render_all(config, ResourceIds.from_config(config, run.outputs))
    # the per-role identities here; the sync runner's are in tests/test_pulumi_federation.py
    attached_aws = {p.inputs["name"]: json.loads(p.inputs["policy"])
                    for p in run.mocks.of_type("aws:iam/rolePolicy:RolePolicy") if "-runner-" not in p.inputs["name"]}
    stack = "aws-primary" if which == "aws_primary" else "azure-primary"
    expected_aws = {f"mcrepl-{stack}-{role}-{key}".replace(":", "-"): doc
                    for role, docs in expected["aws"].items() for key, doc in docs.items()}
    assert attached_aws == expected_aws
    for role in expected["aws"]:
        assert any(r.inputs["name"] == f"mcrepl-{stack}-{role}" for r in run.mocks.of_type("aws:iam/role:Role"))
    definitions = sorted((d.inputs["roleName"], d.inputs["assignableScopes"][0],
                          tuple(d.inputs["permissions"][0]["dataActions"]))
                         for d in run.mocks.of_type("azure-native:cosmosdb:SqlResourceSqlRoleDefinition"))
    assert definitions == sorted((doc["roleDefinition"]["properties"]["roleName"],
                                  doc["roleDefinition"]["properties"]["assignableScopes"][0],
                                  tuple(doc["roleDefinition"]["properties"]["permissions"][0]["dataActions"]))
                                 for role, docs in expected["azure"].items() if role != "admin"
                                 for doc in docs.values())
    if "gcp" in expected:
        bindings = sorted((m.inputs["role"], m.inputs["member"]) for m in
                          run.mocks.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
                          if "-runner@" not in m.inputs["member"])
        assert bindings == sorted((b["role"], member) for docs in expected["gcp"].values()
                                  for doc in docs.values() for b in doc["bindings"] for member in b["members"])
    assert lint(expected, "iam-render") == []
    assert lint(run.outputs["identities"], "stack:identities") == []


def test_azure_assignments_go_to_the_configured_or_created_principals(azure_primary: ProgramRun) -> None:
    identities = {i.inputs["resourceName"]: i.outputs["principalId"]
                  for i in azure_primary.mocks.of_type("azure-native:managedidentity:UserAssignedIdentity")}
    assert set(identities) == {"mcrepl-azure-primary-capture", "mcrepl-azure-primary-verify",
                               "mcrepl-azure-primary-admin", "mcrepl-azure-primary-cosmos-cmk",
                               "mcrepl-azure-primary-runner"}
    principals = {a.inputs["principalId"]
                  for a in azure_primary.mocks.of_type("azure-native:cosmosdb:SqlResourceSqlRoleAssignment")}
    assert principals == {"11111111-2222-3333-4444-555555555555", identities["mcrepl-azure-primary-capture"],
                          identities["mcrepl-azure-primary-verify"], identities["mcrepl-azure-primary-runner"]}
    docs = azure_primary.outputs["identities"]["azure"]["apply"]["documents"]
    assert all(d["roleAssignment"]["properties"]["principalId"] == "11111111-2222-3333-4444-555555555555"
               for d in docs.values())


@pytest.mark.parametrize("which", ["aws_primary", "azure_primary"])
def test_policy_engine_accepts_what_the_stack_reports(which: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(which)
    config = load_config(AWS_PRIMARY if which == "aws_primary" else AZURE_PRIMARY)
    findings = [(v.rule_id, v.resource, v.severity) for v in evaluate(config, run.outputs)]
    # a Cosmos DB primary: its change feed does not show an application's physical deletes,
    # which the capability rule says (as a warning) from the adapter's declared capabilities
    expected = [] if which == "aws_primary" else [("capability.fit", "orders@cosmos:westeurope", "warning")]
    assert findings == expected


def test_entry_point_reads_the_config_path_from_stack_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pulumi/__main__.py`` as the engine runs it, with ``mcrepl:configPath`` set on the stack."""
    import runpy

    import pulumi

    from mcrepl_infra.testing import RecordingMocks

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"mcrepl:configPath": "../examples/pulumi/azure-primary.yaml"}))
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="mcrepl", stack="azure-primary", preview=True)

    @pulumi.runtime.test
    def run_main() -> None:
        runpy.run_path(str(ROOT / "pulumi/__main__.py"), run_name="__main__")

    run_main()
    assert [t.inputs["name"] for t in mocks.of_type(TABLE)] == ["mcrepl-azure-primary-orders"]
    assert len(mocks.of_type(ACCOUNT_T)) == 1


def test_entry_point_without_config_path_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi

    from mcrepl.adapters.base import ConfigError
    from mcrepl_infra.program import config_path

    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    monkeypatch.delenv("MCREPL_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="pulumi config set mcrepl:configPath"):
        config_path(pulumi.Config("mcrepl"), ROOT / "pulumi")
