"""``mcrepl validate`` and ``mcrepl keys``: output format, JSON, exit codes 0/1/2."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import yaml
from typer.testing import CliRunner

from mcrepl.orchestrator.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _rule(line: str) -> str:
    """The rule id at the end of a finding line ``file:path: why (fix: …) [rule-id]``."""
    return line.rsplit("[", 1)[1].rstrip("]")


def _where(line: str) -> str:
    """The ``file:path`` a finding line starts with, without the file's folder."""
    return line.split(": ", 1)[0].rsplit("/", 1)[-1]


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "mcrepl.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_config_validates_clean_and_bad_residency_is_refused() -> None:
    ok = runner.invoke(app, ["validate", str(ROOT / "examples" / "mcrepl.yaml")])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["validate", str(ROOT / "examples" / "bad-residency.yaml")])
    assert bad.exit_code == 1
    line = next(l for l in bad.stdout.splitlines() if "residency." in l)
    assert _rule(line) == "residency.classification"
    assert _where(line) == "bad-residency.yaml:datasets.customers.replicas[1]", "file and path of the replica"
    assert "(fix: " in line


def test_http_endpoint_outside_local_profile_and_missing_cmk_are_refused_with_rule_ids(tmp_path: Path) -> None:
    config = _write(tmp_path, {
        "profile": "cloud", "providers": {"gcs": {"endpoint": "http://storage.example.com"}},
        "datasets": {"files": {"kind": "blob", "primary": {"at": "gcs:europe-west1",
                                                           "kms_key": "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k"},
                               "replicas": ["gcs:europe-west4"]}},
        "policies": {"encryption": {"at_rest": "cmk_required"}}})
    out = runner.invoke(app, ["validate", str(config), "--format", "json"])
    assert out.exit_code == 1
    report = json.loads(out.stdout)
    assert not report["ok"]
    assert sorted((v["rule_id"], v["resource"]) for v in report["violations"]) == [
        ("encryption.at-rest-cmk", "files@gcs:europe-west4"), ("encryption.tls", "providers.gcs.endpoint")]
    assert all(v["fix"] and v["why"] for v in report["violations"])


def test_a_cmk_in_another_region_is_refused(tmp_path: Path) -> None:
    config = _write(tmp_path, {
        "datasets": {"tt": {"key": {"partition": "id"},
                           "primary": {"at": "dynamodb:eu-west-1", "kms_key": "arn:aws:kms:us-east-1:123456789012:key/k"},
                           "replicas": [{"at": "dynamodb:eu-west-3",
                                         "kms_key": "arn:aws:kms:eu-west-3:123456789012:key/k2"}]}},
        "policies": {"encryption": {"at_rest": "cmk_required"}}})
    out = runner.invoke(app, ["validate", str(config)])
    assert out.exit_code == 1
    assert [(_rule(l), _where(l)) for l in out.stdout.splitlines()] == [
        ("encryption.at-rest-cmk", "mcrepl.yaml:datasets.tt.primary")]


def test_stack_outputs_supply_keys_and_are_linted(tmp_path: Path) -> None:
    config = _write(tmp_path, {
        "providers": {"cosmos": {"auth": "aad"}},
        "datasets": {"tt": {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1", "replicas": ["cosmos:westeurope"]}},
        "policies": {"encryption": {"at_rest": "cmk_required"}}})
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({
        "datasets": {"tt": {"dynamodb:eu-west-1": {"kms_key": "arn:aws:kms:eu-west-1:123456789012:key/k"},
                           "cosmos:westeurope": {"kms_key": "https://v.vault.azure.net/keys/k"}}},
        "providers": {"cosmos": {"endpoint": "https://acct.documents.azure.com:443/", "auth": "aad"}},
        "identities": {"gcp": {"bindings": [{"role": "roles/storage.admin", "members": ["user:x@example.com"]}]}}}))
    out = runner.invoke(app, ["validate", str(config), "--stack-outputs", str(outputs)])
    assert out.exit_code == 1
    assert [(_rule(l), _where(l)) for l in out.stdout.splitlines()] == [
        ("iam.gcp-admin-role", "outputs.json:identities.gcp")]
    without = runner.invoke(app, ["validate", str(config)])
    assert sorted(_rule(l) for l in without.stdout.splitlines()) == ["encryption.at-rest-cmk"] * 2


def test_config_errors_are_printed_as_load_config_reports_them_with_exit_2(tmp_path: Path) -> None:
    config = _write(tmp_path, {"datasets": {"tt": {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1",
                                                  "replicas": ["gcs:europe-west1"]}},
                               "policies": {"residency": {"classez": {}}}})
    out = runner.invoke(app, ["validate", str(config)])
    assert out.exit_code == 2 and "policies.residency.classez" in out.output
    config = _write(tmp_path, {"datasets": {"tt": {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1",
                                                  "replicas": ["gcs:europe-west1"]}},
                               "policies": {"residency": {"classes": {"pii": ["Europe"]}}}})
    out = runner.invoke(app, ["validate", str(config)])
    assert out.exit_code == 2 and "Europe" in out.output


def test_keys_init_creates_a_0600_file_once_and_rotate_rewraps(tmp_path: Path) -> None:
    config = _write(tmp_path, {"state_dir": str(tmp_path / "state"),
                               "datasets": {"tt": {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1",
                                                  "replicas": ["gcs:europe-west1"], "sensitive_fields": ["email"]}},
                               "policies": {"encryption": {"fields": [{"dataset": "tt"}]}}})
    made = runner.invoke(app, ["keys", "init", "-c", str(config)])
    assert made.exit_code == 0, made.output
    key_file = tmp_path / "state" / "keyring.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert runner.invoke(app, ["keys", "init", "-c", str(config)]).exit_code == 2
    from mcrepl.policies.encryption import DataKeyStore, FieldCipher, LocalKeyring
    store = DataKeyStore(tmp_path / "state" / "datakeys.db", LocalKeyring(key_file))
    enc = FieldCipher(store).encrypt_value("tt", "k1", "email", "a@example.com")
    rotated = runner.invoke(app, ["keys", "rotate", "-c", str(config)])
    assert rotated.exit_code == 0, rotated.output
    assert "re-wrapped 1 data key" in rotated.stdout and "local/v2" in rotated.stdout
    fresh = FieldCipher(DataKeyStore(tmp_path / "state" / "datakeys.db", LocalKeyring(key_file)))
    assert fresh.decrypt_value("tt", "k1", "email", enc) == "a@example.com"
    assert fresh.datakeys.wrapping_keks() == {"local/v2"}
