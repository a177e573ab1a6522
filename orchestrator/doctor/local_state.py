"""Doctor checks of the orchestrator's own state: the state file, its locks, each lane, the last verify."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.runlock import holder
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync.status import lane_status

from .model import Check


def state_checks(config: McreplConfig, path: Path, now: float) -> tuple[list[Check], StateStore | None]:
    """Writable, not locked by a running command; then the lanes and verifies it records."""
    where = "state"
    try:
        state = StateStore(path)
        with state.transaction():
            state.set_meta("doctor_probe_at", repr(now))
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        return [Check("FAIL", "state-writable", where, f"{path}: {type(exc).__name__}: {exc}",
                      f"make {path.parent} writable by this user, on a local disk")], None
    checks = [Check("PASS", "state-writable", where, f"{path} opened and written")]
    checks.append(_write_lock(path))
    who = holder(config.state_dir)
    checks.append(Check("WARN", "failover-lock", where, f"held by {who}", "wait for that failover command to end")
                  if who else Check("PASS", "failover-lock", where, "free"))
    checks += lane_checks(config, state, now)
    checks += verify_checks(config, state, now)
    return checks, state


def _write_lock(path: Path) -> Check:
    """Whether another process (a running sync) holds the state file's write lock right now."""
    conn = sqlite3.connect(str(path), timeout=0.5, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return Check("PASS", "state-lock", "state", "no other process is writing the state file")
    except sqlite3.OperationalError as exc:
        return Check("WARN", "state-lock", "state", f"another process holds the write lock ({exc}): a sync "
                     "is running", "run one sync per state file; doctor's state checks are then a snapshot")
    finally:
        conn.close()


def lane_checks(config: McreplConfig, state: StateStore, now: float) -> list[Check]:
    """Lag against the failover bounds and the breaker, per lane."""
    checks = []
    bounds = config.failover
    for row in lane_status(config, state, now=now):
        where = f"{row['dataset']} {row['replica']}"
        if row["breaker"] != "closed":
            checks.append(Check("FAIL", "lane", where, f"breaker {row['breaker']}: {row['last_error']}",
                                "make the replica reachable; 'mcrepl status' shows the lane's error"))
            continue
        over = (bounds.max_lag_changes is not None and row["lag_changes"] > bounds.max_lag_changes) or \
            (bounds.max_lag is not None and row["lag_seconds"] > bounds.max_lag.total_seconds())
        evidence = f"{row['lane']}, lag {row['lag_changes']} changes / {row['lag_seconds']}s, breaker closed"
        if over or row["lane"] != "attached" or row["last_error"]:
            checks.append(Check("WARN", "lane", where, evidence + (f", last error {row['last_error']}"
                                                                   if row["last_error"] else ""),
                                "run 'mcrepl sync --once' and check 'mcrepl status'"))
        else:
            checks.append(Check("PASS", "lane", where, evidence))
    return checks


def verify_checks(config: McreplConfig, state: StateStore, now: float) -> list[Check]:
    """The last comparison of the copies, per dataset: its verdict and its age."""
    checks = []
    for name in config.datasets:
        last: dict[str, Any] | None = state.last_verify(name)
        fix = f"mcrepl verify --dataset {name}"
        if last is None:
            checks.append(Check("WARN", "last-verify", name, "the copies have never been compared", fix))
            continue
        age = now - float(last["finished_at"])
        evidence = f"{'converged' if last['converged'] else 'divergent'} ({last['divergent']} keys), {age:.0f}s ago"
        if not last["converged"]:
            checks.append(Check("FAIL", "last-verify", name, evidence, f"mcrepl repair --dataset {name}"))
        elif age > config.failover.verify_max_age.total_seconds():
            checks.append(Check("WARN", "last-verify", name, evidence + " (older than failover.verify_max_age)", fix))
        else:
            checks.append(Check("PASS", "last-verify", name, evidence))
    return checks


__all__ = ["lane_checks", "state_checks", "verify_checks"]
