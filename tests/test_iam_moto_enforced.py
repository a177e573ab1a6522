"""The rendered AWS policy is sufficient and minimal, on moto with IAM enforcement on (issue 13).

A dedicated moto server (its auth switch is global, so it is not the session's) starts
with ``INITIAL_NO_AUTH_ACTION_COUNT`` unlimited for setup (tables, seed data, an IAM user
with an access key), then ``/moto-api/reset-auth 0`` makes every later request need a
signature and a policy that allows it. The user holds only the documents ``mcrepl iam
render`` gives the sync runner (capture, apply and verify on both tables) and runs sync
(scan, stream, tombstone purge), verify and repair through the CLI with its own access key.

What moto proves and what it does not: moto's DynamoDB handler authorises every call
against resource ``"*"`` (it checks the *action*, not the table ARN), so the user holds the
rendered statements with their actions unchanged and ``Resource`` widened to ``"*"``; the
*resource* scoping is then proven separately by evaluating every call the run made — its
action and the real table or stream ARN it addressed — against the unwidened rendered
documents with moto's own IAM policy evaluator. KMS grants for customer-managed keys are
outside what moto enforces (see docs/policies.md).
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
import requests
import yaml
from typer.testing import CliRunner

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import ReplicaAdapter, document
from mcrepl.orchestrator.cli import app
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.localstack import LocalStack
from mcrepl.policies.iam import ResourceIds, render_all, render_aws

from .iam_recording import CallRecorder

ACCOUNT = "123456789012"          # moto's default account
PRIMARY, REPLICA = "dynamodb:eu-west-1", "dynamodb:eu-central-1"
RUNNER_ROLES = ("capture", "apply", "verify")
PROFILE = "mcrepl-runner"


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = LocalStack(["dynamodb"], work_dir=tmp_path_factory.mktemp("moto-iam"))
    try:
        yield stack.endpoint("dynamodb")
    finally:
        stack.stop()


def _auth(endpoint: str, count: str) -> None:
    """``0``: every request needs credentials and a policy; ``inf``: no checks (setup)."""
    requests.post(f"{endpoint}/moto-api/reset-auth", data=count.encode(), timeout=10).raise_for_status()


class Run:
    """One namespace on the enforcing moto: the stores, the runner user, the CLI as that user."""

    def __init__(self, endpoint: str, tmp: Path, recorder: CallRecorder) -> None:
        self.endpoint, self.tmp, self.recorder = endpoint, tmp, recorder
        self.namespace = f"m{uuid.uuid4().hex[:6]}"
        self.user = f"runner-{self.namespace}"
        self.raw: dict[str, Any] = {
            "version": 1, "profile": "local", "state_dir": str(tmp / "state"),
            "providers": {"dynamodb": {"endpoint": endpoint, "profile": PROFILE}},
            "datasets": {"orders": {"key": {"partition": "id"}, "primary": PRIMARY, "replicas": [REPLICA]}},
            "sync": {"batch_size": 50, "retry_deadline": "2s", "tombstone_retention": "2s",
                     "max_replica_outage": "1s"}}
        self.path = tmp / "mcrepl.yaml"
        self.path.write_text(yaml.safe_dump(self.raw))
        admin = copy.deepcopy(self.raw)
        del admin["providers"]["dynamodb"]["profile"]              # setup uses the emulator's dummy keys
        self.admin_config = McreplConfig.model_validate(admin)
        self.stores: dict[str, ReplicaAdapter] = {}
        self.streams: dict[str, str] = {}          # region → the table's stream ARN

    def iam(self) -> Any:
        return boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def setup(self) -> dict:
        """Tables, seed data, the user and its key; returns the runner's rendered documents."""
        for at in (PRIMARY, REPLICA):
            adapter = open_adapter(self.admin_config.target("orders", at, None, self.namespace))
            adapter.ensure_ready()
            self.stores[at] = adapter
        self.stores[PRIMARY].write_native(self.docs(range(12)))
        outputs = {"datasets": {"orders": {}}}
        ddb = {at: boto3.client("dynamodb", endpoint_url=self.endpoint, region_name=at.split(":")[1],
                                aws_access_key_id="testing", aws_secret_access_key="testing")
               for at in (PRIMARY, REPLICA)}
        for at, client in ddb.items():
            table = client.describe_table(TableName=self.stores[at].target.resource)["Table"]
            outputs["datasets"]["orders"][at] = {"arn": table["TableArn"], "stream_arn": table["LatestStreamArn"]}
            self.streams[at.split(":")[1]] = table["LatestStreamArn"]
        config = McreplConfig.model_validate({**self.raw, "provisioning": {"aws": {"account_id": ACCOUNT}}})
        docs = render_all(config, ResourceIds.from_config(config, outputs))["aws"]
        key = self.iam().create_user(UserName=self.user) and self.iam().create_access_key(UserName=self.user)
        (self.tmp / "credentials").write_text(
            f"[{PROFILE}]\naws_access_key_id = {key['AccessKey']['AccessKeyId']}\n"
            f"aws_secret_access_key = {key['AccessKey']['SecretAccessKey']}\n")
        return {f"{role}-{loc}": doc for role in RUNNER_ROLES for loc, doc in docs[role].items()}

    def grant(self, documents: dict, drop: str | None = None) -> None:
        """Give the user exactly ``documents`` (Resource widened to "*", see the module doc)."""
        for name, doc in documents.items():
            statements = []
            for st in doc["Statement"]:
                actions = [a for a in st["Action"] if a != drop]
                if actions:
                    statements.append({**st, "Action": actions, "Resource": "*"})
            if statements:
                self.iam().put_user_policy(UserName=self.user, PolicyName=name.replace(":", "-").replace("@", "-"),
                                           PolicyDocument=json.dumps({"Version": "2012-10-17",
                                                                      "Statement": statements}))

    def docs(self, keys: range, **extra: Any) -> list:
        schema = self.admin_config.datasets["orders"].key_schema()
        return [document(schema, {"id": f"o{i:03d}", "n": i, **extra}) for i in keys]

    def cli(self, *args: str) -> int:
        env = {"AWS_SHARED_CREDENTIALS_FILE": str(self.tmp / "credentials"), "AWS_CONFIG_FILE": os.devnull,
               "MCREPL_NAMESPACE": self.namespace}
        with self.recorder.phase(args[0]):
            return CliRunner().invoke(app, [*args, "-c", str(self.path)], env=env).exit_code

    def as_admin(self, fn: Any) -> None:
        _auth(self.endpoint, "inf")
        try:
            with self.recorder.paused():
                fn()
        finally:
            _auth(self.endpoint, "0")

    def scenario(self) -> list[int]:
        """sync (scan) · change · sync (stream) · sync (purge) · edit a replica · verify · repair · verify."""
        codes = [self.cli("sync", "--once", "--format", "json")]
        self.as_admin(lambda: (self.stores[PRIMARY].write_native(self.docs(range(4), changed=True)),
                               self.stores[PRIMARY].delete_native([d.key for d in self.docs(range(10, 12))])))
        codes.append(self.cli("sync", "--once", "--format", "json"))
        time.sleep(2.2)                                         # tombstones pass tombstone_retention
        codes.append(self.cli("sync", "--once", "--format", "json"))
        self.as_admin(lambda: self.stores[REPLICA].write_native(self.docs(range(5, 6), edited=True)))
        codes += [self.cli("verify"), self.cli("repair", "--dataset", "orders"), self.cli("verify")]
        return codes

    def close(self) -> None:
        _auth(self.endpoint, "inf")
        with self.recorder.paused():
            for adapter in self.stores.values():
                adapter.drop()
                adapter.close()


def _run(endpoint: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, drop: str | None = None
         ) -> tuple[Run, CallRecorder, list[int], dict]:
    recorder = CallRecorder().install(monkeypatch)
    run = Run(endpoint, tmp, recorder)
    _auth(endpoint, "inf")
    with recorder.paused():
        documents = run.setup()
        run.grant(documents, drop)
    _auth(endpoint, "0")
    try:
        codes = run.scenario()
    finally:
        run.close()
    return run, recorder, codes, documents


def _actions(documents: dict) -> list[str]:
    return sorted({a for doc in documents.values() for st in doc["Statement"] for a in st["Action"]})


def test_rendered_policy_is_sufficient_for_sync_verify_and_repair(moto_endpoint: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run, recorder, codes, documents = _run(moto_endpoint, tmp_path, monkeypatch)
    denied = [c for c in recorder.calls if c.error]
    assert not denied, f"the rendered policy denied: {denied}"
    assert codes == [0, 0, 0, 1, 0, 0], codes        # verify finds the edit, repair fixes it, verify is clean
    names = {c.name for c in recorder.calls}
    assert {"dynamodb:GetRecords", "dynamodb:DeleteItem", "dynamodb:BatchGetItem", "dynamodb:PutItem"} <= names
    # resource scoping: every call, with the ARN it really addressed, is allowed by the unwidened documents
    from moto.iam.access_control import IAMPolicy
    policies = [IAMPolicy(json.dumps(doc)) for doc in documents.values()]
    for call in recorder.calls:
        if call.resource is None:              # GetRecords names only its shard iterator: the region's stream
            arn = run.streams[str(call.region)]
        elif call.resource.startswith("arn:"):
            arn = call.resource
        else:
            arn = f"arn:aws:dynamodb:{call.region}:{ACCOUNT}:table/{call.resource}"
        verdicts = {p.is_action_permitted(call.name, arn).name for p in policies}
        assert "PERMITTED" in verdicts and "DENIED" not in verdicts, f"{call.name} on {arn} is not granted"


@pytest.mark.slow
def test_dropping_any_action_makes_its_call_fail_with_access_denied(moto_endpoint: str, tmp_path: Path) -> None:
    actions = _actions({role: render_aws(role, ["t"], ["s"]) for role in RUNNER_ROLES})
    assert len(actions) >= 8, actions
    unproven = []
    for action in actions:
        with pytest.MonkeyPatch.context() as mp:
            (tmp_path / action.split(":")[1]).mkdir()
            _, recorder, codes, _ = _run(moto_endpoint, tmp_path / action.split(":")[1], mp, drop=action)
        denied = {c.name for c in recorder.calls if str(c.error).startswith("AccessDenied")}
        if action not in denied:
            unproven.append(f"{action}: no call failed with AccessDenied (denied: {sorted(denied)}, exits {codes})")
    assert not unproven, "\n".join(unproven)
