"""``mcrepl config from-stack``: stack outputs → connection settings, round trip.

``examples/pulumi/aws-primary.outputs.json`` is what ``pulumi stack output --json``
prints for the aws-primary example (recorded from the program under mocks; the first
test keeps it in step with the program).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pulumi"))

from mcrepl.adapters.base import ConfigError  # noqa: E402
from mcrepl.orchestrator.cli import app  # noqa: E402
from mcrepl.orchestrator.cli.stack_cmd import merge_stack_outputs  # noqa: E402
from mcrepl.orchestrator.config import load_config  # noqa: E402
from mcrepl_infra.testing import run_program  # noqa: E402

CONFIG = ROOT / "examples/pulumi/aws-primary.yaml"
RECORDED = ROOT / "examples/pulumi/aws-primary.outputs.json"


def test_recorded_outputs_are_what_the_program_exports() -> None:
    run = run_program(load_config(CONFIG), "aws-primary")
    assert json.loads(json.dumps(run.outputs, sort_keys=True)) == json.loads(RECORDED.read_text())


def _local_flavoured(tmp_path: Path) -> Path:
    """The example config as a user had it before deploying: emulator endpoints, no names."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["profile"] = "local"
    raw["providers"]["dynamodb"] = {"endpoint": "local"}
    raw["providers"]["cosmos"] = {"endpoint": "local", "auth": "key", "database": "mcrepl"}
    raw["providers"]["gcs"].update(endpoint="local", auth="anonymous")
    path = tmp_path / "mcrepl.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_from_stack_prints_the_merged_config(tmp_path: Path) -> None:
    config_path = _local_flavoured(tmp_path)
    original = config_path.read_text()
    result = CliRunner().invoke(app, ["config", "from-stack", "--outputs", str(RECORDED),
                                      "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    merged_path = tmp_path / "merged.yaml"
    merged_path.write_text(result.stdout)
    merged = load_config(merged_path)
    outputs = json.loads(RECORDED.read_text())
    assert merged.profile == "cloud"
    assert merged.providers.cosmos.endpoint == outputs["providers"]["cosmos"]["account_uri"]
    assert (merged.providers.cosmos.auth, merged.providers.cosmos.database) == ("aad", "mcrepl")
    assert merged.providers.dynamodb.endpoint is None and merged.providers.gcs.endpoint is None
    assert (merged.providers.gcs.project, merged.providers.gcs.auth) == ("mcrepl-demo", "adc")
    for dataset, per_location in outputs["datasets"].items():
        for location, detail in per_location.items():
            target = merged.target(dataset, location)
            assert target.resource == detail["resource"]
            assert target.region == detail["region"]
    assert merged.target("customers", "cosmos:westeurope").options["endpoint"] == \
        "https://mcrepl-aws-primary-70b31b.documents.azure.com:443/"
    assert config_path.read_text() == original          # printed, not written, without --write


def test_from_stack_write_updates_the_file_and_keeps_everything_else(tmp_path: Path) -> None:
    config_path = tmp_path / "mcrepl.yaml"
    shutil.copy(CONFIG, config_path)
    before = load_config(config_path)
    result = CliRunner().invoke(app, ["config", "from-stack", "--outputs", str(RECORDED),
                                      "--config", str(config_path), "--write"])
    assert result.exit_code == 0, result.output
    after = load_config(config_path)
    assert after.datasets["invoices"].replicas[0].kms_key == before.datasets["invoices"].replicas[0].kms_key
    assert after.policies == before.policies and after.provisioning == before.provisioning
    assert after.sync == before.sync
    assert after.datasets["customers"].primary.resource == "mcrepl-aws-primary-customers"
    assert after.datasets["customers"].replicas[1].resource == "mcrepl-aws-primary-customers-europe-west1-70b31b"


def test_outputs_of_another_config_are_refused(tmp_path: Path) -> None:
    outputs = json.loads(RECORDED.read_text())
    raw = yaml.safe_load(CONFIG.read_text())
    del raw["datasets"]["invoices"]
    with pytest.raises(ConfigError, match="invoices"):
        merge_stack_outputs(raw, outputs)
    raw = yaml.safe_load(CONFIG.read_text())
    raw["datasets"]["customers"]["replicas"] = ["gcs:europe-west1"]
    with pytest.raises(ConfigError, match="cosmos:westeurope"):
        merge_stack_outputs(raw, outputs)


def test_unknown_output_format_exits_2_with_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "outputs.json"
    bad.write_text(json.dumps({"tableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/x"}))
    result = CliRunner().invoke(app, ["config", "from-stack", "--outputs", str(bad), "--config", str(CONFIG)])
    assert result.exit_code == 2
    assert "mcrepl-stack/1" in result.output and "pulumi stack output --json" in result.output


def test_validate_accepts_the_recorded_stack_and_catches_a_tampered_one(tmp_path: Path) -> None:
    """``mcrepl validate --stack-outputs`` reads the same file: keys and lint-clean identities."""
    ok = CliRunner().invoke(app, ["validate", str(CONFIG), "--stack-outputs", str(RECORDED)])
    assert ok.exit_code == 0, ok.output
    outputs = json.loads(RECORDED.read_text())
    outputs["identities"]["gcp"]["apply"]["documents"]["customers@gcs:europe-west1"]["bindings"][0]["members"] \
        .append("allUsers")
    tampered = tmp_path / "outputs.json"
    tampered.write_text(json.dumps(outputs))
    bad = CliRunner().invoke(app, ["validate", str(CONFIG), "--stack-outputs", str(tampered), "--format", "json"])
    assert bad.exit_code == 1
    assert [v["rule_id"] for v in json.loads(bad.stdout)["violations"]] == ["iam.gcp-public-member"]
