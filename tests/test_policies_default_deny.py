"""Default deny at plan time (``mcrepl validate``) and for the capture log.

``validate`` refuses an undeclared classification, a non-ISO country and a Cosmos
failover region outside the data's jurisdiction, each naming the file, the path inside
it and the fix; the capture log is sealed with the dataset's keys wherever the
orchestrator may not hold its plaintext, and a sealed body moved to another row fails.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mcrepl.adapters.base import CredentialsError, PolicyError, UnavailableError, Version, document
from mcrepl.orchestrator.cli import app
from mcrepl.orchestrator.config import McreplConfig, load_config
from mcrepl.adapters.memory import MemoryAdapter
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.state.log import decode_record, encode_record
from mcrepl.orchestrator.sync import SyncEngine
from mcrepl.policies.capture_log import LogCipher, log_cipher_for, log_must_be_sealed
from mcrepl.policies.encryption import LocalKeyring
from mcrepl.policies.residency import country_code, jurisdiction_problem

runner = CliRunner()
CUSTOMERS = {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1", "replicas": ["cosmos:westeurope"]}


def _validate(tmp_path: Path, config: dict) -> tuple[int, str, Path]:
    path = tmp_path / "mcrepl.yaml"
    path.write_text(yaml.safe_dump(config))
    out = runner.invoke(app, ["validate", str(path)])
    return out.exit_code, out.output, path


def test_validate_refuses_an_undeclared_classification_with_file_path_and_fix(tmp_path: Path) -> None:
    code, output, path = _validate(tmp_path, {"datasets": {"customers": {**CUSTOMERS, "classification": "pii-typo"}},
                                              "policies": {"residency": {"classes": {"pii": ["EU"]}}}})
    assert code == 1
    line = next(l for l in output.splitlines() if l.endswith("[residency.classification-declared]"))
    assert line.startswith(f"{path}:datasets.customers.classification: ")
    assert "pii-typo" in line and "(fix: did you mean 'pii'? declare it" in line


def test_validate_refuses_xx_and_a_country_where_a_jurisdiction_belongs(tmp_path: Path) -> None:
    rule = {"datasets": ["customers"], "field": "country", "restrict": ["XX"]}
    code, output, path = _validate(tmp_path, {"datasets": {"customers": CUSTOMERS},
                                              "policies": {"residency": {"records": [rule]}}})
    assert code == 2
    assert f"{path}:policies.residency.records[0].restrict" in output
    assert "'XX' is neither a jurisdiction nor an ISO 3166-1 alpha-2 country code" in output and "(fix: " in output
    assert "write EU" in (jurisdiction_problem("EL") or "") and "EL means GR" in (jurisdiction_problem("EL") or "")
    assert jurisdiction_problem("UK") is None and jurisdiction_problem("EU") is None


def test_validate_refuses_an_eastus_failover_region_for_eu_data(tmp_path: Path) -> None:
    code, output, path = _validate(tmp_path, {
        "datasets": {"customers": {**CUSTOMERS, "classification": "pii"}},
        "policies": {"residency": {"classes": {"pii": ["EU"]}}},
        "provisioning": {"azure": {"failover_regions": ["northeurope", "eastus"]}}})
    assert code == 1
    lines = [l for l in output.splitlines() if l.endswith("[residency.cosmos-failover]")]
    assert len(lines) == 1 and lines[0].startswith(f"{path}:provisioning.azure.failover_regions[1]: ")
    assert "eastus" in lines[0] and "(fix: remove eastus" in lines[0]


def test_validate_refuses_an_undeclared_orchestrator_location_that_is_not_a_place(tmp_path: Path) -> None:
    code, output, _ = _validate(tmp_path, {"datasets": {"customers": CUSTOMERS}, "orchestrator": {"location": "XX"}})
    assert code == 2 and "orchestrator.location" in output and "ISO 3166-1" in output


@pytest.mark.parametrize("value,code", [("DE", "DE"), (" de ", "DE"), ("EL", "GR"), ("UK", "GB"), ("XK", "XK"),
                                        ("XX", None), ("ZZ", None), ("Germany", None), (49, None), (None, None)])
def test_country_codes_are_iso_3166_alpha_2(value: object, code: str | None) -> None:
    assert country_code(value) == code


def _config(tmp_path: Path, location: str | None, mode: str = "auto", **dataset: object) -> McreplConfig:
    return McreplConfig.model_validate({
        "state_dir": str(tmp_path), "orchestrator": {"location": location},
        "datasets": {"customers": {**CUSTOMERS, **dataset}},
        "policies": {"residency": {"classes": {"pii": ["EU"]}}, "encryption": {"capture_log": mode}}})


def test_the_log_is_sealed_exactly_where_the_orchestrator_may_not_hold_plaintext(tmp_path: Path) -> None:
    LocalKeyring.create(tmp_path / "keyring.json")
    assert log_cipher_for(_config(tmp_path, "aws:eu-central-1", classification="pii"), "customers") is None
    assert log_cipher_for(_config(tmp_path, "DE", classification="pii"), "customers") is None
    assert log_cipher_for(_config(tmp_path, None), "customers") is None    # internal data: unrestricted anywhere
    for where in ("aws:us-east-1", "azure:eastus", "US", None):
        config = _config(tmp_path, where, classification="pii")
        assert log_must_be_sealed(config, "customers")
        assert isinstance(log_cipher_for(config, "customers"), LogCipher)
    assert isinstance(log_cipher_for(_config(tmp_path, "aws:eu-west-1", "encrypt"), "customers"), LogCipher)
    with pytest.raises(PolicyError) as info:
        log_cipher_for(_config(tmp_path, "aws:us-east-1", "plaintext", classification="pii"), "customers")
    assert "residency.capture-log" in str(info.value)


def test_per_record_rules_and_classified_fields_count_for_the_log_too(tmp_path: Path) -> None:
    config = McreplConfig.model_validate({
        "state_dir": str(tmp_path), "orchestrator": {"location": "gcp:europe-west1"},
        "datasets": {"people": {**CUSTOMERS, "fields": {"iban": "pii"}}},
        "policies": {"residency": {"classes": {"pii": ["EU"]},
                                   "records": [{"datasets": ["people"], "field": "country", "restrict": ["EU", "CH"]}]}}})
    reasons = log_must_be_sealed(config, "people")
    assert reasons == ["records whose 'country' is in CH may live only in CH"]


def test_encode_and_decode_record_seal_the_log_body_and_bind_it_to_its_row(tmp_path: Path) -> None:
    LocalKeyring.create(tmp_path / "keyring.json")
    cipher = log_cipher_for(_config(tmp_path, None, classification="pii"), "customers")
    assert cipher is not None
    schema = McreplConfig.model_validate({"datasets": {"customers": CUSTOMERS}}).datasets["customers"].key_schema()
    v1, v2 = Version(1_700_000_000_000, 0, "dynamodb:eu-west-1"), Version(1_700_000_000_001, 0, "dynamodb:eu-west-1")
    record = document(schema, {"id": "c1", "email": "a@example.com"}).stamped(v1)
    key, token, meta, kind, body = encode_record(record, cipher)
    assert body is not None and b"a@example.com" not in body and kind == "sealed:doc"
    assert decode_record(key, meta, kind, body, cipher).body == record.body
    other = encode_record(document(schema, {"id": "c2", "email": "b@example.com"}).stamped(v2), cipher)
    with pytest.raises(CredentialsError):                 # c1's sealed body under c2's row
        decode_record(other[0], other[2], kind, body, cipher)
    plain = encode_record(record)                         # without a cipher nothing changes
    assert plain[4] is not None and b"a@example.com" in plain[4]
    assert decode_record(*plain[:1], plain[2], plain[3], plain[4]).body == record.body


def test_a_relative_keyring_path_belongs_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "mcrepl.yaml").write_text(yaml.safe_dump({
        "datasets": {"customers": CUSTOMERS},
        "policies": {"encryption": {"keyring": {"path": "keys/kek.json"}, "datakeys": "keys/datakeys.db"}}}))
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf/mcrepl.yaml"))
    assert config.policies.encryption.keyring.path == str(conf_dir / "keys" / "kek.json")
    assert config.policies.encryption.datakeys == str(conf_dir / "keys" / "datakeys.db")


def test_a_pass_keeps_plaintext_out_of_the_state_file_where_the_log_must_be_sealed(tmp_path: Path) -> None:
    """The engine seals what it logs: the state file never holds the body, the replica gets it whole."""
    LocalKeyring.create(tmp_path / "keyring.json")
    config = _config(tmp_path, "aws:us-east-1", classification="pii")
    config = config.model_copy(update={"sync": config.sync.model_copy(
        update={"breaker_failures": 1, "breaker_reset": timedelta(milliseconds=1)})})
    ns = f"seal{tmp_path.name}"
    down = {"on": True}

    class Replica(MemoryAdapter):
        def apply_batch(self, records):  # type: ignore[no-untyped-def]
            if down["on"]:
                raise UnavailableError("replica down", replica=self.target.replica)
            return super().apply_batch(records)

    def factory(target):  # type: ignore[no-untyped-def]
        return MemoryAdapter(target) if target.replica == "dynamodb:eu-west-1" else Replica(target)

    state = StateStore(tmp_path / "state.db", audit=None)
    engine = SyncEngine(config, state, namespace=ns, adapter_factory=factory)
    schema = config.datasets["customers"].key_schema()
    primary = MemoryAdapter(config.target("customers", "dynamodb:eu-west-1", namespace=ns))
    primary.write_native([document(schema, {"id": f"c{i}", "email": f"secret-{i}@example.com"}) for i in range(5)])
    engine.run_once()                                     # the replica is down: the log keeps the entries
    assert {r["body_kind"] for r in state.db.rows("SELECT body_kind FROM capture_log")} == {"sealed:doc"}
    assert b"secret-" not in (tmp_path / "state.db").read_bytes()
    down["on"] = False
    time.sleep(0.01)                                      # past the breaker's reset: it probes again
    report = engine.run_once()
    assert report.ok, [(lane.replica, lane.reason) for lane in report.datasets["customers"].lanes.values()]
    replica = MemoryAdapter(config.target("customers", "cosmos:westeurope", namespace=ns))
    assert replica.read(schema.parse_id("c3")).body["email"] == "secret-3@example.com"  # type: ignore[union-attr,index]
    engine.close()
    state.close()
