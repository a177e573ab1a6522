"""Region catalogue and plan-time residency: every configured region is known, unknown
regions are errors that name the region and the fix, and EU-only data is refused in the US."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import McreplConfig, load_config
from mcrepl.policies.engine import evaluate, policy_errors
from mcrepl.policies.residency import (UnknownRegionError, catalogue, jurisdiction_of, location_jurisdictions,
                                       region_info)

ROOT = Path(__file__).resolve().parent.parent
# mcrepl configs only: drill specs under examples/drills/ are another format (their
# topology's regions are checked by the drill tests)
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "drills" not in p.parts)


def _config(replicas: list[str], classification: str = "pii", policies: dict | None = None,
            **ds_extra: object) -> McreplConfig:
    return McreplConfig.model_validate({
        "profile": "cloud", "providers": {"cosmos": {"auth": "aad"}},
        "datasets": {"customers": {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1",
                                   "replicas": replicas, "classification": classification, **ds_extra}},
        "policies": policies if policies is not None else {"residency": {"classes": {"pii": ["EU"]}}}})


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_region_in_the_example_configs_is_in_the_catalogue(path: Path) -> None:
    config = load_config(path)
    locations = [ref for ds in config.datasets.values() for ref in ds.locations]
    assert locations, "an example without datasets would prove nothing"
    for ref in locations:
        assert region_info(ref.provider, ref.region).jurisdictions, ref.at


def test_catalogue_covers_each_cloud_and_every_country_maps_to_a_jurisdiction() -> None:
    cat = catalogue()
    # the regions each cloud documented as generally available when the file was written
    assert len(cat.regions["aws"]) >= 37 and len(cat.regions["azure"]) >= 60 and len(cat.regions["gcp"]) >= 40
    assert {"us-east-1", "eu-central-2", "ap-southeast-5", "mx-central-1"} <= set(cat.regions["aws"])
    assert {"westeurope", "swedencentral", "italynorth", "newzealandnorth"} <= set(cat.regions["azure"])
    assert {"europe-west10", "me-central2", "africa-south1", "eu"} <= set(cat.regions["gcp"])
    for cloud, table in cat.regions.items():
        for name, info in table.items():
            assert info.countries and all(len(c) == 2 and c.isupper() for c in info.countries), (cloud, name)


@pytest.mark.parametrize("provider,region,expected", [
    ("dynamodb", "eu-central-1", "EU"), ("aws", "us-east-1", "US"), ("dynamodb", "eu-west-2", "UK"),
    ("dynamodb", "eu-central-2", "CH"), ("cosmos", "westeurope", "EU"), ("cosmos", "norwayeast", "EU"),
    ("cosmos", "uksouth", "UK"), ("cosmos", "japaneast", "JP"), ("gcs", "europe-west3", "EU"),
    ("gcs", "EU", "EU"), ("gcs", "eur5", "EU+UK"), ("gcs", "northamerica-northeast1", "CA"),
    ("gcs", "southamerica-east1", "BR"), ("gcp", "asia-southeast1", "SG"),
])
def test_jurisdiction_of(provider: str, region: str, expected: str) -> None:
    assert jurisdiction_of(provider, region) == expected


def test_unknown_region_error_names_the_region_the_close_names_and_the_file() -> None:
    with pytest.raises(UnknownRegionError) as info:
        jurisdiction_of("dynamodb", "eu-wset-1")
    text = str(info.value)
    assert "'eu-wset-1'" in text and "eu-west-1" in text and "policies/data/regions.yaml" in text


def test_unknown_region_in_a_config_is_a_violation_with_its_rule_id() -> None:
    found = evaluate(_config(["cosmos:westeurop"], classification="internal"))
    assert [(v.rule_id, v.resource) for v in found] == [("residency.region-known", "customers@cosmos:westeurop")]
    assert "westeurope" in found[0].fix


def test_eu_only_pii_with_a_us_east_1_replica_is_refused_at_plan_time() -> None:
    found = evaluate(_config(["cosmos:westeurope", "dynamodb:us-east-1"]))
    assert [(v.rule_id, v.resource) for v in found] == [("residency.classification", "customers@dynamodb:us-east-1")]
    assert "EU" in found[0].why and "US" in found[0].why and "us-east-1" in found[0].fix


def test_the_same_topology_inside_the_eu_is_clean() -> None:
    assert evaluate(_config(["cosmos:westeurope", "gcs:europe-west3", "dynamodb:eu-north-1"])) == []


def test_a_multi_region_spanning_a_forbidden_jurisdiction_is_refused() -> None:
    found = evaluate(_config(["gcs:eur5"]))        # Belgium + London: EU and UK
    assert [v.rule_id for v in found] == ["residency.classification"]
    assert evaluate(_config(["gcs:eur5"], policies={"residency": {"classes": {"pii": ["EU", "UK"]}}})) == []


def test_unknown_jurisdiction_or_dataset_in_the_policy_is_a_config_error_not_a_finding() -> None:
    bad = _config(["gcs:europe-west3"], policies={"residency": {"classes": {"pii": ["EUROPE"]}},
                                                   "encryption": {"fields": [{"dataset": "nope", "fields": ["x"]}]}})
    errors = policy_errors(bad)
    assert {e.path for e in errors} == {"policies.residency.classes.pii", "policies.encryption.fields[0].dataset"}
    with pytest.raises(ConfigError) as info:
        evaluate(bad)
    assert "EUROPE" in str(info.value) and "nope" in str(info.value)


def test_encrypting_a_key_field_is_refused_as_a_config_error() -> None:
    bad = _config(["gcs:europe-west3"], policies={"encryption": {"fields": [{"dataset": "customers",
                                                                              "fields": ["id", "email"]}]}})
    assert [e.path for e in policy_errors(bad)] == ["policies.encryption.fields[0].fields"]


def test_location_jurisdictions_of_a_replica_name() -> None:
    assert location_jurisdictions("gcs:asia") >= {"JP", "SG", "IN"}
    assert yaml.safe_load((ROOT / "policies/data/regions.yaml").read_text())["jurisdictions"]["EU"]["countries"]
