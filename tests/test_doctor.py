"""``mcrepl doctor`` on the local stack (issue 14, "Done when").

A healthy topology (DynamoDB primary; DynamoDB, Cosmos DB and GCS replicas; synced,
verified, fencing armed) has no FAIL, and every question an emulator cannot answer is a
SKIP with its reason; disabling the primary table's stream fails and names the table and
the stream; a 10-second offset of this host's clock fails the skew check.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import document
from mcrepl.orchestrator.cli import app
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.doctor import run_doctor

WEST, CENTRAL, COSMOS, GCS = "dynamodb:eu-west-1", "dynamodb:eu-central-1", "cosmos:westeurope", "gcs:europe-west1"


class OffsetClock:
    """This host's clock, ``offset`` seconds off (a badly synchronised host)."""

    def __init__(self, offset: float) -> None:
        import time
        self.offset, self._time = offset, time

    def time(self) -> float:
        return self._time.time() + self.offset

    def monotonic(self) -> float:
        return self._time.monotonic()

    def sleep(self, seconds: float) -> None:
        self._time.sleep(seconds)


@pytest.fixture()
def healthy(local_stack: Any, tmp_path: Path) -> Any:
    endpoints = {name: local_stack.endpoint(name) for name in ("dynamodb", "cosmos", "gcs")}
    dataset = f"dr-{uuid.uuid4().hex[:8]}"
    raw = {"version": 1, "profile": "local", "state_dir": str(tmp_path / "state"),
           "providers": {"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local"},
                         "gcs": {"endpoint": "local", "auth": "anonymous"}},
           "datasets": {dataset: {"key": {"partition": "id"}, "primary": WEST, "replicas": [CENTRAL, COSMOS, GCS]}},
           "policies": {"iam": {"cosmos_auth": "key"}}}
    path = tmp_path / "mcrepl.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = McreplConfig.model_validate(raw)
    stores = {loc: open_adapter(config.target(dataset, loc, endpoints)) for loc in (WEST, CENTRAL, COSMOS, GCS)}
    for store in stores.values():
        store.ensure_ready()
    schema = config.datasets[dataset].key_schema()
    stores[WEST].write_native([document(schema, {"id": f"k{i}", "n": i}) for i in range(10)])
    env = {"MCREPL_LOCAL_ENDPOINTS": json.dumps(endpoints)}

    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, [*args, "-c", str(path)], env=env)
    for args in (("sync", "--once", "--verify"), ("failover", "fence", "-d", dataset)):
        done = cli(*args)
        assert done.exit_code == 0, f"{args}: {done.output}"
    try:
        yield {"cli": cli, "config": config, "endpoints": endpoints, "dataset": dataset, "stores": stores}
    finally:
        for store in stores.values():
            store.drop()
            store.close()


def _checks(result: Any) -> list[dict[str, Any]]:
    assert result.stdout.startswith("["), (result.exit_code, result.output, result.exception)
    return json.loads(result.stdout)


def test_doctor_passes_a_healthy_topology_and_skips_what_emulators_cannot_answer(healthy: Any) -> None:
    result = healthy["cli"]("doctor", "--format", "json")
    checks = _checks(result)
    assert result.exit_code == 0, [c for c in checks if c["status"] == "FAIL"]
    by = {(c["check"], c["where"].split(" ")[-1]): c for c in checks}
    assert by[("stream", WEST)]["status"] == "PASS" and "NEW_AND_OLD_IMAGES" in by[("stream", WEST)]["evidence"]
    assert by[("epoch-record", GCS)]["status"] == "PASS" and by[("epoch-record", COSMOS)]["status"] == "PASS"
    assert by[("credentials", WEST)]["status"] == "PASS"
    assert by[("state-writable", "state")]["status"] == "PASS"
    assert by[("last-verify", healthy["dataset"])]["status"] == "PASS"
    assert {c["check"] for c in checks if c["check"] == "clock-skew" and c["status"] == "PASS"}
    # what moto, the Cosmos emulator and fake-gcs-server cannot answer: SKIP with the reason, never PASS
    for check, where in (("permissions", WEST), ("permissions", GCS), ("permissions", COSMOS),
                         ("versioning", GCS), ("location", GCS), ("regions", COSMOS), ("consistency", COSMOS)):
        assert by[(check, where)]["status"] == "SKIP" and by[(check, where)]["evidence"], (check, where)
    assert "SimulatePrincipalPolicy" in by[("permissions", WEST)]["evidence"]
    table = healthy["cli"]("doctor")
    assert table.exit_code == 0 and "0 FAIL" in table.stdout


def test_a_disabled_stream_fails_naming_the_table_and_the_stream(healthy: Any) -> None:
    table = healthy["stores"][WEST].target.resource
    ddb = boto3.client("dynamodb", endpoint_url=healthy["endpoints"]["dynamodb"], region_name="eu-west-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    ddb.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
    result = healthy["cli"]("doctor", "--format", "json")
    assert result.exit_code == 1
    (failed,) = [c for c in _checks(result) if c["status"] == "FAIL"]
    assert failed["check"] == "stream" and failed["where"].endswith(WEST)
    assert f"table {table}: stream disabled" in failed["evidence"] and "update-table" in failed["fix"]


def test_a_ten_second_clock_offset_fails_the_skew_check(healthy: Any) -> None:
    state = Path(healthy["config"].state_dir) / "state.db"
    checks = run_doctor(healthy["config"], state, local_endpoints=healthy["endpoints"], clock=OffsetClock(10.0))
    skew = [c for c in checks if c.check == "clock-skew"]
    assert len(skew) == 3 and all(c.status == "FAIL" for c in skew), skew
    assert all("-10." in c.evidence or "-9." in c.evidence for c in skew) and "chrony" in skew[0].fix
    fine = run_doctor(healthy["config"], state, local_endpoints=healthy["endpoints"])
    assert all(c.status == "PASS" for c in fine if c.check == "clock-skew")
