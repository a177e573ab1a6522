"""The drill's durable history: every attempted and acknowledged operation, and every event.

One SQLite file per drill run (WAL, ``synchronous=FULL``: each committed row is fsynced,
so a drill killed half-way still leaves a history the checker can read). An operation
row is written *before* the write is sent (``attempted``) and updated with its outcome
afterwards, so a crash between the two leaves an "attempted, outcome unknown" row rather
than nothing. Values are never stored, only their hash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT, writer TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    version TEXT, origin TEXT, epoch INTEGER, value_hash TEXT, target TEXT NOT NULL,
    started REAL NOT NULL, finished REAL, status TEXT NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    at REAL NOT NULL, location TEXT NOT NULL, lag_changes INTEGER NOT NULL, lag_seconds REAL NOT NULL);
"""

#: op statuses: ``attempted`` (sent, no answer yet), ``ok`` (acknowledged), ``failed`` (the
#: store refused or could not be reached: did not land), ``timeout`` (no answer in time:
#: may or may not have landed), ``fenced`` (refused by the split-brain guard before sending)
STATUSES = ("attempted", "ok", "failed", "timeout", "fenced")


@dataclass(frozen=True)
class Op:
    """One operation of the history."""

    id: int
    writer: str
    kind: str                  # insert | update | delete
    key: str
    version: str | None
    origin: str | None
    epoch: int | None
    value_hash: str | None
    target: str
    started: float
    finished: float | None
    status: str
    error: str | None

    @property
    def acknowledged(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Event:
    at: float
    kind: str
    detail: dict[str, Any]


class History:
    """Append-only history of one drill run, safe to use from many threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(SCHEMA)

    def attempt(self, writer: str, kind: str, key: str, version: str | None, origin: str | None,
                epoch: int | None, value_hash: str | None, target: str) -> int:
        """Record an operation about to be sent; returns its id."""
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO ops(writer, kind, key, version, origin, epoch, value_hash, target, started, status) "
                "VALUES (?,?,?,?,?,?,?,?,?, 'attempted')",
                (writer, kind, key, version, origin, epoch, value_hash, target, time.time()))
            return int(cur.lastrowid or 0)

    def finish(self, op_id: int, status: str, error: str | None = None) -> None:
        """Record the outcome of an attempted operation."""
        if status not in STATUSES:
            raise ValueError(f"unknown op status {status!r}; use one of {STATUSES}")
        with self._lock:
            self._conn.execute("UPDATE ops SET status=?, error=?, finished=? WHERE id=?",
                               (status, error, time.time(), op_id))

    def event(self, kind: str, **detail: Any) -> float:
        """Record a drill event (fault, heal, promote, …); returns its time."""
        at = time.time()
        with self._lock:
            self._conn.execute("INSERT INTO events(at, kind, detail) VALUES (?,?,?)",
                               (at, kind, json.dumps(detail, sort_keys=True, default=str)))
        return at

    def sample(self, location: str, lag_changes: int, lag_seconds: float) -> None:
        """Record one replica-lag sample."""
        with self._lock:
            self._conn.execute("INSERT INTO samples(at, location, lag_changes, lag_seconds) VALUES (?,?,?,?)",
                               (time.time(), location, lag_changes, lag_seconds))

    def ops(self) -> list[Op]:
        with self._lock:
            rows = self._conn.execute("SELECT id, writer, kind, key, version, origin, epoch, value_hash, target, "
                                      "started, finished, status, error FROM ops ORDER BY id").fetchall()
        return [Op(*row) for row in rows]

    def events(self) -> list[Event]:
        with self._lock:
            rows = self._conn.execute("SELECT at, kind, detail FROM events ORDER BY id").fetchall()
        return [Event(at, kind, json.loads(detail)) for at, kind, detail in rows]

    def samples(self) -> Iterator[tuple[float, str, int, float]]:
        with self._lock:
            rows = self._conn.execute("SELECT at, location, lag_changes, lag_seconds FROM samples "
                                      "ORDER BY at").fetchall()
        yield from rows

    def close(self) -> None:
        with self._lock:
            self._conn.close()
