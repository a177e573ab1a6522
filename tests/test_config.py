"""mcrepl.yaml validation: errors name the file, the path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import load_config, parse_duration

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LOCAL = {"dynamodb": "http://127.0.0.1:1", "cosmos": "https://127.0.0.1:2", "gcs": "http://127.0.0.1:3"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mcrepl.yaml"
    path.write_text(text)
    return path


def test_example_config_loads_and_resolves_targets() -> None:
    cfg = load_config(EXAMPLES / "mcrepl.yaml")
    targets = cfg.targets("customers", LOCAL)
    assert [t.replica for t in targets] == ["dynamodb:eu-west-1", "cosmos:westeurope", "gcs:europe-west1"]
    assert targets[0].options["endpoint"] == LOCAL["dynamodb"]
    assert targets[1].options["database"] == "mcrepl-westeurope", "one emulator: a database per region"
    assert targets[2].resource == "mcrepl-customers-europe-west1"


def test_every_resolved_target_carries_the_configured_retry_deadline(tmp_path: Path) -> None:
    """Not only the sync engine's: ``failover fence``, ``doctor`` and ``verify`` open their stores
    from these targets, and against an unreachable replica they used to retry for the default
    60 s whatever ``sync.retry_deadline`` said."""
    from mcrepl.adapters.base.retry import policy_for
    raw = yaml.safe_load((EXAMPLES / "mcrepl.yaml").read_text())
    raw.setdefault("sync", {})["retry_deadline"] = "3s"
    cfg = load_config(write(tmp_path, yaml.safe_dump(raw)))
    for target in cfg.targets("customers", LOCAL):
        assert policy_for(target.options).deadline_s == 3.0, target.replica


@pytest.mark.parametrize("body, path, words", [
    ("datasets:\n  c:\n    primary: dynamo:eu\n    replicas: [gcs:eu]\n    key: {partition: id}\n",
     "datasets.c.primary.at", "unknown provider 'dynamo'"),
    ("datasets:\n  c:\n    primary: dynamodb\n    replicas: [gcs:eu]\n    key: {partition: id}\n",
     "datasets.c.primary.at", "not provider:region"),
    ("datasets:\n  c:\n    primary: dynamodb:x\n    replicas: [gcs:eu]\n",
     "datasets.c", "needs 'key: {partition: FIELD}'"),
    ("datasets:\n  c:\n    primary: dynamodb:x\n    replicas: [gcs:eu]\n    key: {partition: id}\n    colour: red\n",
     "datasets.c.colour", "remove it"),
    ("datasets:\n  c:\n    primary: dynamodb:x\n    replicas: [gcs:eu]\n    key: {partition: id}\n"
     "    schedule: {every: 5x}\n", "datasets.c.schedule.every", "not a duration"),
    ("datasets:\n  c:\n    primary: dynamodb:x\n    replicas: [gcs:eu]\n    key: {partition: id}\n"
     "    schedule: {cron: 'every day'}\n", "datasets.c.schedule.cron", "not a valid cron"),
    # croniter accepted six fields (seconds); APScheduler, which runs the schedule, refuses them
    ("datasets:\n  c:\n    primary: dynamodb:x\n    replicas: [gcs:eu]\n    key: {partition: id}\n"
     "    schedule: {cron: '*/5 * * * * *'}\n", "datasets.c.schedule.cron", "expected 5"),
    ("datasets:\n  c:\n    primary: dynamodb:x\n    replicas: [gcs:eu, dynamodb:x]\n    key: {partition: id}\n",
     "datasets.c.replicas[1]", "is the primary and is also listed as a replica"),
    ("datasets:\n  c:\n    primary: dynamodb:x\n    replicas: [gcs:eu, dynamodb:y, gcs:eu]\n"
     "    key: {partition: id}\n", "datasets.c.replicas[2]", "listed twice, as replicas[0] and replicas[2]"),
    ("datasets:\n  c:\n    primary: dynamodb:x\n    replicas: [gcs:eu, {at: 'dynamodb:y', endpoint: 5}]\n"
     "    key: {partition: id}\n", "datasets.c.replicas[1].endpoint", "valid string"),
    ("datasets:\n  c:\n    primary: dynamodb:x\n    replicas: [gcs:eu]\n    key: {partition: id}\n"
     "sync: {tombstone_retention: 1d, max_replica_outage: 2d}\n", "sync", "resurrect"),
])
def test_errors_name_file_path_and_fix(tmp_path: Path, body: str, path: str, words: str) -> None:
    cfg = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert f"{cfg}:{path}:" in text and words in text


@pytest.mark.parametrize("providers, path, variable", [
    ({"cosmos": {"endpoint": "AccountEndpoint=https://acc.documents.azure.com:443/;AccountKey=c2VjcmV0a2V5"}},
     "providers.cosmos.endpoint", "MCREPL_COSMOS_KEY"),
    ({"cosmos": {"endpoint": "AccountEndpoint=https://a.documents.azure.com:443/;AccountKey=x", "key_env": "K2"}},
     "providers.cosmos.endpoint", "K2"),
    ({"dynamodb": {"endpoint": "https://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCY@dynamodb.example.com"}},
     "providers.dynamodb.endpoint", "AWS_SECRET_ACCESS_KEY"),
    ({"gcs": {"endpoint": "https://user:pw@storage.example.com"}}, "providers.gcs.endpoint",
     "GOOGLE_APPLICATION_CREDENTIALS"),
])
def test_credentials_in_endpoints_are_refused_naming_the_variable(tmp_path: Path, providers: dict, path: str,
                                                                   variable: str) -> None:
    body = {"providers": providers, "datasets": {"cc": {"primary": "dynamodb:eu-west-1", "replicas": ["gcs:eu"],
                                                        "key": {"partition": "id"}}}}
    cfg = write(tmp_path, yaml.safe_dump(body))
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert f"{cfg}:{path}:" in text and variable in text
    assert "AccountKey=" not in text and "pw@" not in text and "wJalr" not in text, "the secret is not repeated"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(write(tmp_path, "datasets:\n  c: [unclosed\n"))


def test_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="examples/mcrepl.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_local_endpoint_without_stack_says_run_local_up() -> None:
    cfg = load_config(EXAMPLES / "mcrepl.yaml")
    with pytest.raises(ConfigError, match="mcrepl local up"):
        cfg.targets("customers", None)


def test_durations() -> None:
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("7d").days == 7
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_dumped_config_loads_back_unchanged(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLES / "mcrepl.yaml")
    path = write(tmp_path, yaml.safe_dump(cfg.model_dump(mode="json")))
    assert load_config(path) == cfg


def test_relative_state_dir_belongs_to_the_config_file(tmp_path: Path) -> None:
    body = "state_dir: st\ndatasets:\n  cc:\n    primary: dynamodb:x\n    replicas: [gcs:eu]\n    key: {partition: id}\n"
    assert load_config(write(tmp_path, body)).state_dir == str(tmp_path / "st")


def test_long_bucket_names_stay_valid_and_distinct_per_region() -> None:
    from mcrepl.orchestrator.config import bucket_name
    a = bucket_name("mcrepl", "a-very-long-dataset-name-that-goes-on-and-on-and-on", "europe-west1")
    b = bucket_name("mcrepl", "a-very-long-dataset-name-that-goes-on-and-on-and-on", "europe-west4")
    assert a != b and len(a) <= 63 and len(b) <= 63 and a.endswith("europe-west1")
    assert bucket_name("mcrepl", "orders", "us-east1") == "mcrepl-orders-us-east1"


def test_per_location_local_endpoint_uses_the_local_stack(tmp_path: Path) -> None:
    body = ("datasets:\n  cc:\n    primary: {at: 'dynamodb:x', endpoint: local}\n    replicas: [gcs:eu]\n"
            "    key: {partition: id}\n")
    cfg = load_config(write(tmp_path, body))
    assert cfg.uses_local_stack()
    assert cfg.target("cc", "dynamodb:x", LOCAL).options["endpoint"] == LOCAL["dynamodb"]


def test_two_cosmos_regions_on_one_real_account_are_refused(tmp_path: Path) -> None:
    body = ("datasets:\n  cc:\n    primary: cosmos:westeurope\n    replicas: [cosmos:northeurope]\n"
            "    key: {partition: id}\n")
    with pytest.raises(ConfigError, match="own 'endpoint'"):
        load_config(write(tmp_path, body))
