"""Conflict log and quarantine: what a user must look at, stored without record values.

Conflict rows keep both versions' metadata (version, vector, content hash, tombstone) and
the winner; quarantine rows keep the rule a record broke and the error message (which
names the field, never its value), so neither table can leak sensitive data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from mcrepl.adapters.base import RecordError, ReplicationMeta

from .db import Database


@dataclass(frozen=True)
class ConflictRow:
    """Two concurrent versions of one key met at one location.

    ``incoming`` is the version the log holds for the key, ``stored`` the concurrent one
    found at ``replica``; ``winner`` is the token of the version whose body won and
    ``resolution`` the token of the record mcrepl wrote to settle it (a new version that
    has seen both). ``note`` says what happened when the resolver could not run as asked
    (a merge function that raised, and why). ``others`` are further versions the same
    settlement resolved (the log's latest, when neither side had seen it): they won or
    lost with the two.
    """

    dataset: str
    key: str
    replica: str
    incoming: ReplicationMeta
    stored: ReplicationMeta
    winner: str
    resolver: str
    resolution: str | None = None
    note: str | None = None
    others: tuple[ReplicationMeta, ...] = ()


@dataclass(frozen=True)
class QuarantineRow:
    """A record one replica cannot hold, and why."""

    dataset: str
    key: str
    replica: str
    version: str
    rule: str
    field: str | None
    message: str


class Journal:
    """Appends and lists conflicts and quarantined records."""

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self._db = db
        self._now = now

    def pair_logged(self, dataset: str, key: str, token_a: str, token_b: str) -> bool:
        """Whether a conflict between these two versions of ``key`` was logged (either way round)."""
        return self._db.one("SELECT 1 AS x FROM conflicts WHERE dataset=? AND key_id=? AND ((stored_token=? AND "
                            "incoming_token=?) OR (stored_token=? AND incoming_token=?)) LIMIT 1",
                            (dataset, key, token_a, token_b, token_b, token_a)) is not None

    def add_conflict(self, row: ConflictRow) -> bool:
        """Log a conflict once (joins the caller's transaction); ``False`` when it was logged before.

        A conflict is identified by the key and its two versions, whichever was found and
        whichever sent: a batch replayed after a crash, or a second lane meeting the same
        pair at another replica (either way round), finds the row and logs nothing twice.
        A later version meeting the same stored one is a conflict of its own.
        """
        if self.pair_logged(row.dataset, row.key, row.stored.version.token, row.incoming.version.token):
            return False
        return self._db.execute(
            "INSERT OR IGNORE INTO conflicts(dataset, key_id, replica, incoming, stored, winner, resolver, at, "
            "stored_token, incoming_token, resolution, note, others) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (row.dataset, row.key, row.replica, json.dumps(row.incoming.to_dict(), sort_keys=True),
             json.dumps(row.stored.to_dict(), sort_keys=True), row.winner, row.resolver, self._now(),
             row.stored.version.token, row.incoming.version.token, row.resolution, row.note,
             json.dumps([m.to_dict() for m in row.others], sort_keys=True) if row.others else None)) > 0

    def add_quarantine(self, dataset: str, replica: str, version: str, error: RecordError) -> None:
        """Quarantine one record at one replica; re-quarantining the same version is a no-op."""
        self._db.execute(
            "INSERT OR IGNORE INTO quarantine(dataset, key_id, replica, version, rule, field, message, at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (dataset, error.key or "", replica, version, error.rule, error.field, error.message, self._now()))

    def conflicts(self, dataset: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Logged conflicts, newest first, as plain dicts (for tables and JSON)."""
        where, params = ("WHERE dataset=?", [dataset]) if dataset else ("", [])
        rows = self._db.rows(f"SELECT dataset, key_id, replica, incoming, stored, winner, resolver, at, "
                             f"resolution, note, others FROM conflicts {where} ORDER BY id DESC LIMIT ?",
                             [*params, limit])
        return [{**dict(r), "incoming": json.loads(r["incoming"]), "stored": json.loads(r["stored"]),
                 "others": json.loads(r["others"]) if r["others"] else []} for r in rows]

    def quarantined(self, dataset: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Quarantined records, newest first, as plain dicts."""
        where, params = ("WHERE dataset=?", [dataset]) if dataset else ("", [])
        rows = self._db.rows(f"SELECT dataset, key_id, replica, version, rule, field, message, at "
                             f"FROM quarantine {where} ORDER BY id DESC LIMIT ?", [*params, limit])
        return [dict(r) for r in rows]

    def counts(self, dataset: str, replica: str) -> tuple[int, int]:
        """``(conflicts, quarantined)`` rows recorded for one lane."""
        c = self._db.one("SELECT COUNT(*) AS n FROM conflicts WHERE dataset=? AND replica=?", (dataset, replica))
        q = self._db.one("SELECT COUNT(*) AS n FROM quarantine WHERE dataset=? AND replica=?", (dataset, replica))
        return (int(c["n"]) if c else 0, int(q["n"]) if q else 0)
