"""The durable capture log: each dataset's stamped changes, read by every replica lane.

Changes are captured from the primary once, stamped once and appended here together
with the new capture cursor in one transaction, so a crash can neither lose a change
(cursor saved without it) nor stamp one twice (change saved, cursor not). Lanes read by
sequence number from their own offsets; entries every lane has passed are truncated.
Bodies are stored as tagged JSON (documents) or raw bytes (blobs), never decoded into
memory beyond one page.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from mcrepl.adapters.base import Record, RecordKey, ReplicationMeta
from mcrepl.adapters.base.tagged_json import dumps, loads

from .db import Database


@dataclass(frozen=True)
class LogEntry:
    """One stamped change at position ``seq`` of its dataset's log."""

    seq: int
    record: Record
    captured_at: float


@dataclass(frozen=True)
class Head:
    """A key's last logged version, and the time up to which a full scan showed it unchanged."""

    meta: ReplicationMeta
    covered_ms: int | None = None


def encode_record(record: Record) -> tuple[str, str, str, str, bytes | None]:
    """``(key, token, meta, body_kind, body)`` columns for a stamped record."""
    assert record.meta is not None, "only stamped records enter the log"
    key = dumps(list(record.key.parts)).decode()
    meta = json.dumps(record.meta.to_dict(), sort_keys=True)
    if record.body is None:
        return key, record.meta.version.token, meta, "none", None
    if isinstance(record.body, bytes):
        return key, record.meta.version.token, meta, "blob", record.body
    return key, record.meta.version.token, meta, "doc", dumps(record.body)


def decode_record(key: str, meta: str, body_kind: str, body: bytes | None) -> Record:
    """Inverse of :func:`encode_record`."""
    parts = loads(key.encode())
    assert isinstance(parts, list)
    decoded: Any = None
    if body_kind == "blob":
        decoded = bytes(body or b"")
    elif body_kind == "doc":
        decoded = loads(bytes(body or b""))
    return Record(RecordKey(tuple(parts)), decoded, ReplicationMeta.from_dict(json.loads(meta)))


class CaptureLog:
    """Per-dataset log, capture cursors and per-key heads (the last logged version)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- capture side ------------------------------------------------------------------

    def cursor(self, dataset: str, location: str) -> dict[str, Any] | None:
        """The saved capture cursor of ``dataset`` at ``location`` (``None``: never captured)."""
        row = self._db.one("SELECT cursor FROM capture_cursor WHERE dataset=? AND location=?",
                           (dataset, location))
        return json.loads(row["cursor"]) if row and row["cursor"] else None

    def commit_page(self, dataset: str, location: str, records: Sequence[Record],
                    cursor: dict[str, Any], echoes: int = 0, covered_ms: int | None = None,
                    covered_keys: Iterable[str] = ()) -> int:
        """Append ``records``, update their heads and save ``cursor``, atomically.

        ``covered_ms`` marks ``covered_keys`` (and every record appended) as reflecting
        every change made before that time: a full scan read them after it.

        Must run inside the caller's transaction when the caller saves more with it (the
        clock); returns the new head sequence number.
        """
        now = time.time()
        with self._db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO datasets(dataset) VALUES (?)", (dataset,))
            head = conn.execute("SELECT head_seq FROM datasets WHERE dataset=?", (dataset,)).fetchone()[0]
            rows = []
            for record in records:
                head += 1
                rows.append((dataset, head, *encode_record(record), now))
            conn.executemany("INSERT INTO capture_log(dataset, seq, key, token, meta, body_kind, body, "
                             "captured_at) VALUES (?,?,?,?,?,?,?,?)", rows)
            conn.executemany("INSERT INTO heads(dataset, key_id, meta, covered_ms) VALUES (?,?,?,?) "
                             "ON CONFLICT(dataset, key_id) DO UPDATE SET meta=excluded.meta, "
                             "covered_ms=MAX(COALESCE(covered_ms, 0), COALESCE(excluded.covered_ms, 0))",
                             [(dataset, r.key.id, row[4], covered_ms) for r, row in zip(records, rows)])
            if covered_ms is not None:
                conn.executemany("UPDATE heads SET covered_ms=MAX(COALESCE(covered_ms, 0), ?) "
                                 "WHERE dataset=? AND key_id=?",
                                 [(covered_ms, dataset, key_id) for key_id in covered_keys])
            conn.execute("UPDATE datasets SET head_seq=?, captured_total=captured_total+?, "
                         "echo_total=echo_total+?, last_capture_at=? WHERE dataset=?",
                         (head, len(records), echoes, now, dataset))
            conn.execute("INSERT OR REPLACE INTO capture_cursor(dataset, location, cursor, updated_at) "
                         "VALUES (?,?,?,?)", (dataset, location, json.dumps(cursor), now))
        return head

    def append(self, dataset: str, records: Sequence[Record]) -> int:
        """Append records made by the engine itself (merge results); returns the new head."""
        now = time.time()
        with self._db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO datasets(dataset) VALUES (?)", (dataset,))
            head = conn.execute("SELECT head_seq FROM datasets WHERE dataset=?", (dataset,)).fetchone()[0]
            for record in records:
                head += 1
                cols = encode_record(record)
                conn.execute("INSERT INTO capture_log(dataset, seq, key, token, meta, body_kind, body, "
                             "captured_at) VALUES (?,?,?,?,?,?,?,?)", (dataset, head, *cols, now))
                conn.execute("INSERT INTO heads(dataset, key_id, meta) VALUES (?,?,?) "
                             "ON CONFLICT(dataset, key_id) DO UPDATE SET meta=excluded.meta",
                             (dataset, record.key.id, cols[2]))
            conn.execute("UPDATE datasets SET head_seq=? WHERE dataset=?", (head, dataset))
        return head

    def heads(self, dataset: str, key_ids: Iterable[str]) -> dict[str, "Head"]:
        """The last logged metadata of each key in ``key_ids`` that has one."""
        ids = list(dict.fromkeys(key_ids))
        found: dict[str, Head] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.rows(f"SELECT key_id, meta, covered_ms FROM heads "
                                     f"WHERE dataset=? AND key_id IN ({marks})", (dataset, *chunk)):
                found[row["key_id"]] = Head(ReplicationMeta.from_dict(json.loads(row["meta"])), row["covered_ms"])
        return found

    # -- lane side ---------------------------------------------------------------------

    def head(self, dataset: str) -> int:
        """Sequence number of the last entry ever appended (0 when none)."""
        row = self._db.one("SELECT head_seq FROM datasets WHERE dataset=?", (dataset,))
        return int(row["head_seq"]) if row else 0

    def read(self, dataset: str, after_seq: int, limit: int) -> list[LogEntry]:
        """Up to ``limit`` entries with ``seq > after_seq``, in order."""
        rows = self._db.rows("SELECT seq, key, meta, body_kind, body, captured_at FROM capture_log "
                             "WHERE dataset=? AND seq>? ORDER BY seq LIMIT ?", (dataset, after_seq, limit))
        return [LogEntry(r["seq"], decode_record(r["key"], r["meta"], r["body_kind"], r["body"]),
                         r["captured_at"]) for r in rows]

    def oldest_captured_at(self, dataset: str, after_seq: int) -> float | None:
        """Capture time of the first entry after ``after_seq`` (``None`` when drained)."""
        row = self._db.one("SELECT captured_at FROM capture_log WHERE dataset=? AND seq>? "
                           "ORDER BY seq LIMIT 1", (dataset, after_seq))
        return float(row["captured_at"]) if row else None

    def truncate_below(self, dataset: str, seq: int) -> int:
        """Drop entries with ``seq <= seq`` (every lane has acknowledged them)."""
        with self._db.transaction() as conn:
            cur = conn.execute("DELETE FROM capture_log WHERE dataset=? AND seq<=?", (dataset, seq))
            return cur.rowcount

    def truncated(self, dataset: str) -> bool:
        """Whether entries have been dropped: a lane starting from 0 would miss some."""
        row = self._db.one("SELECT MIN(seq) AS first FROM capture_log WHERE dataset=?", (dataset,))
        first = row["first"] if row else None
        return self.head(dataset) > 0 and (first is None or int(first) > 1)

    def retained(self, dataset: str) -> int:
        """How many entries are still kept for ``dataset``."""
        row = self._db.one("SELECT COUNT(*) AS n FROM capture_log WHERE dataset=?", (dataset,))
        return int(row["n"]) if row else 0

    def totals(self, dataset: str) -> dict[str, Any]:
        """Cumulative capture counters and times for ``dataset``."""
        row = self._db.one("SELECT head_seq, captured_total, echo_total, last_capture_at, last_purge_at "
                           "FROM datasets WHERE dataset=?", (dataset,))
        return dict(row) if row else {"head_seq": 0, "captured_total": 0, "echo_total": 0,
                                      "last_capture_at": None, "last_purge_at": None}
