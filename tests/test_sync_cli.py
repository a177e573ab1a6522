"""``mcrepl status``, ``conflicts list`` and ``quarantine list`` read the state file alone."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import yaml
from typer.testing import CliRunner

from mcrepl.adapters.base import document
from mcrepl.orchestrator.cli import app
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine

from .test_sync_helpers import COSMOS, GCS, MemoryWorld, PRIMARY, customer, make_config, raw_config


def test_status_conflicts_and_quarantine_commands(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    config_file = tmp_path / "mcrepl.yaml"
    config_file.write_text(yaml.safe_dump(raw_config(tmp_path)))
    world = MemoryWorld(f"c{uuid.uuid4().hex[:8]}")
    try:
        schema = config.datasets["customers"].key_schema()
        world.adapter(config, GCS).reject_field = "ssn"
        world.adapter(config, PRIMARY).write_native([document(schema, customer(i)) for i in range(5)]
                                                    + [document(schema, customer(9, ssn="secret-value"))])
        state = StateStore(Path(config.state_dir) / "state.db")
        SyncEngine(config, state, adapter_factory=world.factory).run_once()
        runner = CliRunner()
        status = runner.invoke(app, ["status", "--config", str(config_file), "--format", "json"])
        assert status.exit_code == 0, status.output
        rows = {r["replica"]: r for r in json.loads(status.output)}
        assert set(rows) == {COSMOS, GCS} and rows[GCS]["quarantined"] == 1 and rows[COSMOS]["lag_changes"] == 0
        table = runner.invoke(app, ["status", "--config", str(config_file)], env={"COLUMNS": "200"})
        assert table.exit_code == 0 and "customers" in table.output
        quarantine = runner.invoke(app, ["quarantine", "list", "--config", str(config_file), "--format", "json"])
        (row,) = json.loads(quarantine.output)
        assert row["key_id"] == "c00009" and row["field"] == "ssn"
        assert "secret-value" not in quarantine.output
        conflicts = runner.invoke(app, ["conflicts", "list", "--config", str(config_file), "--dataset", "customers"],
                                  env={"COLUMNS": "200"})
        assert conflicts.exit_code == 0 and "conflicts (0)" in conflicts.output
    finally:
        world.drop()


def test_sync_needs_exactly_one_of_once_schedule_follow(tmp_path: Path) -> None:
    for flags in ([], ["--once", "--follow"], ["--schedule", "--follow"]):
        result = CliRunner().invoke(app, ["sync", "--config", str(tmp_path / "missing.yaml"), *flags])
        assert result.exit_code == 2 and "exactly one of --once, --schedule or --follow" in result.output, flags


def test_scheduler_has_one_non_overlapping_job_per_dataset(tmp_path: Path) -> None:
    from mcrepl.orchestrator.sync.schedule import build_scheduler
    config = make_config(tmp_path)
    scheduler = build_scheduler(object(), config)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"sync:customers", "heartbeat:customers"}
    job = jobs["sync:customers"]
    assert job.max_instances == 1 and job.coalesce is True
    assert job.trigger.interval.total_seconds() == 1.0
    # the heartbeat beside the passes, every sync.heartbeat (1 s by default), never overlapping itself
    beat = jobs["heartbeat:customers"]
    assert beat.max_instances == 1 and beat.trigger.interval.total_seconds() == 1.0


def test_scheduler_leaves_followed_datasets_to_the_follower(tmp_path: Path) -> None:
    from mcrepl.orchestrator.config import McreplConfig
    from mcrepl.orchestrator.sync.schedule import build_scheduler
    raw = raw_config(tmp_path)
    raw["datasets"]["orders"] = {**raw["datasets"]["customers"], "sync": {"mode": "follow"}}
    scheduler = build_scheduler(object(), McreplConfig.model_validate(raw))
    assert [job.id for job in scheduler.get_jobs()] == ["sync:customers", "heartbeat:customers"]


def test_piped_tables_show_every_cell_whole_and_escape_control_characters(tmp_path: Path) -> None:
    """``mcrepl status -c … | cat``: no 80-column squeeze, no cut error text, ``\\r`` shown as ``\\r``."""
    import subprocess
    import sys
    config_file = tmp_path / "mcrepl.yaml"
    config_file.write_text(yaml.safe_dump(raw_config(tmp_path)))
    config = make_config(tmp_path)
    state = StateStore(Path(config.state_dir) / "state.db")
    error = "UnavailableError: " + " ".join(f"word{i}" for i in range(60)) + " bad\rcr\x1b[31m"
    state.lanes.record_failure("customers", GCS, error, opened=True)
    done = subprocess.run([sys.executable, "-m", "mcrepl.orchestrator.cli", "status", "-c", str(config_file)],
                          capture_output=True, text=True, env={**__import__("os").environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if GCS in line)
    assert "word0 word1" in row and "word59" in row, "the whole error on the lane's one line"
    assert "bad\\rcr\\x1b[31m" in row and "\r" not in done.stdout and "\x1b" not in done.stdout
    assert "customers" in row and "dat…" not in done.stdout
