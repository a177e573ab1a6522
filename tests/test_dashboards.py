"""The alert rules and the Grafana dashboard that ship in examples/ work against what mcrepl
really exports: promtool checks and unit-tests the rules, and every metric name any panel
or rule queries is one a live ``/metrics`` endpoint serves after a real pass.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mcrepl.adapters.base import document
from mcrepl.orchestrator.observability.metrics import SyncMetrics, VerifyMetrics
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine

from .test_sync_helpers import GCS, PRIMARY, MemoryWorld, customer, make_config

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "examples/prometheus/alerts.yml"
DASHBOARD = ROOT / "examples/grafana/mcrepl-dashboard.json"
DOCS = ROOT / "docs/observability.md"
#: series Prometheus itself provides (not mcrepl's to export)
PROMETHEUS_OWN = {"up"}


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is not installed: run 'make promtool' (Debian's prometheus package ships it)"
    return found


def test_promtool_checks_the_alert_rules() -> None:
    done = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_show_each_alert_firing_when_it_should() -> None:
    done = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"], capture_output=True, text=True,
                          cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers inside {} are dropped first)."""
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    return {t for t in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if t.startswith("mcrepl") or t in PROMETHEUS_OWN}


def _rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _dashboard_panels() -> list[dict[str, Any]]:
    return json.loads(DASHBOARD.read_text())["panels"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name a live endpoint serves after a real pass, plus verify's textfile."""
    tmp = tmp_path_factory.mktemp("exported")
    config = make_config(tmp, sync={"batch_size": 5})
    world = MemoryWorld(f"d{uuid.uuid4().hex[:8]}")
    schema = config.datasets["customers"].key_schema()
    world.adapter(config, PRIMARY).write_native([document(schema, customer(i)) for i in range(12)])
    metrics = SyncMetrics()
    metrics.prepare({n: [r.at for r in ds.locations] for n, ds in config.datasets.items()})
    metrics.schedule({"customers": 1.0}, grace_s=60)
    engine = SyncEngine(config, StateStore(tmp / "state.db"), adapter_factory=world.factory, metrics=metrics)
    try:
        metrics.observe_pass(engine.run_once(), None, ["customers"])
        _follow_with_heartbeats(engine, metrics)
    finally:
        engine.close()
        world.drop()
    server = metrics.serve(0)
    try:
        text = urllib.request.urlopen(server.url, timeout=5).read().decode()
    finally:
        server.stop()
    verify = VerifyMetrics()
    path = tmp / "verify.prom"
    verify._divergent.labels("customers", "gcs:europe-west1").set(0)
    verify._breached.labels("customers").set(0)
    verify._last_run.labels("customers").set(1)
    verify.write(str(path))
    text += path.read_text()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def _follow_with_heartbeats(engine: SyncEngine, metrics: SyncMetrics) -> None:
    """A few rounds of follow mode until a heartbeat arrived: the series only follow mode exports."""
    from mcrepl.orchestrator.sync.follow import FollowSession
    from mcrepl.orchestrator.sync.follow_lane import FollowTuning
    metrics.lag_objective("customers", 1.0)
    tuning = dataclasses.replace(FollowTuning.of(engine.config, "customers"), heartbeat_s=0.05)
    session = FollowSession(engine, "customers", tuning)
    for _ in range(200):
        session.iterate(1)
        if metrics.value("mcrepl_replication_lag_seconds_count", dataset="customers", replica=GCS) > 0:
            session.maintenance_step()
            return
    raise AssertionError("no heartbeat arrived in 200 rounds of follow mode")


def test_every_dashboard_query_uses_metrics_the_exporter_really_exports(exported: set[str]) -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    for panel in _dashboard_panels():
        for target in panel["targets"]:
            names = _metric_names(target["expr"])
            assert names, f"panel {panel['title']!r} queries no mcrepl metric"
            missing = names - exported - recorded
            assert not missing, f"panel {panel['title']!r} queries {missing}, which nothing exports"


def test_every_alert_rule_uses_metrics_the_exporter_really_exports(exported: set[str]) -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    for rule in _rules():
        missing = _metric_names(rule["expr"]) - exported - recorded - PROMETHEUS_OWN
        assert not missing, f"{rule.get('alert') or rule.get('record')} queries {missing}, which nothing exports"


def test_docs_describe_every_panel_and_every_alert() -> None:
    docs = DOCS.read_text()
    for panel in _dashboard_panels():
        assert f"**{panel['title']}**" in docs, f"docs/observability.md does not describe panel {panel['title']!r}"
        assert panel.get("description"), f"panel {panel['title']!r} has no description"
    for rule in _rules():
        if "alert" in rule:
            assert f"`{rule['alert']}`" in docs, f"docs/observability.md does not describe alert {rule['alert']}"
