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

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection, Iterable, Iterator, Literal, Mapping, Sequence

from mcrepl.adapters.base import Change, PolicyError, Record, RecordKey, ReplicationMeta, vector_dominates
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


#: prefix of the body kind of a sealed body (``sealed:doc``, ``sealed:blob``)
SEALED = "sealed:"
#: a lookup of one key's entries names the key index: without table statistics SQLite's
#: planner picks the primary key (dataset, seq) for ``dataset=? AND key=?`` queries and reads
#: every entry of the dataset per lookup, so a capture page of records carrying mcrepl
#: metadata cost O(log size) per record (a 100,000-record pass ran for many minutes)
BY_KEY = "INDEXED BY capture_log_key"


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
        # the kind says the body is sealed: a row written before sealing was required still reads
        return key, token, meta, SEALED + kind, cipher.seal(body, _body_aad(key, kind, token))
    return key, token, meta, kind, body


def decode_record(key: str, meta: str, body_kind: str, body: bytes | None,
                  cipher: "LogCipher | None" = None) -> Record:
    """Inverse of :func:`encode_record` (a sealed body needs the dataset's ``cipher``)."""
    parts = loads(key.encode())
    assert isinstance(parts, list)
    replication = ReplicationMeta.from_dict(json.loads(meta))
    raw = bytes(body or b"")
    if body_kind.startswith(SEALED):
        body_kind = body_kind[len(SEALED):]
        if cipher is None:
            raise PolicyError("a capture-log body is sealed but no data key is configured for its dataset "
                              "(policies.encryption.capture_log, datakeys)")
        raw = cipher.open(raw, _body_aad(key, body_kind, replication.version.token))
    decoded: Any = None
    if body_kind == "blob":
        decoded = raw
    elif body_kind == "doc":
        decoded = loads(raw)
    return Record(RecordKey(tuple(parts)), decoded, replication)


def _meta_of(row_meta: str) -> ReplicationMeta:
    return ReplicationMeta.from_dict(json.loads(row_meta))


def _captured_json(location: str, record: Record) -> str:
    assert record.meta is not None
    return json.dumps({"l": location, "h": "-" if record.tombstone else record.digest_hash(False),
                       "m": record.meta.to_dict()}, sort_keys=True)


def _captured_of(raw_json: str) -> "Captured":
    raw = json.loads(raw_json)
    return Captured(raw["l"], raw["h"], ReplicationMeta.from_dict(raw["m"]))


class CaptureLog:
    """Per-dataset log, capture cursors, per-key heads and the origins seen."""

    def __init__(self, db: Database, now: Any, ciphers: "dict[str, LogCipher] | None" = None) -> None:
        self._db = db
        self._now = now
        #: dataset → the cipher its bodies are sealed with (where the log may not hold plaintext)
        self.ciphers: dict[str, LogCipher] = ciphers if ciphers is not None else {}

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
                    cursor: dict[str, Any], echoes: int = 0, allowed: Mapping[str, Collection[str]] | None = None,
                    retract: Mapping[str, Collection[str]] | None = None) -> int:
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
               retract: Mapping[str, Collection[str]] | None = None) -> int:
        """Append records made by mcrepl itself (settlements, merges, repairs); every location receives them."""
        with self._db.transaction():
            return self._append(dataset, records, "engine", location, epoch, None, retract)

    def append_recovered(self, dataset: str, records: Sequence[Record], *, location: str, epoch: int) -> int:
        """Append changes read from ``location`` outside capture (a demoted primary rejoining): it is
        their source, so every location but it receives them."""
        with self._db.transaction():
            return self._append(dataset, records, "capture", location, epoch, note_captured=False)

    def _append(self, dataset: str, records: Sequence[Record], source: Source, location: str, epoch: int,
                allowed: Mapping[str, Collection[str]] | None = None,
                retract: Mapping[str, Collection[str]] | None = None, note_captured: bool = True) -> int:
        now = self._now()
        self._db.execute("INSERT OR IGNORE INTO datasets(dataset) VALUES (?)", (dataset,))
        row = self._db.one("SELECT head_seq FROM datasets WHERE dataset=?", (dataset,))
        head = int(row["head_seq"]) if row else 0
        rows, heads = [], []
        origins: set[str] = set()
        for record in records:
            head += 1
            cols = encode_record(record, self.ciphers.get(dataset))
            meta = record.meta
            assert meta is not None
            key_id = record.key.id
            gone = (retract or {}).get(key_id)
            rows.append((dataset, head, *cols, now, source, location, epoch, json.dumps(sorted(gone)) if gone else None))
            where = (allowed or {}).get(key_id)
            # what the primary holds, as capture read it (changes recovered from a demoted primary
            # say nothing about what the current primary holds)
            captured = _captured_json(location, record) if source == "capture" and note_captured else None
            heads.append((dataset, key_id, cols[2], int(meta.tombstone), meta.version.wall_ms,
                          json.dumps(sorted(where)) if where is not None else None, captured, head))
            origins.update(o for o, t in meta.vector.items() if t)
        self._db.executemany("INSERT INTO capture_log(dataset, seq, key, token, meta, body_kind, body, "
                             "captured_at, source, location, epoch, retract) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        self._db.executemany("INSERT INTO heads(dataset, key_id, meta, tombstone, wall_ms, allowed, captured, seq) "
                             "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(dataset, key_id) DO UPDATE SET meta=excluded.meta, "
                             "tombstone=excluded.tombstone, wall_ms=excluded.wall_ms, seq=excluded.seq, "
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

    def captured(self, dataset: str, key_ids: Iterable[str],
                 column: Literal["captured", "delivered"] = "captured") -> dict[str, "Captured"]:
        """What capture last read for each key (where it read one): see :class:`Captured`; with
        ``column="delivered"``, what mcrepl last delivered to the primary (:meth:`note_delivered`)."""
        ids = list(dict.fromkeys(key_ids))
        found: dict[str, Captured] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.rows(f"SELECT key_id, {column} AS c FROM heads WHERE dataset=? AND key_id IN "
                                     f"({marks}) AND {column} IS NOT NULL", (dataset, *chunk)):
                found[row["key_id"]] = _captured_of(row["c"])
        return found

    def held_at(self, dataset: str, keys: Iterable[RecordKey], location: str,
                upto_seq: int | None = None, *, delivered: bool = False) -> dict[str, ReplicationMeta]:
        """The version ``location`` is known to hold for each key (what a native write there overwrote).

        For the primary, :meth:`captured` (what capture read there or mcrepl delivered
        there last; every key is handed over at promotion, see :meth:`hand_over`); for a
        former primary, what it held when it was demoted. Otherwise, with ``upto_seq``
        (``location`` received everything logged up to there), the key's head when that is
        no later, else its last entry up to there while the log still has it. Keys absent
        from the result were, as far as the state knows, never held there: a write there
        is then settled as a conflict, never taken for a successor.

        With ``delivered`` (a capture that reads no change log in the store's order: a listing,
        a latest-version feed), what mcrepl delivered to the primary since capture last read
        the key counts too, when it has seen what capture read: such a capture may never see
        the delivery itself, only the native write that replaced it. A change log reports the
        delivery in its place, and there a delivery noted before capture read the changes
        preceding it in the store is not what they replaced.
        """
        keys = list({k.id: k for k in keys}.values())
        seen = self.captured(dataset, (k.id for k in keys))
        held = {key_id: c.meta for key_id, c in seen.items() if c.location == location}
        for key_id, c in (self._delivered(dataset, location, [k.id for k in keys]) if delivered else {}).items():
            # a delivery capture has not read back is the later state when it has seen the one capture
            # read (the writer decided it against that): a native write there since replaced it, and
            # a listing, with no old image, says only that the object changed (listing + follow seed
            # 251159: taken to succeed the older state, the write lost to a settlement it had seen)
            known = held.get(key_id)
            if known is None or (c.meta.version != known.version and vector_dominates(c.meta.vector, known.vector)):
                held[key_id] = c.meta
        rest = [k for k in keys if k.id not in held]
        for key_id, c in self._snapshot(dataset, location, [k.id for k in rest]).items():
            held[key_id] = c.meta
        if upto_seq is None:
            return held
        for key in rest:
            if key.id in held:
                continue
            head = self._db.one("SELECT meta, seq FROM heads WHERE dataset=? AND key_id=?", (dataset, key.id))
            if head is None or self._unheld(dataset, location, key.id, head["seq"]):
                continue
            if head["seq"] and head["seq"] <= upto_seq:
                held[key.id] = _meta_of(head["meta"])
                continue
            row = self._db.one("SELECT meta, seq FROM capture_log WHERE dataset=? AND key=? AND seq<=? "
                               "ORDER BY seq DESC LIMIT 1", (dataset, dumps(list(key.parts)).decode(), upto_seq))
            if row is not None and not self._unheld(dataset, location, key.id, row["seq"]):
                held[key.id] = _meta_of(row["meta"])
        return held

    def _delivered(self, dataset: str, location: str, key_ids: Sequence[str]) -> dict[str, "Captured"]:
        """What mcrepl last delivered to ``location`` per key while it was the primary (see
        :meth:`note_delivered`)."""
        return {key_id: c for key_id, c in self.captured(dataset, key_ids, "delivered").items()
                if c.location == location}

    def _snapshot(self, dataset: str, location: str, key_ids: Sequence[str],
                  column: str = "captured") -> dict[str, "Captured"]:
        found: dict[str, Captured] = {}
        for start in range(0, len(key_ids), 500):
            chunk = key_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.rows(f"SELECT key_id, {column} AS c FROM held_snapshot WHERE dataset=? AND "
                                     f"location=? AND key_id IN ({marks}) AND {column} IS NOT NULL",
                                     (dataset, location, *chunk)):
                found[row["key_id"]] = _captured_of(row["c"])
        return found

    def hand_over(self, dataset: str, old: str, new: str, upto_seq: int) -> None:
        """At promotion: keep what ``old`` held, and record what ``new`` holds, for every key.

        ``old``'s part of :meth:`captured` is kept as its snapshot (a rejoin reconciles it
        against what it finds there). ``new`` received every entry up to ``upto_seq``: a
        key whose head is no later holds its head (unless residency kept it away); a key
        changed since holds its last entry up to there, or, with that entry gone from the
        log, nothing known. Runs inside the promotion's transaction.
        """
        self._db.execute("DELETE FROM held_snapshot WHERE dataset=? AND location=?", (dataset, old))
        self._db.execute("INSERT INTO held_snapshot(dataset, location, key_id, captured, delivered) "
                         "SELECT dataset, ?, key_id, CASE WHEN json_extract(captured, '$.l')=? THEN captured END, "
                         "CASE WHEN json_extract(delivered, '$.l')=? THEN delivered END FROM heads WHERE dataset=? "
                         "AND (json_extract(captured, '$.l')=? OR json_extract(delivered, '$.l')=?)",
                         (old, old, old, dataset, old, old))
        self._db.execute(
            "UPDATE heads SET captured=json_object('l', ?, 'h', CASE WHEN tombstone=1 THEN '-' "
            "ELSE json_extract(meta, '$.h') END, 'm', json(meta)) WHERE dataset=? AND seq>0 AND seq<=? "
            "AND (allowed IS NULL OR EXISTS (SELECT 1 FROM json_each(heads.allowed) WHERE value=?)) "
            "AND NOT EXISTS (SELECT 1 FROM unheld u WHERE u.dataset=heads.dataset AND u.location=? "
            "AND u.key_id=heads.key_id AND u.seq>=heads.seq)",
            (new, dataset, upto_seq, new, new))
        for row in self._db.rows("SELECT key_id FROM heads WHERE dataset=? AND seq>?", (dataset, upto_seq)):
            entry = self._db.one("SELECT c.meta, c.seq FROM capture_log c WHERE c.dataset=? AND c.seq<=? AND c.key=("
                                 "SELECT key FROM capture_log WHERE dataset=? AND seq=(SELECT seq FROM heads "
                                 "WHERE dataset=? AND key_id=?)) ORDER BY c.seq DESC LIMIT 1",
                                 (dataset, upto_seq, dataset, dataset, row["key_id"]))
            captured = None
            if entry is not None and not self._unheld(dataset, new, row["key_id"], entry["seq"]):
                meta = _meta_of(entry["meta"])
                captured = json.dumps({"l": new, "h": "-" if meta.tombstone else meta.content_hash,
                                       "m": meta.to_dict()}, sort_keys=True)
            self._db.execute("UPDATE heads SET captured=? WHERE dataset=? AND key_id=?",
                             (captured, dataset, row["key_id"]))
        self._db.execute("UPDATE heads SET delivered=NULL WHERE dataset=?", (dataset,))
        self._held_as_primary(dataset, new)
        self._db.execute("DELETE FROM held_snapshot WHERE dataset=? AND location=?", (dataset, new))

    def _held_as_primary(self, dataset: str, new: str) -> None:
        """Where ``new`` (being promoted) is not known to hold the log's entry, what it held
        when it was last primary (its snapshot): a backfill that never finished or a lane that
        left a key alone leaves it holding that, or a later state mcrepl wrote or an
        application left there, which the writer tells apart. Knowing nothing instead made an
        absence there (an application's delete, which no Cosmos DB change feed reports) look
        like a key it never had, and a delivery overwrote it (feed seeds 301480, 301762)."""
        self._db.execute(
            "UPDATE heads SET captured=(SELECT s.captured FROM held_snapshot s WHERE s.dataset=heads.dataset AND "
            "s.location=? AND s.key_id=heads.key_id), delivered=(SELECT s.delivered FROM held_snapshot s WHERE "
            "s.dataset=heads.dataset AND s.location=? AND s.key_id=heads.key_id) WHERE dataset=? AND "
            "(captured IS NULL OR json_extract(captured, '$.l')!=?) AND key_id IN (SELECT key_id FROM held_snapshot "
            "WHERE dataset=? AND location=?)", (new, new, dataset, new, dataset, new))

    def mark_unheld(self, dataset: str, location: str, upto_seq: int) -> None:
        """Before a backfill: every live key logged up to ``upto_seq`` is *not* known held at ``location``.

        ``upto_seq`` is where the backfilled lane starts, or the log's horizon when that is
        later (the lane cannot deliver entries the log no longer holds); the lane's offset
        otherwise says the location received every entry up to there. The backfill copies
        only what the primary holds in the state the log records; a key the primary holds
        older (a forced promotion onto a location that missed entries the log no longer has)
        or lacks gets nothing there, and taking it for held would let a write there pass for
        a successor of a version it never saw, or keep the primary's own lane from
        delivering it. :meth:`clear_unheld` removes the keys the backfill did write; the rest
        stay unheld until a later entry of the key is logged (the marks name the head's
        sequence number, so a newer head makes them void).
        """
        self._db.execute("DELETE FROM unheld WHERE dataset=? AND location=?", (dataset, location))
        self._db.execute("INSERT INTO unheld(dataset, location, key_id, seq) SELECT dataset, ?, key_id, seq "
                         "FROM heads WHERE dataset=? AND tombstone=0 AND seq>0 AND seq<=?",
                         (location, dataset, upto_seq))

    def clear_unheld(self, dataset: str, location: str, key_ids: Iterable[str]) -> None:
        """``location`` now holds the logged version of these keys (see :meth:`mark_unheld`)."""
        self._db.executemany("DELETE FROM unheld WHERE dataset=? AND location=? AND key_id=?",
                             [(dataset, location, key_id) for key_id in key_ids])

    def note_taken(self, dataset: str, location: str, entries: Sequence[tuple[str, int]]) -> None:
        """``location`` took these ``(key id, seq)`` entries from its lane: the marks of
        :meth:`note_unheld` and :meth:`mark_unheld` at or before them no longer hold.

        A backfill that stopped before it cleared its marks (a crash, the location failing
        mid-way) leaves them on keys its lane later delivers; kept, they made a promotion take
        the location to hold nothing for a key it had just received, and the next write there
        (an application's delete, say) went unrecorded, overwritten by a later delivery.
        """
        self._db.executemany("DELETE FROM unheld WHERE dataset=? AND location=? AND key_id=? AND seq<=?",
                             [(dataset, location, key_id, seq) for key_id, seq in entries])

    def note_unheld(self, dataset: str, location: str, entries: Sequence[tuple[str, int]]) -> None:
        """``location`` did not take these ``(key id, seq)`` entries though its lane passed them.

        A lane leaves alone what it must not overwrite (a native state capture has not read
        yet at the primary, a late write at a former primary) and moves on; its offset then
        says more than the location holds. Without this mark a rejoin or promotion would take
        the entry (or an earlier one of the key) for the location's version, and a write
        there for its successor — a succession that never happened, which silently wins.
        """
        self._db.executemany("INSERT INTO unheld(dataset, location, key_id, seq) VALUES (?,?,?,?) ON CONFLICT"
                             "(dataset, location, key_id) DO UPDATE SET seq=MAX(seq, excluded.seq)",
                             [(dataset, location, key_id, seq) for key_id, seq in entries])

    def note_unheld_heads(self, dataset: str, location: str, key_ids: Sequence[str]) -> None:
        """``location`` does not hold the logged version of these keys (a backfill's write it left
        alone): :meth:`note_unheld` at each key's head."""
        for start in range(0, len(key_ids), 500):
            chunk = list(key_ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"INSERT INTO unheld(dataset, location, key_id, seq) SELECT dataset, ?, key_id, seq "
                             f"FROM heads WHERE dataset=? AND key_id IN ({marks}) AND seq>0 ON CONFLICT"
                             f"(dataset, location, key_id) DO UPDATE SET seq=MAX(seq, excluded.seq)",
                             (location, dataset, *chunk))

    def _unheld(self, dataset: str, location: str, key_id: str, seq: int) -> bool:
        """Whether ``location`` is marked as not holding the key's entry at ``seq`` (a mark at a later
        entry covers the earlier ones: the location holds none of them)."""
        return self._db.one("SELECT 1 AS x FROM unheld WHERE dataset=? AND location=? AND key_id=? AND seq>=?",
                            (dataset, location, key_id, seq)) is not None

    def note_held(self, dataset: str, location: str, records: Sequence[Record]) -> None:
        """Remember the versions a former primary's own items were given when a rejoin logged them.

        Those items stay there without a version in them (a native write has none); with
        this, a later entry meeting one is compared with its version, as at the primary.
        """
        self._db.executemany(
            "INSERT INTO held_snapshot(dataset, location, key_id, captured) VALUES (?,?,?,?) "
            "ON CONFLICT(dataset, location, key_id) DO UPDATE SET captured=excluded.captured",
            [(dataset, location, r.key.id, _captured_json(location, r)) for r in records if r.meta is not None])

    def holds_version(self, dataset: str, record: Record) -> bool:
        """Whether the log still holds ``record``'s version (then it is mcrepl's, not a new write)."""
        return bool(self.logged_versions(dataset, [record]))

    def logged_versions(self, dataset: str, records: Sequence[Record]) -> set[tuple[str, str]]:
        """``(key id, version token)`` of each of ``records`` whose version the log still holds."""
        found: set[tuple[str, str]] = set()
        for record in records:
            if record.meta is None:
                continue
            token = record.meta.version.token
            if self._db.one(f"SELECT 1 AS x FROM capture_log {BY_KEY} WHERE dataset=? AND key=? AND token=? LIMIT 1",
                            (dataset, dumps(list(record.key.parts)).decode(), token)) is not None:
                found.add((record.key.id, token))
        return found

    def as_logged(self, dataset: str, location: str, records: Sequence[Record]) -> list[Record]:
        """``records`` read at ``location``, each with the metadata the log gave its version.

        An application that stamps its own writes stores its own vector; capture extends it
        with what the write replaced (the store serialised the two), and only the log has
        that. Settling against the stored vector would forget the replaced version.
        """
        ids = [r.key.id for r in records if r.meta is not None]
        if not ids:
            return list(records)
        known = self.known_at(dataset, location, ids)
        heads = self.heads(dataset, ids)
        out = []
        for record in records:
            meta = record.meta
            if meta is not None:
                for logged in [*(c.meta for c in known.get(record.key.id, [])), heads.get(record.key.id)]:
                    if logged is not None and logged.version == meta.version and logged.vector != meta.vector:
                        vector = {o: max(meta.vector.get(o, ""), logged.vector.get(o, ""))
                                  for o in {*meta.vector, *logged.vector}}
                        record = dataclasses.replace(record, meta=dataclasses.replace(meta, vector=vector))
                        break
            out.append(record)
        return out

    def known_at(self, dataset: str, location: str, key_ids: Sequence[str]) -> dict[str, list["Captured"]]:
        """What mcrepl knows ``location`` holds per key, each way it knows it: read there by
        capture, delivered there by mcrepl (the primary), or held by a former primary (see
        :meth:`hand_over`, :meth:`note_held`). The store's item tells which one it holds."""
        ids = list(dict.fromkeys(key_ids))
        found: dict[str, list[Captured]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.rows(f"SELECT key_id, captured, delivered FROM heads WHERE dataset=? "
                                     f"AND key_id IN ({marks})", (dataset, *chunk)):
                for raw in (row["delivered"], row["captured"]):
                    if raw is not None and (c := _captured_of(raw)).location == location:
                        found.setdefault(row["key_id"], []).append(c)
        for column in ("delivered", "captured"):
            for key_id, c in self._snapshot(dataset, location, ids, column).items():
                found.setdefault(key_id, []).append(c)
        return found

    def note_delivered(self, dataset: str, location: str, records: Sequence[Record]) -> None:
        """Remember that ``location`` (the primary) now holds ``records``: mcrepl wrote them there.

        Kept apart from what capture read (:meth:`note_read`): capture reads the primary's
        changes in the store's order, and a delivery it has not read yet is not the version
        an earlier native write there replaced.
        """
        self._note("delivered", dataset, location, records)

    def delivered_to(self, dataset: str, location: str, key_id: str) -> "Captured | None":
        """What mcrepl last delivered to ``location`` for the key while it was the primary (see
        :meth:`note_delivered`), if anything: a version no capture there has read back yet."""
        row = self._db.one("SELECT delivered FROM heads WHERE dataset=? AND key_id=?", (dataset, key_id))
        if row is None or row["delivered"] is None:
            return None
        found = _captured_of(row["delivered"])
        return found if found.location == location else None

    def note_read(self, dataset: str, location: str, records: Sequence[Record]) -> None:
        """Remember the state capture last read at ``location`` for keys it logged nothing for
        (its own deliveries coming back, a write of the content already logged)."""
        self._note("captured", dataset, location, records)

    def _note(self, column: str, dataset: str, location: str, records: Sequence[Record]) -> None:
        self._db.executemany(f"UPDATE heads SET {column}=? WHERE dataset=? AND key_id=?", [
            (_captured_json(location, r), dataset, r.key.id) for r in records if r.meta is not None])

    def note_absent(self, dataset: str, location: str, key_ids: Sequence[str]) -> None:
        """Remember that ``location`` (the primary) was read holding nothing for these keys.

        The version it last held stays as its known predecessor (a native write there
        later succeeds it); the absence is what the primary's lane compares against.
        """
        self._db.executemany("UPDATE heads SET captured=json_object('l', ?, 'h', '-', 'm', "
                             "json(COALESCE(json_extract(captured, '$.m'), meta))) WHERE dataset=? AND key_id=?",
                             [(location, dataset, key_id) for key_id in key_ids])

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
             skip_from: str | None = None) -> tuple[list[LogEntry], int]:
        """Entries in ``(after_seq, after_seq + limit]`` and the window's end.

        ``skip_from=location`` leaves out entries captured from that location (it is their
        source: it holds them, or something newer); the window end still advances past them.
        """
        head = self.head(dataset)
        skip = " AND NOT (source='capture' AND location IS ?)" if skip_from else ""
        if skip_from is not None:
            # jump over the run of skipped entries: the primary's lane is O(1) while nothing is for it
            row = self._db.one(f"SELECT MIN(seq) AS s FROM capture_log WHERE dataset=? AND seq>?{skip}",
                               (dataset, after_seq, skip_from))
            if row is None or row["s"] is None:
                return [], max(after_seq, head)
            after_seq = max(after_seq, int(row["s"]) - 1)
        end = min(after_seq + max(1, limit), head)
        if end <= after_seq:
            return [], after_seq
        where, params = f"dataset=? AND seq>? AND seq<=?{skip}", [dataset, after_seq, end]
        if skip_from is not None:
            params.append(skip_from)
        rows = self._db.rows("SELECT seq, key, meta, body_kind, body, captured_at, source, location, epoch, "
                             f"retract FROM capture_log WHERE {where} ORDER BY seq", params)
        cipher = self.ciphers.get(dataset)
        return [LogEntry(r["seq"], decode_record(r["key"], r["meta"], r["body_kind"], r["body"], cipher),
                         r["captured_at"], r["source"], r["location"], r["epoch"],
                         tuple(json.loads(r["retract"])) if r["retract"] else ()) for r in rows], end

    def latest(self, dataset: str, key: RecordKey) -> LogEntry | None:
        """The last retained entry of ``key`` (its body included), or ``None``."""
        row = self._db.one("SELECT seq, key, meta, body_kind, body, captured_at, source, location, epoch, retract "
                           f"FROM capture_log {BY_KEY} WHERE dataset=? AND key=? ORDER BY seq DESC LIMIT 1",
                           (dataset, dumps(list(key.parts)).decode()))
        if row is None:
            return None
        return LogEntry(row["seq"], decode_record(row["key"], row["meta"], row["body_kind"], row["body"],
                                                  self.ciphers.get(dataset)),
                        row["captured_at"], row["source"], row["location"], row["epoch"],
                        tuple(json.loads(row["retract"])) if row["retract"] else ())

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

    def note_drained(self, dataset: str) -> None:
        """Capture read the primary to its end (a page with no more after it)."""
        self._db.execute("UPDATE datasets SET capture_drains=capture_drains+1 WHERE dataset=?", (dataset,))

    def drains(self, dataset: str) -> int:
        """How many times capture has read the primary to its end (see :meth:`note_drained`)."""
        row = self._db.one("SELECT capture_drains FROM datasets WHERE dataset=?", (dataset,))
        return int(row["capture_drains"]) if row else 0

    def totals(self, dataset: str) -> dict[str, Any]:
        """Cumulative capture counters and times for ``dataset``."""
        row = self._db.one("SELECT head_seq, captured_total, echo_total, last_capture_at, last_purge_at "
                           "FROM datasets WHERE dataset=?", (dataset,))
        return dict(row) if row else {"head_seq": 0, "captured_total": 0, "echo_total": 0,
                                      "last_capture_at": None, "last_purge_at": None}


def encode_change(change: Change, cipher: "LogCipher | None" = None) -> bytes:
    """A captured change as tagged JSON (for the staging table; native changes carry no meta),
    sealed whole with ``cipher`` (bound to the dataset and the key)."""
    record = change.record
    data = dumps({"k": list(record.key.parts), "b": record.body,  # type: ignore[dict-item]
                  "m": record.meta.to_dict() if record.meta else None,  # type: ignore[dict-item]
                  "p": change.previous.to_dict() if change.previous else None,  # type: ignore[dict-item]
                  "d": change.native_delete, "o": change.observed_ms})
    return cipher.seal(data, _STAGED_AAD) if cipher is not None else data


#: what a sealed staged change is bound to (its row's dataset is bound by the cipher itself)
_STAGED_AAD = b"staged-change"


def decode_change(data: bytes, cipher: "LogCipher | None" = None) -> Change:
    """Inverse of :func:`encode_change`."""
    if data[:1] != b"{":
        if cipher is None:
            raise PolicyError("a staged change is sealed but no data key is configured for its dataset")
        data = cipher.open(data, _STAGED_AAD)
    raw = loads(data)
    assert isinstance(raw, dict)
    meta = ReplicationMeta.from_dict(raw["m"]) if raw.get("m") else None  # type: ignore[arg-type]
    previous = ReplicationMeta.from_dict(raw["p"]) if raw.get("p") else None  # type: ignore[arg-type]
    record = Record(RecordKey(tuple(raw["k"])), raw["b"], meta)  # type: ignore[arg-type]
    return Change(record, raw.get("o"), previous, bool(raw.get("d")))  # type: ignore[arg-type]


class Staging:
    """Changes held back while a scan's overlap window is open (see :attr:`ChangePage.overlap`)."""

    def __init__(self, db: Database, ciphers: "dict[str, LogCipher] | None" = None) -> None:
        self._db = db
        self.ciphers: dict[str, LogCipher] = ciphers if ciphers is not None else {}

    def add(self, dataset: str, location: str, changes: Sequence[Change]) -> None:
        """Stage ``changes`` after those already staged (joins the caller's transaction)."""
        row = self._db.one("SELECT COALESCE(MAX(n), 0) AS n FROM capture_staging WHERE dataset=? AND location=?",
                           (dataset, location))
        start = int(row["n"]) if row else 0
        self._db.executemany("INSERT INTO capture_staging(dataset, location, n, change) VALUES (?,?,?,?)",
                             [(dataset, location, start + i + 1, encode_change(c, self.ciphers.get(dataset)))
                              for i, c in enumerate(changes)])

    def take(self, dataset: str, location: str) -> list[Change]:
        """Every staged change in order, removed (joins the caller's transaction)."""
        rows = self._db.rows("SELECT change FROM capture_staging WHERE dataset=? AND location=? ORDER BY n",
                             (dataset, location))
        self._db.execute("DELETE FROM capture_staging WHERE dataset=? AND location=?", (dataset, location))
        return [decode_change(bytes(r["change"]), self.ciphers.get(dataset)) for r in rows]

    def pending(self, dataset: str, location: str) -> bool:
        """Whether changes are staged for ``location``."""
        return self._db.one("SELECT 1 AS x FROM capture_staging WHERE dataset=? AND location=? LIMIT 1",
                            (dataset, location)) is not None
