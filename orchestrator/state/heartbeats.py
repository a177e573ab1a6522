"""Heartbeat arrivals: when each heartbeat written to a primary reached each replica.

Kept in the state file (table ``heartbeat_arrivals``, created on first use) so that
``mcrepl status`` — another process, with no store contacted — can say what the lag of
each replica has been over the last minutes and how old the newest heartbeat it received
is. Rows older than an hour are pruned as new ones arrive; one row per heartbeat and
replica, so a 1 s heartbeat keeps at most 3,600 rows per replica.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Sequence

from .db import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS heartbeat_arrivals (
  dataset TEXT NOT NULL, replica TEXT NOT NULL, written_ms INTEGER NOT NULL, arrived_ms INTEGER NOT NULL,
  PRIMARY KEY (dataset, replica, written_ms));
CREATE TABLE IF NOT EXISTS heartbeat_sent (
  dataset TEXT PRIMARY KEY, written_ms INTEGER NOT NULL, every_s REAL NOT NULL, location TEXT NOT NULL);
"""
KEEP_MS = 3_600_000
"""How long arrivals are kept (longer than any window ``status`` is asked about)."""


@dataclass(frozen=True)
class LagSummary:
    """Heartbeat lag of one replica over a window: percentiles and the newest arrival's age."""

    samples: int
    p50: float | None
    p99: float | None
    max: float | None
    newest_written_ms: int | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of ``values`` by the nearest-rank method (``None`` when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class HeartbeatTable:
    """Reads and writes heartbeat rows of one state file."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ready = False
        self._guard = threading.Lock()

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._guard, self._db.transaction() as conn:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)
            self._ready = True

    def sent(self, dataset: str, location: str, written_ms: int, every_s: float) -> None:
        """Note that a heartbeat written at ``written_ms`` reached the primary ``location``."""
        self._ensure()
        self._db.execute("INSERT OR REPLACE INTO heartbeat_sent VALUES (?,?,?,?)",
                         (dataset, written_ms, every_s, location))

    def last_sent(self, dataset: str) -> tuple[int, float, str] | None:
        """(written_ms, interval in seconds, primary) of the dataset's newest heartbeat, if any."""
        self._ensure()
        row = self._db.one("SELECT written_ms, every_s, location FROM heartbeat_sent WHERE dataset=?", (dataset,))
        return (int(row["written_ms"]), float(row["every_s"]), str(row["location"])) if row else None

    def arrived(self, dataset: str, replica: str, rows: Sequence[tuple[int, int]]) -> None:
        """Record arrivals ``(written_ms, arrived_ms)`` at ``replica``; the first arrival of each counts."""
        if not rows:
            return
        self._ensure()
        with self._db.transaction():
            self._db.executemany("INSERT OR IGNORE INTO heartbeat_arrivals VALUES (?,?,?,?)",
                                 [(dataset, replica, w, a) for w, a in rows])
            self._db.execute("DELETE FROM heartbeat_arrivals WHERE dataset=? AND replica=? AND written_ms<?",
                             (dataset, replica, max(w for w, _ in rows) - KEEP_MS))

    def summary(self, dataset: str, replica: str, since_ms: int) -> LagSummary:
        """Lag percentiles of the heartbeats written since ``since_ms`` that reached ``replica``."""
        self._ensure()
        rows = self._db.rows("SELECT written_ms, arrived_ms FROM heartbeat_arrivals WHERE dataset=? AND replica=? "
                             "AND written_ms>=?", (dataset, replica, since_ms))
        lags = [max(0, int(r["arrived_ms"]) - int(r["written_ms"])) / 1000 for r in rows]
        newest = self._db.one("SELECT MAX(written_ms) AS w FROM heartbeat_arrivals WHERE dataset=? AND replica=?",
                              (dataset, replica))
        return LagSummary(len(lags), percentile(lags, 0.5), percentile(lags, 0.99), max(lags) if lags else None,
                          int(newest["w"]) if newest and newest["w"] is not None else None)
