"""One validation, everywhere: what ``mcrepl validate`` refuses, every command refuses with
exit 2 before any I/O, naming file and path (with list indices) and the fix.

The configs are the mistakes issue 15 saw ``sync`` accept: a region typo, ``http://`` to a
real cloud, a pii replica outside its jurisdiction, a replica listed twice, the primary
listed as a replica, a cron APScheduler refuses, and credentials inside the config.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mcrepl.orchestrator.cli import app

ROOT = Path(__file__).resolve().parent.parent
BASE: dict[str, Any] = {
    "version": 1, "profile": "local",
    "providers": {"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local"},
                  "gcs": {"endpoint": "local", "auth": "anonymous"}},
    "datasets": {"people": {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1",
                            "replicas": ["cosmos:westeurope", "gcs:europe-west1"]}},
}


def _people(**changes: Any) -> Any:
    def edit(raw: dict[str, Any]) -> None:
        raw["datasets"]["people"].update(changes)
    return edit


def _cloud_http(raw: dict[str, Any]) -> None:
    raw["profile"] = "cloud"
    raw["providers"] = {"dynamodb": {"endpoint": "http://dynamodb.eu-west-1.example.com"}, "cosmos": {"auth": "aad"},
                        "gcs": {}}


def _pii(raw: dict[str, Any]) -> None:
    raw["datasets"]["people"].update(classification="pii", replicas=["cosmos:westeurope", "dynamodb:us-east-1"])
    raw["policies"] = {"residency": {"classes": {"pii": ["EU"]}}}


def _connection_string(raw: dict[str, Any]) -> None:
    raw["providers"]["cosmos"] = {"endpoint": "AccountEndpoint=https://people.documents.azure.com:443/;"
                                              "AccountKey=Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5Cg==;"}


def _userinfo(raw: dict[str, Any]) -> None:
    raw["profile"] = "cloud"
    raw["providers"] = {"dynamodb": {"endpoint": "https://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCY"
                                                 "EXAMPLEKEY@dynamodb.eu-west-1.amazonaws.com"},
                        "cosmos": {"auth": "aad", "endpoint": "https://people.documents.azure.com:443/"},
                        "gcs": {}}


MISTAKES = {
    "region-typo": (_people(replicas=["cosmos:westeurop", "gcs:europe-west1"]), "datasets.people.replicas[0]",
                    "westeurop"),
    "http-to-a-cloud": (_cloud_http, "providers.dynamodb.endpoint", "http"),
    "pii-outside-eu": (_pii, "datasets.people.replicas[1]", "pii data may live only in EU"),
    "replica-twice": (_people(replicas=["cosmos:westeurope", "gcs:europe-west1", "cosmos:westeurope"]),
                      "datasets.people.replicas[2]", "listed twice"),
    "primary-as-replica": (_people(replicas=["gcs:europe-west1", "dynamodb:eu-west-1"]),
                           "datasets.people.replicas[1]", "is the primary"),
    "cron-apscheduler-refuses": (_people(schedule={"cron": "*/5 * * * * *"}), "datasets.people.schedule.cron",
                                 "not a valid cron"),
    "connection-string": (_connection_string, "providers.cosmos.endpoint", "MCREPL_COSMOS_KEY"),
    "url-userinfo": (_userinfo, "providers.dynamodb.endpoint", "AWS_SECRET_ACCESS_KEY"),
}
COMMANDS = {
    "sync": ["sync", "--once"], "verify": ["verify"], "repair": ["repair", "--dataset", "people"],
    "local-seed": ["local", "seed", "--dataset", "people"], "local-create": ["local", "create"],
    "validate": ["validate"],
}


def _write(tmp_path: Path, edit: Any) -> Path:
    raw = copy.deepcopy(BASE)
    raw["state_dir"] = str(tmp_path / "state")
    edit(raw)
    path = tmp_path / "mcrepl.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("mistake", MISTAKES)
def test_every_command_refuses_what_validate_refuses_before_any_io(tmp_path: Path, mistake: str) -> None:
    edit, where, words = MISTAKES[mistake]
    path = _write(tmp_path, edit)
    runner = CliRunner()
    for name, args in COMMANDS.items():
        argv = [*args, str(path)] if name == "validate" else [*args, "-c", str(path)]
        result = runner.invoke(app, argv, env={"MCREPL_LOCAL_DIR": str(tmp_path / "no-stack")})
        expected = 1 if name == "validate" and mistake in ("region-typo", "http-to-a-cloud", "pii-outside-eu") else 2
        assert result.exit_code == expected, f"{name}: {result.output}"
        assert f"{path}:{where}: " in result.output and words in result.output, f"{name}: {result.output}"
        assert "(fix: " in result.output
    assert not (tmp_path / "state").exists(), "refused before the state store was even opened"


@pytest.mark.parametrize("mistake", MISTAKES)
def test_sync_exits_2_before_opening_state_or_stores(tmp_path: Path, mistake: str) -> None:
    """Refused up front: exit 2 naming file and path, no state file, no local stack (it isn't
    running: a command that got as far as a store would have failed otherwise, with exit 3)."""
    path = _write(tmp_path, MISTAKES[mistake][0])
    env = {**os.environ, "MCREPL_LOCAL_DIR": str(tmp_path / "no-stack")}
    done = subprocess.run([sys.executable, "-m", "mcrepl.orchestrator.cli", "sync", "--once", "-c", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{path}:{MISTAKES[mistake][1]}: " in done.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "no-stack").exists()


def test_the_pulumi_program_runs_the_same_validation() -> None:
    sys.path.insert(0, str(ROOT / "pulumi"))
    from mcrepl.orchestrator.validation import ConfigRefused, load_checked
    from mcrepl_infra.program import planned_for

    planned = planned_for("dev", "mcrepl")
    for example in ("aws-primary.yaml", "azure-primary.yaml"):
        load_checked(ROOT / "examples/pulumi" / example, stack_outputs=planned)  # keys it creates count
    with pytest.raises(ConfigRefused) as info:
        load_checked(ROOT / "examples/bad-residency.yaml", stack_outputs=planned)
    assert "bad-residency.yaml:datasets.customers.replicas[1]:" in str(info.value)
    assert info.value.findings[0].rule == "residency.classification"


def test_a_drill_whose_topology_validate_would_refuse_is_refused_before_it_starts(tmp_path: Path) -> None:
    text = (ROOT / "examples/drills/primary-region-lost.yaml").read_text().replace("eu-central-1", "eu-centrl-1")
    drill = tmp_path / "drill.yaml"
    drill.write_text(text)
    result = CliRunner().invoke(app, ["drill", "run", str(drill), "--report-dir", str(tmp_path / "report")])
    assert result.exit_code == 2, result.output
    assert f"{drill}:topology.replicas[0]: region 'eu-centrl-1'" in result.output
    assert not (tmp_path / "report").exists()
