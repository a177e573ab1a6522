"""OpenTelemetry traces of a sync pass: the span tree, its attributes, store calls as children,
``OTEL_TRACES_EXPORTER=console`` on the command line, and trace ids in log lines.

The span names and attributes asserted here are the contract docs/observability.md
documents (and the one a rewritten engine keeps).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import document
from mcrepl.orchestrator.observability import tracing
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine

from .test_sync_helpers import COSMOS, GCS, PRIMARY, MemoryWorld, customer, make_config, raw_config


@pytest.fixture()
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, exporting to memory, for one test (instrumentation undone afterwards)."""
    exporter = InMemorySpanExporter()
    assert tracing.setup_tracing(env={}, exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


def _tree(exporter: InMemorySpanExporter) -> tuple[list[Any], dict[int, Any]]:
    finished = list(exporter.get_finished_spans())
    return finished, {s.context.span_id: s for s in finished}


def _named(finished: list[Any], name: str) -> list[Any]:
    return [s for s in finished if s.name == name]


def test_a_pass_is_one_span_tree_with_dataset_location_counts_and_outcome(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    config = make_config(tmp_path, sync={"batch_size": 10})
    world = MemoryWorld(f"t{uuid.uuid4().hex[:8]}")
    schema = config.datasets["customers"].key_schema()
    world.adapter(config, PRIMARY).write_native([document(schema, customer(i)) for i in range(25)])
    engine = SyncEngine(config, StateStore(tmp_path / "state.db"), adapter_factory=world.factory)
    try:
        report = engine.run_once()
    finally:
        engine.close()
        world.drop()
    assert report.ok
    finished, by_id = _tree(spans)
    (root,) = _named(finished, "mcrepl.sync.pass")
    assert root.parent is None
    assert root.attributes["outcome"] == "ok" and root.attributes["captured"] == 25
    assert root.attributes["lanes"] == 2 and root.attributes["lanes.caught_up"] == 2
    (dataset,) = _named(finished, "mcrepl.sync.dataset")
    assert dataset.parent.span_id == root.context.span_id
    assert {"dataset": "customers", "primary": PRIMARY, "captured": 25, "outcome": "ok",
            "lanes.caught_up": 2}.items() <= dict(dataset.attributes).items()
    pages = _named(finished, "mcrepl.capture.page")
    assert pages and all(p.parent.span_id == dataset.context.span_id for p in pages), \
        "capture pages run in the pass's thread pool and still hang under their dataset"
    assert all(p.attributes["dataset"] == "customers" and p.attributes["location"] == PRIMARY for p in pages)
    assert sum(p.attributes["stamped"] for p in pages) == 25
    batches = _named(finished, "mcrepl.lane.batch")
    assert all(b.parent.span_id == dataset.context.span_id for b in batches)
    applied = {r: sum(b.attributes.get("applied", 0) for b in batches if b.attributes["replica"] == r)
               for r in (COSMOS, GCS)}
    assert applied == {COSMOS: 25, GCS: 25}
    worked = [b for b in batches if b.attributes["outcome"] == "ok" and b.attributes["replica"] in (COSMOS, GCS)]
    assert len(worked) == 6, "25 changes in batches of 10, for each of two lanes"
    # the primary's own lane (settlements only) passes over what was captured from it in one window
    assert sum(b.attributes.get("applied", 0) for b in batches if b.attributes["replica"] == PRIMARY) == 0
    assert all(b.context.trace_id == root.context.trace_id for b in batches)


def test_a_failing_lane_batch_is_an_error_span_with_the_reason(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    config = make_config(tmp_path, sync={"breaker_failures": 1, "retry_deadline": "50ms"})
    world = MemoryWorld(f"t{uuid.uuid4().hex[:8]}")
    schema = config.datasets["customers"].key_schema()
    engine = SyncEngine(config, StateStore(tmp_path / "state.db"), adapter_factory=world.factory)
    try:
        assert engine.run_once().ok                  # every adapter opened; the next failure is in a batch
        spans.clear()
        world.adapter(config, PRIMARY).write_native([document(schema, customer(i)) for i in range(3)])
        world.adapter(config, GCS).down = True
        report = engine.run_once()
    finally:
        engine.close()
        world.drop()
    assert not report.ok
    finished, _ = _tree(spans)
    failed = [b for b in _named(finished, "mcrepl.lane.batch") if b.attributes["outcome"] == "error"]
    assert failed and all(b.attributes["replica"] == GCS for b in failed)
    assert "unreachable" in failed[0].status.description
    (dataset,) = _named(finished, "mcrepl.sync.dataset")
    assert dataset.attributes["outcome"] == "not_caught_up" and dataset.attributes["lanes.caught_up"] == 1


@pytest.fixture(scope="module")
def endpoints(local_stack: Any) -> dict[str, str]:
    return {name: local_stack.endpoint(name) for name in ("dynamodb", "cosmos", "gcs")}


def test_store_calls_are_child_spans_of_the_batch_or_page_that_made_them(
        tmp_path: Path, endpoints: dict[str, str], spans: InMemorySpanExporter) -> None:
    raw = raw_config(tmp_path, providers={"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local"},
                                          "gcs": {"endpoint": "local", "auth": "anonymous"}})
    from mcrepl.orchestrator.config import McreplConfig
    config = McreplConfig.model_validate(raw)
    namespace = f"t{uuid.uuid4().hex[:8]}"
    schema = config.datasets["customers"].key_schema()
    primary = open_adapter(config.target("customers", PRIMARY, endpoints, namespace))
    primary.ensure_ready()
    primary.write_native([document(schema, customer(i)) for i in range(5)])
    engine = SyncEngine(config, StateStore(tmp_path / "state.db"), local_endpoints=endpoints, namespace=namespace)
    try:
        assert engine.run_once().ok
    finally:
        engine.close()
        for location in (COSMOS, GCS):
            with open_adapter(config.target("customers", location, endpoints, namespace)) as adapter:
                adapter.drop()
        primary.drop()
        primary.close()
    finished, by_id = _tree(spans)
    ours = {s.context.span_id: s for s in finished if s.name.startswith("mcrepl.")}

    def owner(s: Any) -> Any:
        while s.parent is not None and s.parent.span_id not in ours:
            s = by_id.get(s.parent.span_id)
            if s is None:
                return None
        return ours.get(s.parent.span_id) if s.parent else None

    calls = [s for s in finished if not s.name.startswith("mcrepl.")]
    dynamo = [s for s in calls if s.attributes.get("rpc.service") == "DynamoDB"]
    assert any(owner(s) is not None and owner(s).name == "mcrepl.capture.page" for s in dynamo), \
        "capture reads of the primary (botocore) hang under the capture page"
    http_under_batches = {owner(s).attributes["replica"] for s in calls
                          if owner(s) is not None and owner(s).name == "mcrepl.lane.batch"
                          and s.attributes.get("http.request.method", s.attributes.get("http.method"))}
    assert http_under_batches == {COSMOS, GCS}, "Cosmos DB and GCS writes (requests) hang under their batch"


def test_log_lines_inside_a_span_carry_its_trace_and_span_ids(spans: InMemorySpanExporter,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from mcrepl.orchestrator.observability.logging import configure_logging
    configure_logging("INFO", json=True)
    try:
        with tracing.span("mcrepl.test", dataset="d") as s:
            logging.getLogger("mcrepl.test").warning("inside")
        logging.getLogger("mcrepl.test").warning("outside")
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_mcrepl", False)]:
            root.removeHandler(handler)
    inside, outside = [json.loads(l) for l in capsys.readouterr().err.splitlines() if l.startswith("{")]
    assert inside["trace_id"] == s.trace_id and len(inside["span_id"]) == 16
    assert "trace_id" not in outside


def test_console_exporter_prints_spans_of_mcrepl_sync_once(tmp_path: Path) -> None:
    """``OTEL_TRACES_EXPORTER=console mcrepl sync --once`` prints each span (to stderr: stdout is
    the command's own output). The memory adapter can't be named in a config, so the pass runs
    against a DynamoDB endpoint nobody listens on: the spans still say what failed."""
    raw = raw_config(tmp_path)
    raw["providers"] = {"dynamodb": {"endpoint": "http://127.0.0.1:9"}, "cosmos": {"endpoint": "https://127.0.0.1:9"},
                        "gcs": {"endpoint": "http://127.0.0.1:9", "auth": "anonymous"}}
    raw["sync"]["retry_deadline"] = "1s"
    path = tmp_path / "mcrepl.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}
    done = subprocess.run([sys.executable, "-m", "mcrepl.orchestrator.cli", "sync", "--once", "-c", str(path),
                           "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 3, done.stderr
    json.loads(done.stdout)                                   # stdout stays the report alone
    assert '"name": "mcrepl.sync.pass"' in done.stderr and '"name": "mcrepl.sync.dataset"' in done.stderr
    assert '"outcome": "capture_failed"' in done.stderr
