"""Replica lanes: each replica's offset in its dataset's log, counters, errors and breaker.

A lane's offset moves only in :meth:`LaneTable.commit_batch`, after the replica
acknowledged every write of the batch, and in the same transaction as the batch's
counters and any quarantine or conflict rows, so a crash leaves either all of a batch's
bookkeeping or none of it (the batch is then re-applied and reports as replays).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Mapping

from mcrepl.orchestrator.observability.redaction import scrub_text

from .db import Database

COUNTERS = ("applied", "replayed", "stale", "rejected", "withheld", "conflicts", "errors", "retracted")


@dataclass(frozen=True)
class LaneState:
    """A snapshot of one lane's row."""

    dataset: str
    replica: str
    offset: int = 0
    last_applied_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    breaker_failures: int = 0
    breaker_opened_at: float | None = None
    applied: int = 0
    replayed: int = 0
    stale: int = 0
    rejected: int = 0
    withheld: int = 0
    conflicts: int = 0
    errors: int = 0
    batches: int = 0
    last_purge_at: float | None = None
    attached_epoch: int | None = None
    caught_up_at: float | None = None
    retracted: int = 0


_COLUMNS = [f.name for f in fields(LaneState)]


class LaneTable:
    """Reads and updates lane rows."""

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self._db = db
        self._now = now

    def get(self, dataset: str, replica: str) -> LaneState:
        """The lane's state; a lane never seen before starts at offset 0 with empty counters."""
        row = self._db.one(f"SELECT {', '.join(_COLUMNS)} FROM lanes WHERE dataset=? AND replica=?",
                           (dataset, replica))
        return LaneState(**dict(row)) if row else LaneState(dataset, replica)

    def exists(self, dataset: str, replica: str) -> bool:
        """Whether the lane has ever committed anything (a new replica has no row yet)."""
        return self._db.one("SELECT 1 AS x FROM lanes WHERE dataset=? AND replica=?", (dataset, replica)) is not None

    def all(self, dataset: str | None = None) -> list[LaneState]:
        """Every lane (of ``dataset``), ordered by dataset and replica."""
        where, params = ("WHERE dataset=?", (dataset,)) if dataset else ("", ())
        rows = self._db.rows(f"SELECT {', '.join(_COLUMNS)} FROM lanes {where} ORDER BY dataset, replica",
                             params)
        return [LaneState(**dict(r)) for r in rows]

    def _ensure(self, dataset: str, replica: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO lanes(dataset, replica) VALUES (?,?)", (dataset, replica))

    def commit_batch(self, dataset: str, replica: str, new_offset: int, counts: Mapping[str, int]) -> None:
        """Advance the offset and add the batch's counters.

        The replica answered, so the breaker closes and the last error is cleared: ``status``
        shows an error only while it is the lane's current state, not after it recovered.
        """
        sets = ", ".join(f"{c}={c}+?" for c in COUNTERS)
        with self._db.transaction():
            self._ensure(dataset, replica)
            self._db.execute(
                f"UPDATE lanes SET offset=MAX(offset, ?), last_applied_at=?, {sets}, batches=batches+1, "
                "breaker_failures=0, breaker_opened_at=NULL, last_error=NULL, last_error_at=NULL "
                "WHERE dataset=? AND replica=?",
                (new_offset, self._now(), *(int(counts.get(c, 0)) for c in COUNTERS), dataset, replica))

    def advance(self, dataset: str, replica: str, new_offset: int) -> None:
        """Move the offset past entries the lane has nothing to write for (not a batch: nothing was sent)."""
        with self._db.transaction():
            self._ensure(dataset, replica)
            self._db.execute("UPDATE lanes SET offset=MAX(offset, ?) WHERE dataset=? AND replica=?",
                             (new_offset, dataset, replica))

    def attach(self, dataset: str, replica: str, offset: int, epoch: int,
               counts: Mapping[str, int] | None = None) -> None:
        """Set the lane's offset outright (after a backfill or a reconciliation) under ``epoch``.

        Unlike :meth:`commit_batch` the offset may move backwards: a backfill starts the
        lane at the log head noted *before* it scanned the primary.
        """
        sets = ", ".join(f"{c}={c}+?" for c in COUNTERS)
        wrote = counts is not None       # a backfill wrote to the location; a plain attach did not
        with self._db.transaction():
            self._ensure(dataset, replica)
            self._db.execute(
                f"UPDATE lanes SET offset=?, attached_epoch=?, {sets}"
                + (", last_applied_at=?, breaker_failures=0, breaker_opened_at=NULL, last_error=NULL, "
                   "last_error_at=NULL" if wrote else "") + " WHERE dataset=? AND replica=?",
                (offset, epoch, *(int((counts or {}).get(c, 0)) for c in COUNTERS),
                 *((self._now(),) if wrote else ()), dataset, replica))

    def set_attached_epoch(self, dataset: str, replica: str, epoch: int) -> None:
        """Note that the lane's contents are known to follow the log under ``epoch``."""
        with self._db.transaction():
            self._ensure(dataset, replica)
            self._db.execute("UPDATE lanes SET attached_epoch=? WHERE dataset=? AND replica=?",
                             (epoch, dataset, replica))

    def mark_caught_up(self, dataset: str, replica: str) -> None:
        """Remember when the lane last drained the log."""
        self._db.execute("UPDATE lanes SET caught_up_at=? WHERE dataset=? AND replica=?",
                         (self._now(), dataset, replica))

    def record_failure(self, dataset: str, replica: str, message: str, opened: bool) -> None:
        """Count a failed batch, keep its message as the last error, open the breaker if asked."""
        now = self._now()
        with self._db.transaction():
            self._ensure(dataset, replica)
            self._db.execute(
                "UPDATE lanes SET last_error=?, last_error_at=?, errors=errors+1, "
                "breaker_failures=breaker_failures+1, "
                "breaker_opened_at=CASE WHEN ? THEN ? ELSE breaker_opened_at END "
                "WHERE dataset=? AND replica=?", (scrub_text(message), now, opened, now, dataset, replica))

    def clear_error(self, dataset: str, replica: str) -> None:
        """Forget the last error (the lane has drained since)."""
        self._db.execute("UPDATE lanes SET last_error=NULL, last_error_at=NULL WHERE dataset=? AND replica=?",
                         (dataset, replica))

    def mark_purged(self, dataset: str, replica: str) -> None:
        """Remember when tombstones were last purged at this location."""
        with self._db.transaction():
            self._ensure(dataset, replica)
            self._db.execute("UPDATE lanes SET last_purge_at=? WHERE dataset=? AND replica=?",
                             (self._now(), dataset, replica))
