"""The local stack: library and CLI start real emulators, the real SDKs reach them, and
nothing they started survives ``stop``/``down`` or an interrupted ``up``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcrepl.orchestrator.localstack import (
    EMULATOR_COSMOS_KEY,
    LocalStack,
    LocalStackError,
    parse_services,
    read_endpoints,
)
from mcrepl.orchestrator.localstack.process import ProcessRef, group_members

MCREPL = str(Path(sys.executable).with_name("mcrepl"))

# the Cosmos DB emulator's certificate is self-signed; the SDK is told not to verify it
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


# -- the real SDKs against an endpoint ------------------------------------------------

def dynamodb_tables(endpoint: str) -> list[str]:
    import boto3
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="eu-west-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    return client.list_tables()["TableNames"]


def s3_buckets(endpoint: str) -> list[str]:
    import boto3
    client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    return [b["Name"] for b in client.list_buckets()["Buckets"]]


def cosmos_databases(endpoint: str) -> list[str]:
    from azure.cosmos import CosmosClient
    key = os.environ.get("MCREPL_COSMOS_KEY", EMULATOR_COSMOS_KEY)
    client = CosmosClient(endpoint, credential=key, connection_verify=False)
    return [db["id"] for db in client.list_databases()]


def gcs_buckets(endpoint: str) -> list[str]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    client = storage.Client(project="mcrepl-test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    return [b.name for b in client.list_buckets()]


SDK_CHECKS = {"dynamodb": dynamodb_tables, "dynamodb-local": dynamodb_tables,
              "cosmos": cosmos_databases, "gcs": gcs_buckets, "s3": s3_buckets}


# -- helpers ------------------------------------------------------------------------

def run_cli(*args: str, local_dir: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = os.environ | {"MCREPL_LOCAL_DIR": str(local_dir), "COLUMNS": "200"}
    return subprocess.run([MCREPL, "local", *args], env=env, capture_output=True, text=True,
                          check=False, timeout=timeout)


def recorded_refs(local_dir: Path) -> dict[str, ProcessRef]:
    state = json.loads((local_dir / "endpoints.json").read_text())
    return {name: ProcessRef.from_dict(entry) for name, entry in state["services"].items()}


def wait_gone(refs: list[ProcessRef], timeout: float = 10) -> list[ProcessRef]:
    """Refs whose process group still has live members after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        alive = [r for r in refs if r.group_alive()]
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.1)


def processes_writing(log_file: Path) -> list[int]:
    """Pids holding ``log_file`` open (every emulator's stdout and stderr go there)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) == str(log_file) for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


# -- library --------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["dynamodb", "dynamodb-local", "cosmos", "gcs"])
def test_fixture_endpoints_answer_real_sdks(local_stack: LocalStack, service: str) -> None:
    endpoint = local_stack.endpoints[service]
    assert isinstance(SDK_CHECKS[service](endpoint), list)


def test_fixture_has_every_endpoint_on_loopback(local_stack: LocalStack) -> None:
    endpoints = local_stack.endpoints
    assert set(endpoints) == {"dynamodb", "dynamodb-local", "cosmos", "gcs", "s3"}
    overridden = {n for n in endpoints if local_stack.running[n].external}
    for name in set(endpoints) - overridden:
        assert endpoints[name].split("://")[1].startswith("127.0.0.1:"), endpoints[name]
    assert endpoints["cosmos"].startswith("https://") or "cosmos" in overridden


def test_library_start_is_lazy_and_stop_kills_process_groups(tmp_path: Path) -> None:
    stack = LocalStack(["dynamodb", "gcs"], work_dir=tmp_path)
    try:
        assert stack.running == {}
        url = stack.endpoint("gcs")
        assert set(stack.running) == {"gcs"}
        assert gcs_buckets(url) == []
        assert dynamodb_tables(stack.endpoints["dynamodb"]) == []
        refs = [svc.ref for svc in stack.running.values()]
        assert all(ref is not None and ref.alive() for ref in refs)
    finally:
        stack.stop()
    assert wait_gone([r for r in refs if r], timeout=0) == []
    assert all(group_members(r.pgid) == [] for r in refs if r)
    stack.stop()  # idempotent


def test_external_endpoint_is_used_as_given_and_never_started(tmp_path: Path) -> None:
    with LocalStack(["gcs"], work_dir=tmp_path, external={"gcs": "http://127.0.0.1:9/"}) as stack:
        assert stack.endpoints == {"gcs": "http://127.0.0.1:9"}
        assert stack.running["gcs"].external
    assert not (tmp_path / "logs").exists()


def test_start_failure_names_service_includes_log_tail_and_cleans_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a deadline too short for any JVM: a real start that cannot answer in time
    monkeypatch.setenv("MCREPL_LOCAL_START_TIMEOUT", "0.01")
    stack = LocalStack(["dynamodb-local"], work_dir=tmp_path)
    with pytest.raises(LocalStackError) as err:
        stack.start()
    assert "dynamodb-local did not answer" in str(err.value)
    assert str(tmp_path / "logs" / "dynamodb-local.log") in str(err.value)
    assert stack.running == {}
    log_file = tmp_path / "logs" / "dynamodb-local.log"
    assert log_file.exists(), "the service was never launched"
    assert processes_writing(log_file) == [], "a process launched for the failed start survived"


def test_unknown_service_names_the_valid_ones() -> None:
    with pytest.raises(LocalStackError, match="choose from dynamodb, cosmos, gcs, s3, dynamodb-local"):
        parse_services("dynamodb,redis")
    assert parse_services(None) == ("dynamodb", "cosmos", "gcs", "s3")
    assert parse_services("gcs, cosmos,gcs") == ("gcs", "cosmos")


def test_read_endpoints_is_none_without_a_stack(tmp_path: Path) -> None:
    assert read_endpoints(tmp_path) is None


# -- CLI ------------------------------------------------------------------------------

def test_cli_up_status_down(tmp_path: Path) -> None:
    up = run_cli("up", local_dir=tmp_path)
    assert up.returncode == 0, up.stderr
    try:
        refs = recorded_refs(tmp_path)
        assert set(refs) == {"dynamodb", "cosmos", "gcs", "s3"}
        endpoints = read_endpoints(tmp_path)
        assert endpoints is not None and set(endpoints) == set(refs)
        for name, url in endpoints.items():
            assert url in up.stdout
            assert isinstance(SDK_CHECKS[name](url), list)

        status = run_cli("status", local_dir=tmp_path)
        assert status.returncode == 0, status.stderr
        assert status.stdout.count(" up ") == 4 and " down " not in status.stdout

        again = run_cli("up", local_dir=tmp_path)
        assert again.returncode == 0 and "already running" in again.stdout
        assert recorded_refs(tmp_path) == refs
    finally:
        down = run_cli("down", local_dir=tmp_path)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert wait_gone(list(refs.values()), timeout=0) == []
    assert not (tmp_path / "endpoints.json").exists()
    status = run_cli("status", local_dir=tmp_path)
    assert status.returncode == 1 and "not running" in status.stderr
    again = run_cli("down", local_dir=tmp_path)
    assert again.returncode == 0 and "not running" in again.stdout


def test_cli_status_exits_1_when_a_service_died(tmp_path: Path) -> None:
    up = run_cli("up", "--services", "gcs", local_dir=tmp_path)
    assert up.returncode == 0, up.stderr
    try:
        ref = recorded_refs(tmp_path)["gcs"]
        os.killpg(ref.pgid, signal.SIGKILL)
        assert wait_gone([ref]) == []
        status = run_cli("status", local_dir=tmp_path)
        assert status.returncode == 1
        assert " down " in status.stdout and "gcs.log" in status.stderr
        assert read_endpoints(tmp_path) is None
    finally:
        run_cli("down", local_dir=tmp_path)


def _children_of(pid: int) -> set[tuple[int, int | None]]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add((int(entry.name), int(fields[19])))
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupted_up_leaves_no_orphans(tmp_path: Path, sig: signal.Signals) -> None:
    env = os.environ | {"MCREPL_LOCAL_DIR": str(tmp_path)}
    up = subprocess.Popen([MCREPL, "local", "up", "--services", "dynamodb,cosmos,gcs,dynamodb-local"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: set[tuple[int, int | None]] = set()
    deadline = time.monotonic() + 60
    # interrupt as soon as all four emulators are launched, while up still waits for them
    while len(children) < 4 and up.poll() is None and time.monotonic() < deadline:
        children |= _children_of(up.pid)
        time.sleep(0.01)
    up.send_signal(sig)
    out, err = up.communicate(timeout=60)
    assert up.returncode == 130, f"up was not interrupted mid-start: {out}{err}"
    assert "interrupted" in err
    assert len(children) == 4
    survivors = wait_gone([ProcessRef(pid, pid, started) for pid, started in children], timeout=5)
    assert survivors == [], f"orphans left behind: {survivors}"
    assert not (tmp_path / "endpoints.json").exists()


def test_cli_up_rejects_unknown_service(tmp_path: Path) -> None:
    result = run_cli("up", "--services", "redis", local_dir=tmp_path)
    assert result.returncode == 2
    assert "unknown service" in result.stderr and "dynamodb-local" in result.stderr


# -- seed and peek through the adapters -------------------------------------------------

SEED_CONFIG = """\
version: 1
profile: local
providers:
  dynamodb: {endpoint: local}
  cosmos: {endpoint: local}
  gcs: {endpoint: local, auth: anonymous}
datasets:
  people:
    key: {partition: person_id}
    primary: dynamodb:eu-west-1
    replicas: [cosmos:westeurope, gcs:europe-west1]
"""


def test_cli_seed_writes_primary_and_peek_reads_every_location(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcrepl.orchestrator.config import load_config
    from mcrepl.orchestrator.localstack.datasets import peek_locations

    config = tmp_path / "mcrepl.yaml"
    config.write_text(SEED_CONFIG)
    local = tmp_path / "local"
    assert run_cli("up", local_dir=local).returncode == 0
    try:
        seed = run_cli("seed", str(config), "--dataset", "people", "--count", "120", local_dir=local)
        assert seed.returncode == 0, seed.stderr
        assert "wrote 120 records to dynamodb:eu-west-1" in seed.stdout

        peek = run_cli("peek", str(config), "--dataset", "people", "--limit", "3", local_dir=local)
        assert peek.returncode == 0, peek.stderr
        assert "dynamodb:eu-west-1 (people): 120 records" in peek.stdout
        for location in ("cosmos:westeurope", "gcs:europe-west1"):
            assert location in peek.stdout

        monkeypatch.setenv("MCREPL_LOCAL_DIR", str(local))
        primary, *replicas = peek_locations(load_config(config), "people", limit=3)
        assert primary.error is None and primary.count == 120
        assert [r.key for r in primary.rows] == ["c-00000000", "c-00000001", "c-00000002"]
        assert all(r.version is None and r.readable for r in primary.rows), "seeded records are native"
        # nothing has synced yet: each replica is either empty or not created, never a crash
        assert [r.replica for r in replicas] == ["cosmos:westeurope", "gcs:europe-west1"]
        assert all(r.count == 0 or (r.missing and r.count is None) for r in replicas), replicas
        assert "not created yet" in peek.stdout or " 0 records" in peek.stdout
    finally:
        run_cli("down", local_dir=local)


def test_endpoints_from_the_environment_win_over_the_stack_file(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from mcrepl.adapters.base import ConfigError
    from mcrepl.orchestrator.localstack import read_endpoints
    monkeypatch.setenv("MCREPL_LOCAL_ENDPOINTS", '{"dynamodb": "http://127.0.0.1:4566"}')
    assert read_endpoints(tmp_path) == {"dynamodb": "http://127.0.0.1:4566"}
    monkeypatch.setenv("MCREPL_LOCAL_ENDPOINTS", "dynamodb=http://x")
    with pytest.raises(ConfigError, match="MCREPL_LOCAL_ENDPOINTS"):
        read_endpoints(tmp_path)


def test_up_restarts_only_the_dead_service_and_says_what_its_restart_lost(tmp_path: Path) -> None:
    up = run_cli("up", "--services", "dynamodb,gcs", local_dir=tmp_path)
    assert up.returncode == 0, up.stderr
    try:
        before = recorded_refs(tmp_path)
        os.killpg(before["dynamodb"].pgid, signal.SIGKILL)
        assert wait_gone([before["dynamodb"]]) == []
        again = run_cli("up", "--services", "dynamodb,gcs", local_dir=tmp_path)
        assert again.returncode == 0, again.stderr
        after = recorded_refs(tmp_path)
        assert after["gcs"] == before["gcs"], "the healthy service is left running, data and all"
        assert after["dynamodb"].pid != before["dynamodb"].pid
        assert "restarted dynamodb" in again.stderr and "in memory" in again.stderr
        assert "left running untouched: gcs" in again.stderr
        assert "gcs" not in again.stderr.split("restarted", 1)[1].split("\n")[0]
        assert isinstance(SDK_CHECKS["dynamodb"](read_endpoints(tmp_path)["dynamodb"]), list)
    finally:
        run_cli("down", local_dir=tmp_path)


def test_cli_create_makes_every_location_empty_and_refuses_real_clouds(tmp_path: Path) -> None:
    config = tmp_path / "mcrepl.yaml"
    config.write_text(SEED_CONFIG)
    local = tmp_path / "local"
    assert run_cli("up", local_dir=local).returncode == 0
    try:
        made = run_cli("create", "-c", str(config), "--dataset", "people", local_dir=local)
        assert made.returncode == 0, made.stderr
        for location in ("dynamodb:eu-west-1", "cosmos:westeurope", "gcs:europe-west1"):
            assert f"ready: people at {location}" in made.stdout
        peek = run_cli("peek", "-c", str(config), "--dataset", "people", "--format", "json", local_dir=local)
        assert peek.returncode == 0, peek.stderr
        assert [(p["replica"], p["count"], p["missing"]) for p in json.loads(peek.stdout)] == [
            ("dynamodb:eu-west-1", 0, False), ("cosmos:westeurope", 0, False), ("gcs:europe-west1", 0, False)]
        assert run_cli("create", "-c", str(config), local_dir=local).returncode == 0, "creating twice is a no-op"
        cloud = tmp_path / "cloud.yaml"
        cloud.write_text(SEED_CONFIG.replace("profile: local", "profile: cloud")
                         .replace("dynamodb: {endpoint: local}",
                                  "dynamodb: {endpoint: 'https://dynamodb.eu-west-1.amazonaws.com'}")
                         .replace("cosmos:westeurope, ", ""))
        refused = run_cli("create", "-c", str(cloud), local_dir=local)
        assert refused.returncode == 2 and "dynamodb:eu-west-1 is not on the local stack" in refused.stderr
    finally:
        run_cli("down", local_dir=local)
