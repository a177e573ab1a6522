"""The ``mcrepl`` CrossGuard pack, run on the program's resources under mocks, as the engine runs it.

Every resource a mocked ``pulumi up`` registers is sent through the pack's analyzer
(``Configure`` + ``Analyze`` messages of Pulumi's analyzer protocol, tests/policy_pack_harness.py)
with the policy config ``mcrepl config policy-pack`` generates. The example stacks pass;
each deliberately broken stack (the program with one resource edited, one resource
added, or one config setting changed) is refused by exactly the rule it breaks, at
mandatory level. The pack is also shown to be self-contained (it runs with ``mcrepl``
unimportable) and to decide residency exactly as the policy engine does.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pytest
import yaml

from .policy_pack_harness import ROOT, Diagnostic, analyze  # noqa: I001  (sets sys.path for the two below)
from mcrepl.orchestrator.config import McreplConfig, load_config
from mcrepl.policies.decisions import class_allowed_at
from mcrepl.policies.pack_config import location_catalogue, pack_config
from mcrepl_infra.testing import ProgramRun, Transformation, run_program
from mcrepl_policy import COVERAGE, REVIEWED, RULES
from mcrepl_policy.stores import check_residency
from mcrepl_policy.subject import Subject

PACK = ROOT / "pulumi/policy-pack"
AWS_PRIMARY = ROOT / "examples/pulumi/aws-primary.yaml"
AZURE_PRIMARY = ROOT / "examples/pulumi/azure-primary.yaml"


def _run(path: Path, stack: str, **kw: Any) -> tuple[ProgramRun, list[Diagnostic]]:
    config = load_config(path)
    run = run_program(config, stack, **kw)
    return run, analyze(run, pack_config(config))


@pytest.mark.parametrize("path", [AWS_PRIMARY, AZURE_PRIMARY], ids=lambda p: p.stem)
def test_the_example_stacks_pass_every_rule(path: Path) -> None:
    run, found = _run(path, path.stem)
    assert found == []
    assert len(run.mocks.resources) > 40


def test_every_type_the_program_creates_is_inspected_or_reviewed() -> None:
    """A new resource type in the program fails here until a rule inspects it (or a reason is given)."""
    raw = yaml.safe_load(AWS_PRIMARY.read_text())
    raw["provisioning"]["runners"]["azure"] = {"tenant_id": "22222222-3333-4444-5555-666666666666",
                                               "token_audience": "api://mcrepl-runner"}
    raw["provisioning"]["aws"]["manage_account_federation"] = True
    types: set[str] = set()
    for config in (McreplConfig.model_validate(raw), load_config(AZURE_PRIMARY)):
        types |= {r.type for r in run_program(config, "types").mocks.resources if not r.type.startswith("mcrepl:")}
    uncovered = types - set(COVERAGE) - set(REVIEWED)
    assert uncovered == set()
    assert not set(COVERAGE) & set(REVIEWED)
    assert len(types & set(COVERAGE)) >= 20


def _edit(typ: str, match: Callable[[dict], bool], change: Callable[[dict], None] | None = None,
          **options: Any) -> Transformation:
    """A transformation editing the inputs (and/or options) of the first matching resource."""
    def alter(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if args.type_ != typ or not match(args.props):
            return None
        props = dict(args.props)
        if change is not None:
            change(props)
        return pulumi.ResourceTransformationResult(props, pulumi.ResourceOptions.merge(
            args.opts, pulumi.ResourceOptions(**options)))
    return alter


def _named(fragment: str) -> Callable[[dict], bool]:
    return lambda props: fragment in str(props.get("name") or props.get("resource_name") or "")


def _put(key: str, value: Any) -> Callable[[dict], None]:
    return lambda props: props.__setitem__(key, value)


def _policy(text: str) -> Callable[[dict], None]:
    """Replace an AWS inline policy's first statement's actions by ``text``."""
    def change(props: dict) -> None:
        doc = props["policy"]
        props["policy"] = pulumi.Output.from_input(doc).apply(
            lambda d: json.dumps({**json.loads(d), "Statement": [
                {**json.loads(d)["Statement"][0], "Action": [text]}]}))
    return change


def _untrusted_subject(props: dict) -> None:
    props["assume_role_policy"] = pulumi.Output.from_input(props["assume_role_policy"]).apply(
        lambda d: json.dumps({**json.loads(d), "Statement": [
            {**st, "Condition": {"StringEquals": {k: v for k, v in st.get("Condition", {}).get(
                "StringEquals", {}).items() if not k.endswith(":sub")}}} if "Condition" in st else st
            for st in json.loads(d)["Statement"]]}))


def _both_endpoints(props: dict) -> None:
    props["endpoints"] = [{**(e if isinstance(e, dict) else vars(e)), "endpoint_status": "Enabled"}
                          for e in props["endpoints"]]


def _access_key(built: Any) -> None:
    role = next(iter(built.aws.values())).provider
    aws.iam.AccessKey("leaked", user="mcrepl-runner", opts=pulumi.ResourceOptions(provider=role))


def _sa_key(built: Any) -> None:
    gcp.serviceaccount.Key("leaked", service_account_id="projects/mcrepl-demo/serviceAccounts/x@y")


@dataclass(frozen=True)
class Broken:
    """A stack that breaks one rule: the config, and what differs from the program."""

    rule: str
    expect: str                                  # a fragment of the violation message
    config: Path = AWS_PRIMARY
    alter: Transformation | None = None
    extra: Callable[[Any], None] | None = None
    raw: Callable[[dict], None] | None = None    # a config change instead of a program change


BROKEN: dict[str, Broken] = {
    "table-replica-in-the-us": Broken(
        "mcrepl-residency", "dynamodb:us-east-1 is in US, but dataset 'customers' (pii) may live only in EU",
        alter=_edit("aws:dynamodb/table:Table", _named("customers"), _put("replicas", [{"region_name": "us-east-1"}]))),
    "bucket-in-a-us-multi-region": Broken(
        "mcrepl-residency", "gcs:us is in US", alter=_edit("gcp:storage/bucket:Bucket", _named("invoices"),
                                                           _put("location", "US"))),
    "table-without-cmk": Broken(
        "mcrepl-encryption", "no customer-managed KMS key",
        alter=_edit("aws:dynamodb/table:Table", _named("customers"), _put("server_side_encryption", {"enabled": True}))),
    "cmk-account-without-its-identity": Broken(
        "mcrepl-encryption", "user-assigned identity as defaultIdentity", config=AZURE_PRIMARY,
        alter=_edit("azure-native:cosmosdb:DatabaseAccount", lambda p: True,
                    lambda p: (p.pop("identity"), p.pop("default_identity")))),
    "kms-key-not-rotated": Broken(
        "mcrepl-encryption", "rotation is off", alter=_edit("aws:kms/key:Key", lambda p: True,
                                                            _put("enable_key_rotation", False))),
    "stream-keys-only": Broken(
        "mcrepl-replication-ready", "NEW_AND_OLD_IMAGES",
        alter=_edit("aws:dynamodb/table:Table", _named("invoices"), _put("stream_view_type", "KEYS_ONLY"))),
    "cosmos-key-auth-on": Broken(
        "mcrepl-access", "local (key) auth must be off",
        alter=_edit("azure-native:cosmosdb:DatabaseAccount", lambda p: True, _put("disable_local_auth", False))),
    "cosmos-open-to-the-internet": Broken(
        "mcrepl-access", "open to the internet",
        raw=lambda raw: raw["provisioning"]["azure"].update(allowed_ip_ranges=[])),
    "bucket-unprotected": Broken(
        "mcrepl-protected", "not protected", alter=_edit("gcp:storage/bucket:Bucket", _named("customers"),
                                                         protect=False)),
    "wildcard-action-for-the-runner": Broken(
        "mcrepl-iam", "action 'dynamodb:*' is a wildcard",
        alter=_edit("aws:iam/rolePolicy:RolePolicy", _named("runner-apply"), _policy("dynamodb:*"))),
    "primitive-role-on-a-bucket": Broken(
        "mcrepl-iam", "roles/editor is a primitive or admin role",
        alter=_edit("gcp:storage/bucketIAMMember:BucketIAMMember", lambda p: True, _put("role", "roles/editor"))),
    "web-identity-trust-without-subject": Broken(
        "mcrepl-iam", "pin the token's audience and subject",
        alter=_edit("aws:iam/role:Role", _named("runner"), _untrusted_subject)),
    "pool-provider-admitting-every-aws-identity": Broken(
        "mcrepl-iam", "admits every identity of its issuer",
        alter=_edit("gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider", lambda p: True,
                    lambda p: p.pop("attribute_condition"))),
    "federated-credential-for-any-subject": Broken(
        "mcrepl-iam", "one exact subject",
        alter=_edit("azure-native:managedidentity:FederatedIdentityCredential", lambda p: True, _put("subject", "*"))),
    "aws-access-key": Broken("mcrepl-no-keys", "AccessKey is a long-lived credential", extra=_access_key),
    "service-account-key": Broken("mcrepl-no-keys", "Key is a long-lived credential", extra=_sa_key),
    "route53-flips-on-its-own": Broken(
        "mcrepl-dns", "Route 53 moves writes before mcrepl promotes",
        alter=_edit("aws:route53/record:Record", lambda p: p.get("set_identifier", "").endswith("primary"),
                    _put("health_check_id", "hc-123"))),
    "traffic-manager-flips-on-its-own": Broken(
        "mcrepl-dns", "more than one enabled endpoint", config=AZURE_PRIMARY,
        alter=_edit("azure-native:trafficmanager:Profile", lambda p: True, _both_endpoints)),
}


def test_every_rule_has_a_broken_stack() -> None:
    assert {b.rule for b in BROKEN.values()} == {rule.name for rule in RULES}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_each_broken_stack_is_refused_by_exactly_its_rule(case: str) -> None:
    broken = BROKEN[case]
    config = load_config(broken.config)      # the pack config is the intended one
    target = config
    if broken.raw is not None:
        raw = yaml.safe_load(broken.config.read_text())
        broken.raw(raw)
        target = McreplConfig.model_validate(raw)
    run = run_program(target, "broken", alter=broken.alter, extra=broken.extra)
    found = analyze(run, pack_config(config))
    assert found, f"{case}: the pack accepted a broken stack"
    assert {d.policy for d in found} == {broken.rule}, [(d.policy, d.message) for d in found]
    assert all(d.mandatory for d in found)
    assert any(broken.expect in d.message for d in found), [d.message for d in found]


def test_without_residency_config_the_pack_fails_closed() -> None:
    config = load_config(AWS_PRIMARY)
    settings = {k: v for k, v in pack_config(config).items() if k != "mcrepl-residency"}
    found = analyze(run_program(config, "noconf"), settings)
    assert {(d.policy, d.type) for d in found} == {("mcrepl-residency", t) for t in (
        "aws:dynamodb/table:Table", "azure-native:cosmosdb:DatabaseAccount", "gcp:storage/bucket:Bucket")}
    assert all("mcrepl config policy-pack" in d.message for d in found)


@pytest.mark.parametrize("path", [AWS_PRIMARY, AZURE_PRIMARY, ROOT / "examples/mcrepl.yaml"], ids=lambda p: p.stem)
def test_pack_residency_decides_as_the_policy_engine_over_the_whole_catalogue(path: Path) -> None:
    config = load_config(path)
    settings = pack_config(config)["mcrepl-residency"]
    types = {"dynamodb": "aws:dynamodb/table:Table", "gcs": "gcp:storage/bucket:Bucket"}
    for location in location_catalogue():
        provider, region = location.split(":", 1)
        if provider not in types:
            props: dict[str, Any] = {"locations": [{"locationName": region, "failoverPriority": 0}]}
            typ = "azure-native:cosmosdb:DatabaseAccount"
        else:
            typ = types[provider]
            props = {"location": region.upper(), "labels": {}, "tags": {}}
        subject = Subject(typ, props, {"region": region})
        pack_refuses = {m.split("'")[1] for m in check_residency(subject, settings) if m.startswith("[residency.class]")}
        engine_refuses = {name for name, ds in config.datasets.items()
                          if provider in {r.provider for r in ds.locations}
                          and not class_allowed_at(config, ds.classification, location)}
        assert pack_refuses == engine_refuses, location


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    return names


def test_the_pack_is_self_contained() -> None:
    """Publishable without the repository: it imports only pulumi_policy and the standard library,
    pins that in its own requirements.txt, and runs with mcrepl unimportable."""
    allowed = {"pulumi_policy", "mcrepl_policy", "__future__", *sys.stdlib_module_names}
    for source in [PACK / "__main__.py", *sorted((PACK / "mcrepl_policy").glob("*.py"))]:
        assert _imports(source) <= allowed, (source.name, _imports(source) - allowed)
    pins = dict(line.split("==") for line in (PACK / "requirements.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    extra = next(d for d in __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]
                 ["optional-dependencies"]["pulumi"] if d.startswith("pulumi-policy=="))
    assert pins["pulumi-policy"] == extra.split("==")[1]
    assert "virtualenv: venv" in (PACK / "PulumiPolicy.yaml").read_text()
    script = f"""
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "mcrepl" or name.startswith("mcrepl."):
            raise ImportError("mcrepl is not installed where the pack runs")
sys.meta_path.insert(0, Refuse())
sys.path.insert(0, {str(PACK)!r})
from mcrepl_policy import RULES, pack_policies
from mcrepl_policy.subject import Subject
print(len(pack_policies()), RULES[6].check(Subject("gcp:serviceaccount/key:Key", {{}}), {{}})[0][:3])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(RULES)), "Key"]
