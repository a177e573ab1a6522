"""The IAM inventories are what the adapters really call (issue 13).

Sync (scan, stream/feed/listing capture, tombstone purge), verify and repair run through
the CLI against the emulators, with three datasets so every store is once a primary and
twice a replica. Every request is recorded through the SDKs' own hooks
(:mod:`tests.iam_recording`), and the test fails when a call is missing from the adapter's
``operations.py`` or is declared for the wrong roles — the message names the call and the
file to fix. Declared operations the emulators cannot exercise are listed with the reason.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from typer.testing import CliRunner

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import ReplicaAdapter, document
from mcrepl.adapters.base.operations import ROLES
from mcrepl.orchestrator.cli import app
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.policies.iam import INVENTORIES

from .iam_recording import Call, CallRecorder

DDB, COSMOS, GCS, S3 = "dynamodb:eu-west-1", "cosmos:westeurope", "gcs:europe-west1", "s3:eu-west-1"
DATASETS = {"from-ddb": (DDB, [COSMOS, GCS]), "from-cosmos": (COSMOS, [DDB, GCS, S3]), "from-gcs": (GCS, [DDB, COSMOS]),
            "from-s3": (S3, [DDB, GCS])}
#: declared operations these emulators cannot make the adapters call, and why
NOT_EXERCISED = {
    "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/readChangeFeed":
        "the Cosmos emulator has no incremental change feed, so capture uses the _ts query there",
    "kms:Decrypt": "DynamoDB calls KMS itself for tables with a customer-managed key; moto tables have none",
    "kms:DescribeKey": "as kms:Decrypt",
    "kms:CreateGrant": "as kms:Decrypt",
    "dynamodb:TransactWriteItems@apply": "apply_batch sends one PutItem per record on the local stack (batch_writes: auto); "
                                   "transactions are tested in test_dynamodb_adapter.py and the contract suite's "
                                   "dynamodb-local-transact backend",
}
#: answers the adapters expect and handle (absent table before creation, a lost condition)
EXPECTED_ERRORS = {"ResourceNotFoundException", "ConditionalCheckFailedException",
                   "TransactionCanceledException"}     # a lost condition inside a batch's transaction
#: which roles a call in each phase may use: (phase, the store is its dataset's primary) → roles
PHASE_ROLES = {("admin", True): {"admin"}, ("admin", False): {"admin"},
               ("sync", True): {"capture", "apply"},          # purges run on the primary too
               ("sync", False): {"apply"}, ("verify", True): {"verify"}, ("verify", False): {"verify"},
               ("repair", True): {"verify", "apply"}, ("repair", False): {"verify", "apply"}}


def _raw(tmp_path: Path) -> dict[str, Any]:
    return {"version": 1, "profile": "local", "state_dir": str(tmp_path / "state"),
            "providers": {"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local"},
                          "gcs": {"endpoint": "local", "auth": "anonymous"}, "s3": {"endpoint": "local"}},
            "datasets": {name: {"key": {"partition": "id"}, "primary": p, "replicas": list(r)}
                         for name, (p, r) in DATASETS.items()},
            "sync": {"batch_size": 50, "retry_deadline": "5s", "tombstone_retention": "2s",
                     "max_replica_outage": "1s"}}


class Scenario:
    """The stores of one namespace, the config file, and the CLI invoked as a user would."""

    def __init__(self, tmp_path: Path, endpoints: dict[str, str], namespace: str) -> None:
        self.raw = _raw(tmp_path)
        self.path = tmp_path / "mcrepl.yaml"
        self.path.write_text(yaml.safe_dump(self.raw))
        self.config = McreplConfig.model_validate(self.raw)
        self.endpoints, self.namespace = endpoints, namespace
        self.stores: dict[tuple[str, str], ReplicaAdapter] = {}

    def open_all(self) -> None:
        for name, ds in self.config.datasets.items():
            for ref in ds.locations:
                adapter = open_adapter(self.config.target(name, ref.at, self.endpoints, self.namespace))
                adapter.ensure_ready()
                self.stores[(name, ref.at)] = adapter

    def cli(self, *args: str) -> Any:
        env = {"MCREPL_LOCAL_ENDPOINTS": json.dumps(self.endpoints), "MCREPL_NAMESPACE": self.namespace}
        return CliRunner().invoke(app, [*args, "-c", str(self.path)], env=env)

    def where(self, call: Call) -> tuple[str, str] | None:
        """(dataset, location) a call addressed, or None for account/project-level calls."""
        for (name, at), adapter in self.stores.items():
            target = adapter.target
            if call.provider != target.provider or call.resource is None:
                continue
            if call.provider == "dynamodb":
                table = call.resource.split(":table/", 1)[1].split("/")[0] if ":table/" in call.resource \
                    else call.resource
                if table == target.resource and call.region == target.region:
                    return name, at
            elif call.provider == "cosmos":
                if call.resource == f"{target.options['database']}/{target.resource}":
                    return name, at
            elif call.resource == target.resource:
                return name, at
        return None

    def drop_all(self) -> None:
        for adapter in self.stores.values():
            try:
                adapter.drop()
            finally:
                adapter.close()


def _docs(config: McreplConfig, rounds: range, **extra: Any) -> list:
    schema = config.datasets["from-ddb"].key_schema()
    return [document(schema, {"id": f"k{i:03d}", "n": i, **extra}) for i in rounds]


@pytest.fixture(scope="module")
def recorded(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CallRecorder, Scenario]]:
    endpoints = {name: local_stack.endpoint(name) for name in ("dynamodb", "cosmos", "gcs", "s3")}
    monkeypatch = pytest.MonkeyPatch()
    recorder = CallRecorder().install(monkeypatch)
    scenario = Scenario(tmp_path_factory.mktemp("iam-ops"), endpoints, f"io{uuid.uuid4().hex[:6]}")
    try:
        with recorder.phase("admin"):
            scenario.open_all()
        primaries = {name: scenario.stores[(name, p)] for name, (p, _) in DATASETS.items()}
        with recorder.paused():
            for store in primaries.values():
                store.write_native(_docs(scenario.config, range(20)))
        with recorder.phase("sync"):
            for store in primaries.values():        # what a follower or sync --schedule writes there
                store.write_heartbeat(int(time.time() * 1000))
            first = scenario.cli("sync", "--once", "--format", "json")
        assert first.exit_code == 0, first.output
        with recorder.paused():                      # changes and deletes: stream/feed/listing capture
            for store in primaries.values():
                store.write_native(_docs(scenario.config, range(5), changed=True))
                store.delete_native([d.key for d in _docs(scenario.config, range(15, 18))])
        with recorder.phase("sync"):
            second = scenario.cli("sync", "--once", "--format", "json")
            time.sleep(2.2)                          # tombstones older than tombstone_retention: purged
            third = scenario.cli("sync", "--once", "--format", "json")
        assert second.exit_code == 0 and third.exit_code == 0, second.output + third.output
        with recorder.paused():                      # an application edits replicas behind mcrepl's back
            for name, (_, replicas) in DATASETS.items():
                replica = scenario.stores[(name, replicas[0])]
                replica.write_native(_docs(scenario.config, range(6, 8), edited=True))
                replica.delete_native([d.key for d in _docs(scenario.config, range(9, 10))])
        with recorder.phase("verify"):
            found = scenario.cli("verify")
        assert found.exit_code == 1, found.output    # the edits are found …
        with recorder.phase("repair"):
            for name in DATASETS:
                repaired = scenario.cli("repair", "--dataset", name)
                assert repaired.exit_code == 0, repaired.output
        with recorder.phase("verify"):
            clean = scenario.cli("verify")
        assert clean.exit_code == 0, clean.output    # … and repaired
        with recorder.phase("admin"):
            scenario.drop_all()
        yield recorder, scenario
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("provider", sorted(INVENTORIES))
def test_every_call_is_declared_for_the_role_that_makes_it(provider: str,
                                                           recorded: tuple[CallRecorder, Scenario]) -> None:
    recorder, scenario = recorded
    inventory = INVENTORIES[provider]
    calls = recorder.of(provider)
    assert calls, f"no {provider} call was recorded: the hooks are not in the request path"
    problems: set[str] = set()
    for call in calls:
        at = scenario.where(call)
        during = f"{call.phase} on {at[1] if at else 'the account'} ({at[0] if at else 'no dataset'})"
        op = inventory.get(call.name)
        if op is None:
            problems.add(inventory.undeclared_message(call.name, during))
            continue
        allowed = PHASE_ROLES[(call.phase, at is not None and DATASETS[at[0]][0] == at[1])] if at else \
            {r for (phase, _), roles in PHASE_ROLES.items() if phase == call.phase for r in roles}
        if not op.roles & allowed:
            problems.add(f"{provider} call {call.name!r} during {during} is made by a role in {sorted(allowed)}, "
                         f"but {inventory.module} declares it only for {sorted(op.roles)} "
                         f"(used_by={op.used_by}): add the adapter method that makes it to used_by")
    assert not problems, "\n".join(sorted(problems))
    failed = [c for c in calls if c.error and c.error not in EXPECTED_ERRORS]
    assert not failed, f"calls failed on the emulator: {failed[:5]}"


@pytest.mark.parametrize("provider", sorted(INVENTORIES))
def test_every_declared_grant_is_exercised_or_explained(provider: str,
                                                        recorded: tuple[CallRecorder, Scenario]) -> None:
    """No grant lingers after the adapters stop making its call (except those listed, with why)."""
    recorder, _ = recorded
    inventory = INVENTORIES[provider]
    seen = {c.name for c in recorder.of(provider)}
    with_role = {op.name for op in inventory.operations if op.roles}
    unexercised = with_role - seen
    assert unexercised == {n for n in NOT_EXERCISED if inventory.get(n) is not None}, (
        f"declared in {inventory.module} for a role but never called during sync, verify, repair or "
        f"create/drop: {sorted(unexercised - set(NOT_EXERCISED))}; remove them from used_by, or list "
        "them in NOT_EXERCISED with the reason")


def test_phases_ran_each_kind_of_capture(recorded: tuple[CallRecorder, Scenario]) -> None:
    """The scenario reached the paths that matter for IAM: stream capture, purge, repair writes."""
    recorder, _ = recorded
    names = {(c.phase, c.name) for c in recorder.calls}
    assert ("sync", "dynamodb:GetRecords") in names            # stream capture after the scan
    assert ("sync", "dynamodb:DeleteItem") in names            # tombstone purge
    assert ("repair", "dynamodb:PutItem") in names or ("repair", "storage.objects.insert") in names
    assert ("sync", "storage.buckets.get") in names            # every open reads the bucket (issue 13)


def test_role_methods_cover_every_role() -> None:
    for role in ROLES:
        assert any(role in op.roles for inv in INVENTORIES.values() for op in inv.operations), role
