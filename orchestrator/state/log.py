"""The durable capture log: each dataset's stamped changes, read by every replica lane.

Changes are captured from the primary once, stamped once and appended here together
with the new capture cursor in one transaction, so a crash can neither lose a change
(cursor saved without it) nor stamp one twice (change saved, cursor not). Lanes read by
sequence number from their own offsets; entries every lane has passed are truncated, and
the *horizon* (the last truncated sequence number) tells a lane whose offset lies behind
it that the log can no longer bring it up to date: it must be backfilled.

Every entry records where it came from: ``source`` is ``capture`` (read from the primary
named by ``location`` under ``epoch``) or ``engine`` (written by mcrepl itself: a conflict
resolution, a merge, a reconciliation), which the current primary must receive too.

``heads`` holds each key's last logged metadata (no body): capture compares what it reads
with it to tell a new change from a re-delivered one, and stamps native writes with the
vector it extends. Heads of tombstones older than the retention are pruned with the
tombstones themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal, Mapping, Sequence

from mcrepl.adapters.base import Change, Record, RecordKey, ReplicationMeta
from mcrepl.adapters.base.tagged_json import dumps, loads

from .db import Database

if TYPE_CHECKING:
    from mcrepl.policies.capture_log import LogCipher

Source = Literal["capture", "engine"]


@dataclass(frozen=True)
class LogEntry:
    """One stamped change at position ``seq`` of its dataset's log."""

    seq: int
    record: Record
    captured_at: float
    source: Source = "capture"
    location: str | None = None
    epoch: int = 0
    retract: tuple[str, ...] = ()
    """Locations that held this key's previous version but may not hold this one (residency):
    their lanes write a tombstone instead of withholding silently."""


@dataclass(frozen=True)
class Captured:
    """The state capture last read for a key: where, its content hash (``"-"``: deleted) and the
    version capture gave it. A native item at the primary carries no version of its own;
    this is its version, so mcrepl's writes there are decided against it (a concurrent one
    is a conflict), and a native state capture has not read yet is left alone.
    """

    location: str
    content_hash: str
    meta: ReplicationMeta


def _body_aad(key: str, body_kind: str, token: str) -> bytes:
    """What a sealed body is bound to: its row's record key, body kind and version."""
    return f"{key}\x00{body_kind}\x00{token}".encode()


def encode_record(record: Record, cipher: "LogCipher | None" = None) -> tuple[str, str, str, str, bytes | None]:
    """``(key, token, meta, body_kind, body)`` columns for a stamped record.

    With ``cipher`` (``mcrepl.policies.capture_log.log_cipher_for``) the body is sealed
    under the dataset's data key; key and metadata stay readable.
    """
    assert record.meta is not None, "only stamped records enter the log"
    key = dumps(list(record.key.parts)).decode()
    token = record.meta.version.token
    meta = json.dumps(record.meta.to_dict(), sort_keys=True)
    if record.body is None:
        return key, token, meta, "none", None
    kind, body = ("blob", record.body) if isinstance(record.body, bytes) else ("doc", dumps(record.body))
    if cipher is not None:
        body = cipher.seal(body, _body_aad(key, kind, token))
    return key, token, meta, kind, body


def decode_record(key: str, meta: str, body_kind: str, body: bytes | None,
                  cipher: "LogCipher | None" = None) -> Record:
    """Inverse of :func:`encode_record` (pass the same ``cipher`` it was encoded with)."""
    parts = loads(key.encode())
    assert isinstance(parts, list)
    replication = ReplicationMeta.from_dict(json.loads(meta))
    raw = bytes(body or b"")
    if cipher is not None and body_kind in ("blob", "doc"):
        raw = cipher.open(raw, _body_aad(key, body_kind, replication.version.token))
    decoded: Any = None
    if body_kind == "blob":
        decoded = raw
    elif body_kind == "doc":
        decoded = loads(raw)
    return Record(RecordKey(tuple(parts)), decoded, replication)


def _meta_of(row_meta: str) -> ReplicationMeta:
    return ReplicationMeta.from_dict(json.loads(row_meta))


class CaptureLog:
    """Per-dataset log, capture cursors, per-key heads and the origins seen."""

    def __init__(self, db: Database, now: Any) -> None:
        self._db = db
        self._now = now

    # -- capture side ------------------------------------------------------------------

    def cursor(self, dataset: str, location: str) -> dict[str, Any] | None:
        """The saved capture cursor of ``dataset`` at ``location`` (``None``: never captured)."""
        row = self._db.one("SELECT cursor FROM capture_cursor WHERE dataset=? AND location=?",
                           (dataset, location))
        return json.loads(row["cursor"]) if row and row["cursor"] else None

    def save_cursor(self, dataset: str, location: str, cursor: dict[str, Any] | None) -> None:
        """Set (or with ``None`` forget) the capture cursor of ``location``."""
        if cursor is None:
            self._db.execute("DELETE FROM capture_cursor WHERE dataset=? AND location=?", (dataset, location))
            return
        self._db.execute("INSERT OR REPLACE INTO capture_cursor(dataset, location, cursor, updated_at) "
                         "VALUES (?,?,?,?)", (dataset, location, json.dumps(cursor), self._now()))

    def commit_page(self, dataset: str, location: str, epoch: int, records: Sequence[Record],
                    cursor: dict[str, Any], echoes: int = 0, allowed: Mapping[str, Sequence[str]] | None = None,
                    retract: Mapping[str, Sequence[str]] | None = None) -> int:
        """Append captured ``records``, update their heads and save ``cursor``, atomically.

        ``allowed`` (key → locations the record may live in) is kept with the heads so the
        next version of a key knows where the previous one went; ``retract`` is stored per
        entry (see :attr:`LogEntry.retract`). Must run inside the caller's transaction when
        the caller saves more with it (the clock, quarantine rows); returns the new head.
        """
        with self._db.transaction():
            head = self._append(dataset, records, "capture", location, epoch, allowed, retract)
            self._db.execute("UPDATE datasets SET captured_total=captured_total+?, echo_total=echo_total+?, "
                             "last_capture_at=? WHERE dataset=?", (len(records), echoes, self._now(), dataset))
            self.save_cursor(dataset, location, cursor)
        return head

    def append(self, dataset: str, records: Sequence[Record], *, location: str, epoch: int,
               retract: Mapping[str, Sequence[str]] | None = None) -> int:
        """Append records made by mcrepl itself (settlements, merges, repairs); every location receives them."""
        with self._db.transaction():
            return self._append(dataset, records, "engine", location, epoch, None, retract)

    def _append(self, dataset: str, records: Sequence[Record], source: Source, location: str, epoch: int,
                allowed: Mapping[str, Sequence[str]] | None = None,
                retract: Mapping[str, Sequence[str]] | None = None) -> int:
        now = self._now()
        self._db.execute("INSERT OR IGNORE INTO datasets(dataset) VALUES (?)", (dataset,))
        row = self._db.one("SELECT head_seq FROM datasets WHERE dataset=?", (dataset,))
        head = int(row["head_seq"]) if row else 0
        rows, heads = [], []
        origins: set[str] = set()
        for record in records:
            head += 1
            cols = encode_record(record)
            meta = record.meta
            assert meta is not None
            key_id = record.key.id
            gone = (retract or {}).get(key_id)
            rows.append((dataset, head, *cols, now, source, location, epoch, json.dumps(sorted(gone)) if gone else None))
            where = (allowed or {}).get(key_id)
            captured = (json.dumps({"l": location, "h": "-" if meta.tombstone else record.digest_hash(False),
                                    "m": meta.to_dict()}, sort_keys=True) if source == "capture" else None)
            heads.append((dataset, key_id, cols[2], int(meta.tombstone), meta.version.wall_ms,
                          json.dumps(sorted(where)) if where is not None else None, captured))
            origins.update(o for o, t in meta.vector.items() if t)
        self._db.executemany("INSERT INTO capture_log(dataset, seq, key, token, meta, body_kind, body, "
                             "captured_at, source, location, epoch, retract) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        self._db.executemany("INSERT INTO heads(dataset, key_id, meta, tombstone, wall_ms, allowed, captured) "
                             "VALUES (?,?,?,?,?,?,?) ON CONFLICT(dataset, key_id) DO UPDATE SET meta=excluded.meta, "
                             "tombstone=excluded.tombstone, wall_ms=excluded.wall_ms, "
                             "allowed=COALESCE(excluded.allowed, heads.allowed), "
                             "captured=COALESCE(excluded.captured, heads.captured)", heads)
        self._db.execute("UPDATE datasets SET head_seq=? WHERE dataset=?", (head, dataset))
        self.add_origins(dataset, origins | {location})
        return head

    def heads(self, dataset: str, key_ids: Iterable[str]) -> dict[str, ReplicationMeta]:
        """The last logged metadata of each key in ``key_ids`` that has one."""
        ids = list(dict.fromkeys(key_ids))
        found: dict[str, ReplicationMeta] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.rows(f"SELECT key_id, meta FROM heads WHERE dataset=? AND key_id IN ({marks})",
                                     (dataset, *chunk)):
                found[row["key_id"]] = _meta_of(row["meta"])
        return found

    def allowed(self, dataset: str, key_ids: Iterable[str]) -> dict[str, set[str]]:
        """Where the last logged version of each key was allowed to live (keys with a record of it)."""
        ids = list(dict.fromkeys(key_ids))
        found: dict[str, set[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.rows(f"SELECT key_id, allowed FROM heads WHERE dataset=? AND key_id IN ({marks}) "
                                     "AND allowed IS NOT NULL", (dataset, *chunk)):
                found[row["key_id"]] = set(json.loads(row["allowed"]))
        return found

    def captured(self, dataset: str, key_ids: Iterable[str]) -> dict[str, "Captured"]:
        """What capture last read for each key (where it read one): see :class:`Captured`."""
        ids = list(dict.fromkeys(key_ids))
        found: dict[str, Captured] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.rows(f"SELECT key_id, captured FROM heads WHERE dataset=? AND key_id IN ({marks}) "
                                     "AND captured IS NOT NULL", (dataset, *chunk)):
                raw = json.loads(row["captured"])
                found[row["key_id"]] = Captured(raw["l"], raw["h"], ReplicationMeta.from_dict(raw["m"]))
        return found

    def held_at(self, dataset: str, keys: Iterable[RecordKey], location: str,
                upto_seq: int | None = None) -> dict[str, ReplicationMeta]:
        """The version ``location`` is known to hold for each key (what a native write there overwrote).

        Known when capture read it there or mcrepl delivered it there last (:meth:`captured`),
        or, for a location promoted or rejoined since, the last logged version up to
        ``upto_seq`` (it received everything logged up to there). Keys absent from the
        result were, as far as the log knows, never held there.
        """
        keys = list({k.id: k for k in keys}.values())
        seen = self.captured(dataset, (k.id for k in keys))
        held = {key_id: c.meta for key_id, c in seen.items() if c.location == location}
        if upto_seq is not None:
            for key in keys:
                if key.id in held:
                    continue
                row = self._db.one("SELECT meta FROM capture_log WHERE dataset=? AND key=? AND seq<=? "
                                   "ORDER BY seq DESC LIMIT 1", (dataset, dumps(list(key.parts)).decode(), upto_seq))
                if row is not None:
                    held[key.id] = _meta_of(row["meta"])
        return held

    def note_delivered(self, dataset: str, location: str, records: Sequence[Record]) -> None:
        """Remember that ``location`` (the primary) now holds ``records`` (see :meth:`held_at`)."""
        self._db.executemany("UPDATE heads SET captured=? WHERE dataset=? AND key_id=?", [
            (json.dumps({"l": location, "h": "-" if r.tombstone else r.digest_hash(False),
                         "m": r.meta.to_dict()}, sort_keys=True), dataset, r.key.id)  # type: ignore[union-attr]
            for r in records if r.meta is not None])

    def tombstone_heads(self, dataset: str, page: int = 1000) -> Iterator[tuple[str, ReplicationMeta]]:
        """``(key_id, meta)`` of every key whose last logged version is a delete, in key order."""
        after = ""
        while True:
            rows = self._db.rows("SELECT key_id, meta FROM heads WHERE dataset=? AND tombstone=1 AND key_id>? "
                                 "ORDER BY key_id LIMIT ?", (dataset, after, page))
            for row in rows:
                yield row["key_id"], _meta_of(row["meta"])
            if len(rows) < page:
                return
            after = rows[-1]["key_id"]

    def prune_heads(self, dataset: str, tombstones_before_ms: int) -> int:
        """Forget heads of deletes older than the tombstone retention (their tombstones are purged)."""
        return self._db.execute("DELETE FROM heads WHERE dataset=? AND tombstone=1 AND wall_ms<?",
                                (dataset, tombstones_before_ms))

    def origins(self, dataset: str) -> set[str]:
        """Every origin (location) that ever stamped a version of ``dataset`` known to this log."""
        row = self._db.one("SELECT origins FROM datasets WHERE dataset=?", (dataset,))
        return set(json.loads(row["origins"])) if row else set()

    def add_origins(self, dataset: str, origins: Iterable[str]) -> None:
        """Remember ``origins`` (the vectors of lanes' writes name every one of them)."""
        new = set(origins)
        with self._db.transaction():
            self._db.execute("INSERT OR IGNORE INTO datasets(dataset) VALUES (?)", (dataset,))
            known = self.origins(dataset)
            if not new <= known:
                self._db.execute("UPDATE datasets SET origins=? WHERE dataset=?",
                                 (json.dumps(sorted(known | new)), dataset))

    # -- lane side ---------------------------------------------------------------------

    def head(self, dataset: str) -> int:
        """Sequence number of the last entry ever appended (0 when none)."""
        row = self._db.one("SELECT head_seq FROM datasets WHERE dataset=?", (dataset,))
        return int(row["head_seq"]) if row else 0

    def horizon(self, dataset: str) -> int:
        """The last truncated sequence number: a lane at an offset below it cannot catch up from the log."""
        row = self._db.one("SELECT horizon_seq FROM datasets WHERE dataset=?", (dataset,))
        return int(row["horizon_seq"]) if row else 0

    def read(self, dataset: str, after_seq: int, limit: int,
             skip_captured_from: tuple[str, int] | None = None) -> tuple[list[LogEntry], int]:
        """Entries in ``(after_seq, after_seq + limit]`` and the window's end.

        ``skip_captured_from=(location, epoch)`` leaves out entries captured from that
        location under that epoch (what the primary's own lane must not write back to it);
        the window end still advances past them.
        """
        head = self.head(dataset)
        skip = " AND NOT (source='capture' AND location IS ? AND epoch=?)" if skip_captured_from else ""
        if skip_captured_from is not None:
            # jump over the run of skipped entries: the primary's lane is O(1) while nothing is for it
            row = self._db.one(f"SELECT MIN(seq) AS s FROM capture_log WHERE dataset=? AND seq>?{skip}",
                               (dataset, after_seq, *skip_captured_from))
            if row is None or row["s"] is None:
                return [], max(after_seq, head)
            after_seq = max(after_seq, int(row["s"]) - 1)
        end = min(after_seq + max(1, limit), head)
        if end <= after_seq:
            return [], after_seq
        where, params = f"dataset=? AND seq>? AND seq<=?{skip}", [dataset, after_seq, end]
        if skip_captured_from is not None:
            params += list(skip_captured_from)
        rows = self._db.rows("SELECT seq, key, meta, body_kind, body, captured_at, source, location, epoch, "
                             f"retract FROM capture_log WHERE {where} ORDER BY seq", params)
        return [LogEntry(r["seq"], decode_record(r["key"], r["meta"], r["body_kind"], r["body"]),
                         r["captured_at"], r["source"], r["location"], r["epoch"],
                         tuple(json.loads(r["retract"])) if r["retract"] else ()) for r in rows], end

    def oldest_captured_at(self, dataset: str, after_seq: int) -> float | None:
        """Capture time of the first entry after ``after_seq`` (``None`` when drained)."""
        row = self._db.one("SELECT captured_at FROM capture_log WHERE dataset=? AND seq>? "
                           "ORDER BY seq LIMIT 1", (dataset, after_seq))
        return float(row["captured_at"]) if row else None

    def truncate_below(self, dataset: str, seq: int) -> int:
        """Drop entries with ``seq <= seq`` (every attached lane has acknowledged them)."""
        with self._db.transaction():
            removed = self._db.execute("DELETE FROM capture_log WHERE dataset=? AND seq<=?", (dataset, seq))
            self._db.execute("UPDATE datasets SET horizon_seq=MAX(horizon_seq, ?) WHERE dataset=?", (seq, dataset))
        return removed

    def truncated(self, dataset: str) -> bool:
        """Whether entries have been dropped: a lane starting from 0 would miss some."""
        return self.horizon(dataset) > 0

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


def encode_change(change: Change) -> bytes:
    """A captured change as tagged JSON (for the staging table; native changes carry no meta)."""
    record = change.record
    return dumps({"k": list(record.key.parts), "b": record.body,  # type: ignore[dict-item]
                  "m": record.meta.to_dict() if record.meta else None,  # type: ignore[dict-item]
                  "p": change.previous.to_dict() if change.previous else None,  # type: ignore[dict-item]
                  "d": change.native_delete, "o": change.observed_ms})


def decode_change(data: bytes) -> Change:
    """Inverse of :func:`encode_change`."""
    raw = loads(data)
    assert isinstance(raw, dict)
    meta = ReplicationMeta.from_dict(raw["m"]) if raw.get("m") else None  # type: ignore[arg-type]
    previous = ReplicationMeta.from_dict(raw["p"]) if raw.get("p") else None  # type: ignore[arg-type]
    record = Record(RecordKey(tuple(raw["k"])), raw["b"], meta)  # type: ignore[arg-type]
    return Change(record, raw.get("o"), previous, bool(raw.get("d")))  # type: ignore[arg-type]


class Staging:
    """Changes held back while a scan's overlap window is open (see :attr:`ChangePage.overlap`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, dataset: str, location: str, changes: Sequence[Change]) -> None:
        """Stage ``changes`` after those already staged (joins the caller's transaction)."""
        row = self._db.one("SELECT COALESCE(MAX(n), 0) AS n FROM capture_staging WHERE dataset=? AND location=?",
                           (dataset, location))
        start = int(row["n"]) if row else 0
        self._db.executemany("INSERT INTO capture_staging(dataset, location, n, change) VALUES (?,?,?,?)",
                             [(dataset, location, start + i + 1, encode_change(c)) for i, c in enumerate(changes)])

    def take(self, dataset: str, location: str) -> list[Change]:
        """Every staged change in order, removed (joins the caller's transaction)."""
        rows = self._db.rows("SELECT change FROM capture_staging WHERE dataset=? AND location=? ORDER BY n",
                             (dataset, location))
        self._db.execute("DELETE FROM capture_staging WHERE dataset=? AND location=?", (dataset, location))
        return [decode_change(bytes(r["change"])) for r in rows]

    def pending(self, dataset: str, location: str) -> bool:
        """Whether changes are staged for ``location``."""
        return self._db.one("SELECT 1 AS x FROM capture_staging WHERE dataset=? AND location=? LIMIT 1",
                            (dataset, location)) is not None
