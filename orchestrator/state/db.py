"""The SQLite connection behind the state store: WAL mode, one writer, atomic transactions.

Why these settings: WAL lets ``mcrepl status`` read while a sync writes;
``synchronous=FULL`` makes every committed transaction survive a crash of the process
(SIGKILL) and of the machine; ``BEGIN IMMEDIATE`` takes the write lock up front so two
processes sharing one state file never deadlock half-way through a transaction.

The schema carries its version; a file written by an older mcrepl is migrated in place
(columns and tables are only ever added), so upgrading never loses a checkpoint.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clock (name TEXT PRIMARY KEY, wall_ms INTEGER NOT NULL, counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS primary_pointer (
    dataset TEXT PRIMARY KEY, location TEXT NOT NULL, epoch INTEGER NOT NULL, changed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS primary_history (
    dataset TEXT NOT NULL, epoch INTEGER NOT NULL, location TEXT NOT NULL, started_at REAL NOT NULL,
    PRIMARY KEY (dataset, epoch));
CREATE TABLE IF NOT EXISTS datasets (
    dataset TEXT PRIMARY KEY, head_seq INTEGER NOT NULL DEFAULT 0,
    captured_total INTEGER NOT NULL DEFAULT 0, echo_total INTEGER NOT NULL DEFAULT 0,
    last_capture_at REAL, last_purge_at REAL);
CREATE TABLE IF NOT EXISTS capture_cursor (
    dataset TEXT NOT NULL, location TEXT NOT NULL, cursor TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (dataset, location));
CREATE TABLE IF NOT EXISTS capture_log (
    dataset TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, token TEXT NOT NULL,
    meta TEXT NOT NULL, body_kind TEXT NOT NULL, body BLOB, captured_at REAL NOT NULL,
    PRIMARY KEY (dataset, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (
    dataset TEXT NOT NULL, key_id TEXT NOT NULL, meta TEXT NOT NULL, covered_ms INTEGER,
    PRIMARY KEY (dataset, key_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lanes (
    dataset TEXT NOT NULL, replica TEXT NOT NULL, offset INTEGER NOT NULL DEFAULT 0,
    last_applied_at REAL, last_error TEXT, last_error_at REAL,
    breaker_failures INTEGER NOT NULL DEFAULT 0, breaker_opened_at REAL,
    applied INTEGER NOT NULL DEFAULT 0, replayed INTEGER NOT NULL DEFAULT 0,
    stale INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
    withheld INTEGER NOT NULL DEFAULT 0, conflicts INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0, batches INTEGER NOT NULL DEFAULT 0,
    last_purge_at REAL,
    PRIMARY KEY (dataset, replica));
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, key_id TEXT NOT NULL,
    replica TEXT NOT NULL, incoming TEXT NOT NULL, stored TEXT NOT NULL, winner TEXT NOT NULL,
    resolver TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, key_id TEXT NOT NULL,
    replica TEXT NOT NULL, version TEXT NOT NULL, rule TEXT NOT NULL, field TEXT,
    message TEXT NOT NULL, at REAL NOT NULL, UNIQUE (dataset, key_id, replica, version));
CREATE TABLE IF NOT EXISTS audit_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS capture_staging (
    dataset TEXT NOT NULL, location TEXT NOT NULL, n INTEGER NOT NULL, change BLOB NOT NULL,
    PRIMARY KEY (dataset, location, n)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held_snapshot (
    dataset TEXT NOT NULL, location TEXT NOT NULL, key_id TEXT NOT NULL, captured TEXT, delivered TEXT,
    PRIMARY KEY (dataset, location, key_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unheld (
    dataset TEXT NOT NULL, location TEXT NOT NULL, key_id TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (dataset, location, key_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS verify_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL NOT NULL, converged INTEGER NOT NULL, divergent INTEGER NOT NULL,
    repaired INTEGER NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partition_leases (
    dataset TEXT NOT NULL, partition TEXT NOT NULL, owner TEXT NOT NULL, token INTEGER NOT NULL,
    taken_at REAL NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (dataset, partition)) WITHOUT ROWID;
"""

# columns added since schema 1 (ALTER TABLE ADD COLUMN keeps existing rows and checkpoints)
_ADDED_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "datasets": [("horizon_seq", "INTEGER NOT NULL DEFAULT 0"), ("origins", "TEXT NOT NULL DEFAULT '[]'"),
                 ("verify_requested_at", "REAL"), ("capture_drains", "INTEGER NOT NULL DEFAULT 0")],
    "capture_log": [("source", "TEXT NOT NULL DEFAULT 'capture'"), ("location", "TEXT"),
                    ("epoch", "INTEGER NOT NULL DEFAULT 0"), ("retract", "TEXT")],
    "heads": [("tombstone", "INTEGER NOT NULL DEFAULT 0"), ("wall_ms", "INTEGER NOT NULL DEFAULT 0"),
              ("allowed", "TEXT"), ("captured", "TEXT"), ("seq", "INTEGER NOT NULL DEFAULT 0"),
              ("delivered", "TEXT")],
    "lanes": [("attached_epoch", "INTEGER"), ("caught_up_at", "REAL"),
              ("retracted", "INTEGER NOT NULL DEFAULT 0")],
    "conflicts": [("stored_token", "TEXT"), ("incoming_token", "TEXT"), ("resolution", "TEXT"),
                  ("note", "TEXT"), ("others", "TEXT")],
}

_INDEXES = """
DROP INDEX IF EXISTS conflicts_once;
CREATE UNIQUE INDEX IF NOT EXISTS conflicts_pair ON conflicts(dataset, key_id, stored_token, incoming_token);
CREATE INDEX IF NOT EXISTS heads_tombstones ON heads(dataset, tombstone, wall_ms);
CREATE INDEX IF NOT EXISTS capture_log_key ON capture_log(dataset, key, seq);
CREATE INDEX IF NOT EXISTS verify_runs_dataset ON verify_runs(dataset, id);
"""


class Database:
    """One SQLite file shared by every thread of a process.

    All statements run under one re-entrant lock, so a thread's transaction is never
    interleaved with another thread's statements; nested :meth:`transaction` blocks join
    the outer one and commit with it.

    ``durable=False`` (the simulation only) trades ``synchronous=FULL`` for speed: a
    simulated crash drops Python objects, never the operating system's page cache.
    """

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                     timeout=30.0)
        self._lock = threading.RLock()
        self._depth = 0
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.executescript(SCHEMA)
            self._migrate()
            self._conn.executescript(_INDEXES)

    def _migrate(self) -> None:
        """Add what newer schema versions added; record the version reached."""
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns:
                if name not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        self._conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block atomically: everything in it commits together or not at all."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement (joins the caller's transaction when there is one); rows changed."""
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One write statement over many parameter rows."""
        with self._lock:
            self._conn.executemany(sql, rows)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """All rows of a read query, as name-addressable rows."""
        with self._lock:
            cur = self._conn.execute(sql, params)
            # typeshed types the factory's second argument as Row; sqlite3 passes the raw tuple
            cur.row_factory = sqlite3.Row  # type: ignore[assignment]
            return cur.fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        """The first row of a read query, or ``None``."""
        found = self.rows(sql, params)
        return found[0] if found else None

    def close(self) -> None:
        """Close the connection (pending work was already committed by transactions)."""
        with self._lock:
            self._conn.close()
