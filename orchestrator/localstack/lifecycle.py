"""A detached local stack that outlives the command that started it.

``up`` starts services through :class:`LocalStack` and records them (endpoint, pid,
process group, start time, log file) in ``endpoints.json`` inside the local dir
(``$MCREPL_LOCAL_DIR``, default ``./.mcrepl/local``). ``status`` and ``down`` work from
that file alone, so they can run in any later process.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mcrepl.adapters.base import ConfigError

from . import process
from .process import ProcessRef
from .stack import LocalStack

ENDPOINTS_FILE = "endpoints.json"


def local_dir() -> Path:
    """Where the detached stack keeps its state, logs and data."""
    return Path(os.environ.get("MCREPL_LOCAL_DIR") or Path.cwd() / ".mcrepl" / "local")


@dataclass(frozen=True)
class ServiceStatus:
    """One recorded service and whether its process still runs."""

    name: str
    endpoint: str
    pid: int
    up: bool
    log_file: str


def _state_file(directory: Path | None) -> Path:
    return (directory or local_dir()) / ENDPOINTS_FILE


def _read_state(directory: Path | None) -> dict | None:
    path = _state_file(directory)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return {"services": {}}  # unreadable: treat as a stack with nothing we can find


def status(directory: Path | None = None) -> list[ServiceStatus] | None:
    """Each recorded service with up/down, or ``None`` when no stack was started."""
    state = _read_state(directory)
    if state is None:
        return None
    result = []
    for name, entry in state.get("services", {}).items():
        ref = ProcessRef.from_dict(entry)
        up_now = ref.alive() and process.answers(entry["endpoint"], timeout=1.0)
        result.append(ServiceStatus(name, entry["endpoint"], ref.pid, up_now, entry.get("log", "")))
    return result


def endpoints_from_env() -> dict[str, str] | None:
    """``$MCREPL_LOCAL_ENDPOINTS`` (a JSON object ``{"dynamodb": URL, ...}``), when set.

    Test fixtures and supervisors that started the emulators themselves pass them this way.
    """
    given = os.environ.get("MCREPL_LOCAL_ENDPOINTS")
    if not given:
        return None
    try:
        return {str(k): str(v) for k, v in json.loads(given).items()}
    except (ValueError, TypeError, AttributeError):
        raise ConfigError("MCREPL_LOCAL_ENDPOINTS is not a JSON object of service → URL",
                          fix='set it like {"dynamodb": "http://127.0.0.1:4566"}') from None


def read_endpoints(directory: Path | None = None) -> dict[str, str] | None:
    """``{service: url}`` of the local stack, or ``None`` if none is running.

    ``$MCREPL_LOCAL_ENDPOINTS`` wins over the file ``mcrepl local up`` writes. Services
    whose process has gone are left out, so a config with ``endpoint: local`` fails early
    with "run 'mcrepl local up'" rather than with a connection error.
    """
    given = endpoints_from_env()
    if given is not None:
        return given
    state = _read_state(directory)
    if not state:
        return None
    live = {name: entry["endpoint"] for name, entry in state.get("services", {}).items()
            if ProcessRef.from_dict(entry).alive()}
    return live or None


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did: every endpoint now, and which services it started or restarted.

    ``restarted`` maps each service that had died and was started again to what its
    restart lost (``None``: its data is on disk and was kept).
    """

    endpoints: dict[str, str]
    started: list[str]
    restarted: dict[str, str | None]
    kept: list[str]


def up(services: Iterable[str], directory: Path | None = None) -> UpResult:
    """Start the requested ``services`` that are not running, detached, and record them.

    Healthy services are never touched (their data stays). A recorded service whose
    process died is started again on its own — the others keep running — and the result
    says what data that restart lost (an in-memory emulator's data is gone with its
    process). On any failure or interrupt, everything this call started is stopped.
    """
    from .services import SERVICES
    directory = directory or local_dir()
    wanted = tuple(services)
    current = status(directory) or []
    dead = [s.name for s in current if not s.up]
    for name in dead:
        _forget(directory, name)
    kept = {s.name: s.endpoint for s in current if s.up}
    missing = [name for name in dict.fromkeys([*dead, *wanted]) if name not in kept]
    if not missing:
        return UpResult(kept, [], {}, list(kept))
    directory.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(missing, work_dir=directory)
    try:
        stack.start()
        _write_state(directory, stack)
    except BaseException:
        stack.stop()
        if not kept:
            _state_file(directory).unlink(missing_ok=True)
        raise
    restarted = {name: SERVICES[name].loses_on_restart for name in dead}
    return UpResult(kept | stack.endpoints, [n for n in missing if n not in dead], restarted, list(kept))


def _forget(directory: Path, name: str) -> None:
    """Drop a dead service from the record, stopping whatever is left of its process group."""
    state = _read_state(directory) or {}
    services = dict(state.get("services", {}))
    entry = services.pop(name, None)
    if entry is not None and ProcessRef.from_dict(entry).group_alive():
        process.stop(ProcessRef.from_dict(entry))
    state["services"] = services
    _save_state(directory, state)


def _write_state(directory: Path, stack: LocalStack) -> None:
    """Add the stack's services to the record (written atomically: temp file + rename)."""
    state = _read_state(directory) or {}
    services = dict(state.get("services", {}))
    for name, svc in stack.running.items():
        assert svc.ref is not None  # a detached stack has no external services
        services[name] = {"endpoint": svc.endpoint, **svc.ref.to_dict(), "log": str(svc.log_file)}
    _save_state(directory, {"created": state.get("created") or datetime.now(UTC).isoformat(timespec="seconds"),
                            "services": services})


def _save_state(directory: Path, state: dict) -> None:
    """Write the record atomically (temp file + rename): a reader never sees half of it."""
    tmp = _state_file(directory).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(_state_file(directory))


def down(directory: Path | None = None) -> list[str]:
    """Stop every recorded service (SIGTERM, then SIGKILL) and remove the record.

    Idempotent: returns the names it stopped ([] when nothing was recorded). Logs are
    kept for inspection; emulator data (in-memory anyway) is removed.
    """
    directory = directory or local_dir()
    state = _read_state(directory)
    if state is None:
        return []
    stopped = []
    for name, entry in state.get("services", {}).items():
        ref = ProcessRef.from_dict(entry)
        if ref.group_alive():
            process.stop(ref)
            stopped.append(name)
    _state_file(directory).unlink(missing_ok=True)
    shutil.rmtree(directory / "data", ignore_errors=True)
    return stopped
