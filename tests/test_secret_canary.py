"""No secret is ever echoed: canary credentials planted in the environment and in a config,
every command run (the ones that fail too), every byte written searched for them.

Two configs: a *dirty* one holding credentials where users plausibly put them (a Cosmos DB
connection string as the endpoint, an access key and secret in a DynamoDB endpoint's URL, a
SAS token in the alert webhook, a private key in the alert command) — every command must
refuse it without repeating them; and a *clean* one on the local emulators, run with the
canaries in the standard environment variables, including a replica nobody listens on so
lanes fail and their errors reach the state file, ``status`` and the audit trail. Then
stdout, stderr and every file under the test's folder (state, audit, reports, logs) are
searched for each canary and for every 16-character piece of it.
"""

from __future__ import annotations

import base64
import os
import secrets
import string
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _b64(n: int) -> str:
    """Random base64 of ``n`` bytes, with a digit and both cases (as real keys have)."""
    while True:
        text = base64.b64encode(secrets.token_bytes(n)).decode()
        if any(c.isdigit() for c in text) and any(c.islower() for c in text) and any(c.isupper() for c in text):
            return text


def _aws_secret(length: int) -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    while True:
        text = "".join(secrets.choice(alphabet) for _ in range(length))
        if any(c.isdigit() for c in text) and any(c.islower() for c in text) and any(c.isupper() for c in text):
            return text


CANARY = {
    "aws_key_id": "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
    "aws_secret": _aws_secret(40),
    "aws_secret_long": _aws_secret(48),              # "any length", not only 40
    "cosmos_key": _b64(64),
    "audit_key": _b64(32),
    "config_account_key": _b64(64),
    "config_url_password": _aws_secret(36),
    "config_sas_sig": _b64(32).replace("/", "%2F").replace("+", "%2B"),
    "config_pem_body": _b64(48),
}


#: unique dataset names: the session's emulators are shared by every test (local seed takes no namespace)
PEOPLE, ORDERS = f"people-{secrets.token_hex(3)}", f"orders-{secrets.token_hex(3)}"


def _pem() -> str:
    return f"-----BEGIN PRIVATE KEY-----\n{CANARY['config_pem_body']}\n-----END PRIVATE KEY-----"


def _clean_config(tmp: Path) -> dict[str, Any]:
    return {
        "version": 1, "profile": "local", "state_dir": str(tmp / "state"),
        "providers": {"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local"},
                      "gcs": {"endpoint": "local", "auth": "anonymous"}},
        "datasets": {
            PEOPLE: {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1",
                       "replicas": ["cosmos:westeurope", "gcs:europe-west1"]},
            # a replica nobody listens on: its lane fails and its error is stored and shown
            ORDERS: {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1",
                       "replicas": [{"at": "dynamodb:eu-central-1", "endpoint": "http://127.0.0.1:9"}]}},
        "sync": {"retry_deadline": "1s", "breaker_failures": 1},
    }


def _dirty_config(tmp: Path) -> dict[str, Any]:
    raw = _clean_config(tmp)
    raw["profile"] = "cloud"
    raw["providers"] = {
        "cosmos": {"endpoint": "AccountEndpoint=https://people.documents.azure.com:443/;"
                               f"AccountKey={CANARY['config_account_key']};"},
        "dynamodb": {"endpoint": f"https://{CANARY['aws_key_id']}:{CANARY['config_url_password']}"
                                 "@dynamodb.eu-west-1.amazonaws.com"},
        "gcs": {}}
    raw["verify"] = {"alert": {"webhook": "https://hooks.example.com/mcrepl?sv=2022-11-02&sp=w&sig="
                                          f"{CANARY['config_sas_sig']}", "command": f"notify '{_pem()}'"}}
    return raw


def _env(tmp: Path, endpoints: dict[str, str]) -> dict[str, str]:
    import json
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MCREPL_", "OTEL_"))}
    env.update({
        "AWS_ACCESS_KEY_ID": CANARY["aws_key_id"], "AWS_SECRET_ACCESS_KEY": CANARY["aws_secret"],
        "AWS_SESSION_TOKEN": CANARY["aws_secret_long"], "AWS_DEFAULT_REGION": "eu-west-1",
        "MCREPL_COSMOS_KEY": CANARY["cosmos_key"], "MCREPL_AUDIT_KEY": CANARY["audit_key"],
        "MCREPL_LOCAL_DIR": str(tmp / "local"), "MCREPL_LOCAL_ENDPOINTS": json.dumps(endpoints),
        "COLUMNS": "80",
    })
    return env


def _commands(clean: Path, dirty: Path, tmp: Path) -> dict[str, list[list[str]]]:
    """Every command, each run with the clean config and the dirty one (or its own input)."""
    drill = tmp / "drill.yaml"
    drill.write_text((ROOT / "examples/drills/primary-region-lost.yaml").read_text().replace(
        "eu-central-1", f"{CANARY['aws_key_id']}"))      # refused, and must not echo the canary
    iam_doc = tmp / "iam.json"
    iam_doc.write_text('{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", '
                       f'"Sid": "{CANARY["aws_secret"]}"}}]}}')
    outputs = tmp / "outputs.json"
    outputs.write_text('{"format": "mcrepl-stack/1", "providers": {"cosmos": {"endpoint": '
                       f'"https://a:{CANARY["config_url_password"]}@x.documents.azure.com", "auth": "key", '
                       '"database": "d"}}}')
    both = lambda *args: [[*args, "-c", str(clean)], [*args, "-c", str(dirty)]]  # noqa: E731
    return {
        "validate": [["validate", str(clean)], ["validate", str(dirty)], ["validate", str(dirty), "--format", "json"]],
        # the stores first, so that sync has changes to send (and a lane to fail)
        "local create": [[*a, "--dataset", PEOPLE] for a in both("local", "create")],
        "local seed": [[*a, "--dataset", name, "--count", "3"] for name in (PEOPLE, ORDERS)
                       for a in both("local", "seed")],
        "sync": [["sync", "--once", "-c", str(clean), "--format", "json"], ["sync", "--once", "-c", str(clean),
                 "--log-level", "debug"], ["sync", "--once", "-c", str(dirty), "--log-level", "debug"]],
        "status": [*both("status"), ["status", "-c", str(clean), "--format", "json"]],
        "conflicts list": both("conflicts", "list"),
        "quarantine list": both("quarantine", "list"),
        "audit verify": both("audit", "verify"),
        "audit show": [*both("audit", "show"), ["audit", "show", "-c", str(clean), "--format", "json"]],
        "verify": [*both("verify"), ["verify", "-c", str(clean), "--dataset", PEOPLE, "--format", "json",
                                     "--metrics-file", str(tmp / "verify.prom")]],
        "repair": [[*args, "--dataset", PEOPLE, "--dry-run"] for args in both("repair")],
        # the unreachable replica: refused (its changes cannot be drained), and the dirty config
        "failover promote": [[*args, "--dataset", ORDERS, "--yes"]
                             for args in both("failover", "promote", "dynamodb:eu-central-1")],
        "failover status": [*both("failover", "status"), ["failover", "status", "-c", str(clean), "--format", "json"]],
        "failover fence": [[*args, "--dataset", ORDERS] for args in both("failover", "fence")],
        "failover failback": [[*args, "--dataset", ORDERS, "--yes"] for args in both("failover", "failback")],
        "doctor": [*both("doctor"), ["doctor", "-c", str(clean), "--format", "json"]],
        "local up": [["local", "up", "--services", "nosuch"]],
        "local status": [["local", "status"], ["local", "status", "--format", "json"]],
        "local down": [["local", "down"]],
        "local peek": [[*a, "--dataset", PEOPLE] for a in both("local", "peek")],
        "drill run": [["drill", "run", str(drill), "--report-dir", str(tmp / "drill")]],
        "drill list": [["drill", "list", str(tmp)], ["drill", "list", str(ROOT / "examples/drills"), "--format", "json"]],
        "drill report": [["drill", "report", str(tmp / "drill")]],
        "iam render": both("iam", "render"),
        "iam lint": [["iam", "lint", str(iam_doc)], ["iam", "lint", str(iam_doc), "--format", "json"]],
        "keys init": both("keys", "init"),
        "keys rotate": both("keys", "rotate"),
        "config from-stack": [["config", "from-stack", "--outputs", str(outputs), "-c", str(clean)],
                              ["config", "from-stack", "--outputs", str(outputs), "-c", str(dirty)]],
        "config policy-pack": both("config", "policy-pack"),
        "adapters list": [["adapters", "list"], ["adapters", "list", "--format", "json"]],
        "adapters show": [["adapters", "show", name, "--format", f] for name in ("cosmos", "s3") for f in ("text", "json")],
    }


def _registered() -> set[str]:
    import typer
    from mcrepl.orchestrator.cli import app

    def walk(command: Any, prefix: tuple[str, ...]) -> Iterator[str]:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, (*prefix, name))
        else:
            yield " ".join(prefix)
    return set(walk(typer.main.get_command(app), ()))


def _pieces(secret: str, width: int = 16) -> set[str]:
    return {secret[i:i + width] for i in range(0, max(1, len(secret) - width + 1))}


@pytest.fixture(scope="module")
def endpoints(local_stack: Any) -> dict[str, str]:
    return {name: local_stack.endpoint(name) for name in ("dynamodb", "cosmos", "gcs")}


def test_no_command_ever_writes_a_canary_credential(tmp_path: Path, endpoints: dict[str, str]) -> None:
    clean, dirty = tmp_path / "clean.yaml", tmp_path / "dirty.yaml"
    clean.write_text(yaml.safe_dump(_clean_config(tmp_path)))
    dirty.write_text(yaml.safe_dump(_dirty_config(tmp_path)))
    commands = _commands(clean, dirty, tmp_path)
    assert set(commands) == _registered(), "every command of the CLI is in the canary run (add new ones here)"
    env = _env(tmp_path, endpoints)
    outputs: list[tuple[str, str]] = []
    codes: dict[str, list[int]] = {}
    for name, runs in commands.items():
        for argv in runs:
            done = subprocess.run([sys.executable, "-m", "mcrepl.orchestrator.cli", *argv], capture_output=True,
                                  text=True, env=env, cwd=tmp_path, timeout=180)
            codes.setdefault(name, []).append(done.returncode)
            outputs.append((f"{' '.join(argv)} (stdout)", done.stdout))
            outputs.append((f"{' '.join(argv)} (stderr)", done.stderr))
    # the runs did real work and really failed where they should
    assert codes["sync"][0] == 3 and codes["sync"][2] == 2, codes["sync"]
    assert all(c == 2 for c in (codes["verify"][1], codes["repair"][1], codes["local seed"][1])), codes
    assert (tmp_path / "state" / "state.db").exists() and (tmp_path / "state" / "audit.jsonl").exists()
    report = next(text for label, text in outputs if label.startswith(f"sync --once -c {clean} --format json (stdout"))
    assert '"ok": false' in report and '"caught_up": false' in report, "a lane really failed"
    assert codes["failover promote"] == [2, 2], codes["failover promote"]
    inputs = {clean, dirty, tmp_path / "drill.yaml", tmp_path / "iam.json", tmp_path / "outputs.json"}
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in inputs]
    assert any(p.name == "verify.prom" for p in written), codes["verify"]
    for path in written:                       # state.db, audit.jsonl, keyrings, reports, logs, textfiles
        outputs.append((str(path), path.read_bytes().decode("latin-1")))
    leaks = [(label, name) for label, text in outputs for name, secret in CANARY.items()
             if any(piece in text for piece in _pieces(secret))]
    assert not leaks, f"canary credentials written: {leaks[:10]}"


def test_the_state_file_keeps_lane_errors_redacted(tmp_path: Path) -> None:
    from mcrepl.orchestrator.state import StateStore
    state = StateStore(tmp_path / "state.db")
    state.lanes.record_failure(PEOPLE, "cosmos:westeurope",
                               f"ServiceRequestError: AccountKey={CANARY['cosmos_key']}; at "
                               f"https://{CANARY['aws_key_id']}:{CANARY['aws_secret']}@h/x", False)
    stored = state.lanes.get(PEOPLE, "cosmos:westeurope").last_error or ""
    assert "ServiceRequestError" in stored and "***" in stored
    assert not any(piece in stored for secret in CANARY.values() for piece in _pieces(secret))
    assert not any(piece in (tmp_path / "state.db").read_bytes().decode("latin-1")
                   for secret in CANARY.values() for piece in _pieces(secret))
