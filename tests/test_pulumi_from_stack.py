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


def _comment_lines(text: str) -> list[str]:
    return [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]


def test_write_keeps_every_comment_and_changes_only_what_the_stack_provisioned(tmp_path: Path) -> None:
    original = CONFIG.read_text().replace("    primary: dynamodb:eu-west-1\n",
                                          "    primary: dynamodb:eu-west-1   # writes land here\n", 1)
    original = original.replace("      - cosmos:westeurope\n", "      - cosmos:westeurope        # the Azure copy\n", 1)
    config_path = tmp_path / "mcrepl.yaml"
    config_path.write_text(original)
    result = CliRunner().invoke(app, ["config", "from-stack", "--outputs", str(RECORDED), "-c", str(config_path),
                                      "--write"])
    assert result.exit_code == 0, result.output
    written = config_path.read_text()
    assert _comment_lines(written) == _comment_lines(original)      # every comment, in order
    assert '"123456789012"' in written                              # quoting kept
    import difflib
    changed = [line for line in difflib.unified_diff(original.splitlines(), written.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    for line in changed:   # only replicas in long form, resource names and the Cosmos endpoint
        assert any(word in line for word in ("primary:", "at: ", "resource: ", "endpoint: ", "- cosmos:westeurope",
                                             "- gcs:europe-west1")), line
    assert "+      - at: cosmos:westeurope  # the Azure copy" in changed
    # a second run changes nothing, byte for byte
    again = CliRunner().invoke(app, ["config", "from-stack", "--outputs", str(RECORDED), "-c", str(config_path),
                                     "--write"])
    assert again.exit_code == 0 and config_path.read_text() == written


def test_stack_without_the_pulumi_cli_names_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))          # no pulumi here
    result = CliRunner().invoke(app, ["config", "from-stack", "--stack", "aws-primary", "--work-dir",
                                      str(ROOT / "pulumi"), "-c", str(CONFIG)])
    assert result.exit_code == 2
    assert "pulumi stack output --json --stack aws-primary > outputs.json" in result.output
    both = CliRunner().invoke(app, ["config", "from-stack", "--stack", "x", "--outputs", str(RECORDED), "-c",
                                    str(CONFIG)])
    assert both.exit_code == 2 and "exactly one" in both.output


def test_automation_api_output_values_become_plain_outputs() -> None:
    from pulumi.automation import OutputValue

    from mcrepl.orchestrator.cli.stack_source import plain_outputs

    recorded = json.loads(RECORDED.read_text())
    as_automation = {key: OutputValue(value, secret=False) for key, value in recorded.items()}
    assert plain_outputs(as_automation) == recorded


@pytest.mark.skipif(shutil.which("pulumi") is None,
                    reason="the Pulumi CLI is not installed here (its installers download from the internet); "
                           "where it is, this runs a local-backend stack and reads it through the Automation API")
def test_from_stack_reads_a_real_stack_through_the_automation_api(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        f"name: mcrepl-outputs\nruntime:\n  name: python\n  options:\n    virtualenv: {Path(sys.prefix)}\n")
    (project / "__main__.py").write_text(
        "import json, pulumi\n"
        f"for k, v in json.load(open({str(RECORDED)!r})).items():\n    pulumi.export(k, v)\n")
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test")
    (tmp_path / "state").mkdir()
    for argv in (["stack", "init", "dev"], ["up", "--yes", "--skip-preview"]):
        subprocess.run(["pulumi", *argv], cwd=project, check=True, capture_output=True, timeout=300)
    result = CliRunner().invoke(app, ["config", "from-stack", "--stack", "dev", "--work-dir", str(project),
                                      "-c", str(CONFIG)])
    assert result.exit_code == 0, result.output
    assert "resource: mcrepl-aws-primary-customers" in result.stdout
