"""Embedded SQLite state of the sync engine.

One file holds everything a restart needs: capture cursors, the capture log, each
replica lane's offset and counters, the hybrid logical clock, conflicts, quarantine and
the primary pointer. Every multi-row change is one transaction, so a process killed at
any instruction leaves a consistent store (WAL mode, ``synchronous=FULL``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mcrepl.adapters.base import ReplicationMeta
from mcrepl.orchestrator.hlc import ClockState

from .db import Database
from .journal import ConflictRow, Journal, QuarantineRow
from .lanes import COUNTERS, LaneState, LaneTable
from .log import CaptureLog, LogEntry, decode_record, encode_record


@dataclass(frozen=True)
class PrimaryPointer:
    """Which location is a dataset's primary, under which epoch (fencing token)."""

    dataset: str
    location: str
    epoch: int


def _demoted_key(dataset: str, epoch: int) -> str:
    return f"epoch_demoted_at:{dataset}:{epoch}"


class StateStore:
    """The state file: ``log``, ``lanes`` and ``journal`` tables plus clock and pointer."""

    def __init__(self, path: str | Path) -> None:
        self.db = Database(path)
        self.log = CaptureLog(self.db)
        self.lanes = LaneTable(self.db)
        self.journal = Journal(self.db)

    def transaction(self):  # type: ignore[no-untyped-def]
        """An atomic block over every table (see :meth:`Database.transaction`)."""
        return self.db.transaction()

    # -- hybrid logical clock ----------------------------------------------------------

    def load_clock(self, name: str = "engine") -> ClockState:
        """The last persisted clock reading (zero when new)."""
        row = self.db.one("SELECT wall_ms, counter FROM clock WHERE name=?", (name,))
        return ClockState(int(row["wall_ms"]), int(row["counter"])) if row else ClockState()

    def save_clock(self, state: ClockState, name: str = "engine") -> None:
        """Persist a clock reading; never moves the stored reading backwards."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT wall_ms, counter FROM clock WHERE name=?", (name,)).fetchone()
            if row and ClockState(row[0], row[1]) >= state:
                return
            conn.execute("INSERT OR REPLACE INTO clock(name, wall_ms, counter) VALUES (?,?,?)",
                         (name, state.wall_ms, state.counter))

    # -- primary pointer ---------------------------------------------------------------

    def primary(self, dataset: str, default_location: str) -> PrimaryPointer:
        """The dataset's primary; the first call records ``default_location`` at epoch 1."""
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO primary_pointer(dataset, location, epoch, changed_at) "
                         "VALUES (?,?,1,?)", (dataset, default_location, time.time()))
            row = conn.execute("SELECT location, epoch FROM primary_pointer WHERE dataset=?",
                               (dataset,)).fetchone()
        return PrimaryPointer(dataset, row[0], int(row[1]))

    def set_primary(self, dataset: str, location: str, *, fence: bool = True) -> PrimaryPointer:
        """Point ``dataset`` at a new primary and bump the epoch (used by failover).

        With ``fence`` (the default) the demotion time of the epoch that ends is stored in
        the same transaction: writes stamped with that epoch but made after it are then
        refused by capture (see :meth:`written_after_demotion`). ``fence=False`` exists
        only so drills can show what split-brain does without it.
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT epoch FROM primary_pointer WHERE dataset=?", (dataset,)).fetchone()
            epoch = (int(row[0]) if row else 0) + 1
            now = time.time()
            conn.execute("INSERT OR REPLACE INTO primary_pointer(dataset, location, epoch, changed_at) "
                         "VALUES (?,?,?,?)", (dataset, location, epoch, now))
            if fence and row:
                conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?,?)",
                             (_demoted_key(dataset, epoch - 1), repr(now)))
        return PrimaryPointer(dataset, location, epoch)

    def demoted_at(self, dataset: str, epoch: int) -> float | None:
        """When ``epoch`` of ``dataset`` ended by a fenced promotion (``None``: current or unfenced)."""
        value = self.get_meta(_demoted_key(dataset, epoch))
        return float(value) if value is not None else None

    def written_after_demotion(self, dataset: str, meta: ReplicationMeta, current_epoch: int) -> bool:
        """The split-brain guard: ``meta`` carries an older epoch and was stamped after that epoch ended.

        Such a write was made by a writer still believing in a demoted primary; it must
        never replicate. A write from an old epoch stamped *before* the demotion is
        legitimate (it was acknowledged while its primary was the primary) and is
        reconciled instead.
        """
        if meta.epoch >= current_epoch:
            return False
        demoted = self.demoted_at(dataset, meta.epoch)
        return demoted is not None and meta.version.wall_ms > demoted * 1000

    # -- small named values ------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        """A named value (e.g. the hash of the last configuration seen)."""
        row = self.db.one("SELECT value FROM meta WHERE name=?", (name,))
        return str(row["value"]) if row else None

    def set_meta(self, name: str, value: str) -> None:
        """Store a named value."""
        self.db.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?,?)", (name, value))

    def mark_dataset_purged(self, dataset: str) -> None:
        """Remember when the dataset's tombstones were last purged."""
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO datasets(dataset) VALUES (?)", (dataset,))
            conn.execute("UPDATE datasets SET last_purge_at=? WHERE dataset=?", (time.time(), dataset))

    def close(self) -> None:
        """Close the file."""
        self.db.close()


__all__ = ["COUNTERS", "CaptureLog", "ConflictRow", "Journal", "LaneState", "LaneTable", "LogEntry",
           "PrimaryPointer", "QuarantineRow", "StateStore", "decode_record", "encode_record"]
