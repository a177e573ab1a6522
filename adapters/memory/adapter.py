"""In-memory replica: the reference implementation of the interface, and the simulation's store.

It behaves like the real stores where the engine can tell: metadata is kept in-band
(``_mcrepl`` beside the user's fields, with the same wrapper rule as DynamoDB and Cosmos,
see :mod:`..base.inband`), a change log records every write and delete in order (like a
DynamoDB stream), and items that cannot be decoded into records are reported as
``rejected`` by capture rather than stalling it. ``write_raw`` puts an arbitrary stored
item in place, as a foreign writer could.

With ``options['capture'] = "listing"`` capture compares listings with a manifest instead,
through the same code GCS and S3 capture runs (:mod:`..base.listing`): what the simulation
needs to put the engine's listing paths (no old images, write-then-delete pairs never seen)
under the same search as its change-log ones. With ``"feed"`` it reads the log as a
latest-version change feed does (Cosmos DB's): each changed item once, in its current state,
at the place of its last change; deletes and old images never.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
import zlib
from typing import Any, Callable, Iterator, Sequence

from ..base import (ApplyOutcome, ApplyResult, Change, ChangePage, Cursor, Digest,
                    Record, RecordError, RecordKey, ReplicaAdapter, ReplicaTarget, decide, meta_if_valid,
                    rejected)
from ..base.digest_ranges import DigestRange, ranges_for
from ..base.inband import META_FIELD, WRAPPED_FIELDS, split_reserved, user_fields
from ..base.listing import Fetched, Listed, record_outcome, scan
from ..base.manifest import Manifest, make_cursor, read_cursor
from ..base.interface import result_of
from ..base.record import ReplicationMeta
from ..base.values import copy_value
from ..base.reserved import heartbeat_record
from .settings import SPEC

Stored = dict[str, Any]
"""A stored item: the user's fields (documents) or ``{"data": bytes}`` (blobs), plus ``_mcrepl``."""

_STORES: dict[tuple[str, str, str], "_Store"] = {}
_LOCK = threading.Lock()


class _Store:
    def __init__(self) -> None:
        self.items: dict[str, Stored] = {}
        # (key id, item after the change (None: deleted), the store's time of the change in ms)
        self.log: list[tuple[str, Stored | None, int]] = []
        #: key id → (generation, store time in ms) of its current item, as a listing reports them
        self.listed: dict[str, tuple[int, int]] = {}
        self.generation = 0
        self.lock = threading.Lock()
        #: the store's clock: the time its change log gives each change (a simulation sets its own)
        self.now_ms: Callable[[], int] = lambda: int(time.time() * 1000)


class MemoryAdapter(ReplicaAdapter):
    """Process-local store; ``options['namespace']`` isolates tests from each other.

    ``options['initial_capture']`` chooses what capture from no cursor reads: ``"log"``
    (default) replays the whole change log, every change in order; ``"feed"`` reads it
    from the beginning but only each key's latest change (as a Cosmos DB change feed read
    from the beginning does), then goes on live; ``"scan"`` reads the current items in key
    order first and then the change log from the position taken before the scan, marking
    the changes made while it ran as overlap — the handoff DynamoDB capture makes between
    a table scan and its stream.
    """

    capabilities = SPEC.capabilities

    def __init__(self, target: ReplicaTarget) -> None:
        super().__init__(target)
        self._listing = target.options.get("capture") == "listing"
        self._feed = target.options.get("capture") == "feed"
        if self._listing or self._feed:
            # as MemorySpec.capabilities_for says; a subclass keeps its own
            caps = type(self).capabilities
            self.capabilities = dataclasses.replace(caps, incremental_capture=caps.incremental_capture
                                                    and not self._listing,
                                                    capture_sees_deletes=caps.capture_sees_deletes and not self._feed)
        ident = (str(target.options.get("namespace", "")), target.replica, target.resource)
        with _LOCK:
            self._store = _STORES.setdefault(ident, _Store())
        self._ident = ident

    # -- wire form ----------------------------------------------------------------------

    def _encode(self, record: Record, with_meta: bool = True) -> Stored:
        if self.target.kind == "blob":
            item: Stored = {} if record.body is None else {"data": bytes(record.body)}  # type: ignore[arg-type]
        else:
            if not isinstance(record.body, dict):
                raise RecordError("bad-body", "a document record's body must be a mapping")
            if not with_meta:                      # as an application writes it: every field as it is
                item = copy_value(record.body)
            else:
                top, wrapped = split_reserved(record.body)
                item = copy_value(top)
                if wrapped:
                    item[WRAPPED_FIELDS] = copy_value(wrapped)
        if with_meta and record.meta is not None:
            item[META_FIELD] = record.meta.to_dict()
        return item

    def _decode(self, key_id: str, item: Stored) -> Record:
        meta = _meta_of(item.get(META_FIELD))
        if self.target.kind == "blob":
            data = item.get("data")
            return Record(self.target.key_schema.parse_id(key_id),
                          bytes(data) if isinstance(data, (bytes, bytearray)) else None, meta)
        body = copy_value(user_fields(item, meta, lambda w: w if isinstance(w, dict) else None))
        try:
            key = self.target.key_schema.key_of(body)
        except RecordError as err:
            raise err.located(dataset=self.target.dataset, key=key_id, target=self.target.replica) from None
        return Record(key, body, meta)

    def _captured(self, key_id: str, item: Stored) -> Record:
        """``item`` as capture reports it: its metadata only if it still describes the body."""
        record = self._decode(key_id, item)
        return Record(record.key, record.body, meta_if_valid(record))

    # -- lifecycle ------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        """Nothing to create: the store exists from construction."""

    def drop(self) -> None:
        with _LOCK:
            _STORES.pop(self._ident, None)

    def wipe(self) -> None:
        """Lose every item without logging deletes (a store restored empty outside mcrepl)."""
        with self._store.lock:
            self._store.items.clear()
            self._store.listed.clear()

    # -- native writes (seeding, simulation) ------------------------------------------------

    def write_native(self, records: Sequence[Record]) -> None:
        with self._store.lock:
            for record in records:
                self._put(record.key.id, self._encode(record, with_meta=False))

    def write_heartbeat(self, written_ms: int) -> None:
        """The heartbeat as a plain write (no metadata), logged as a native change."""
        record = heartbeat_record(self.target.key_schema, written_ms, blob_dataset=self.target.kind == "blob")
        with self._store.lock:
            self._put(record.key.id, self._encode(record, with_meta=False))

    def write_raw(self, key_id: str, item: Stored) -> None:
        """Store ``item`` exactly as given, as a foreign writer could (it may not even decode)."""
        with self._store.lock:
            self._put(key_id, copy.deepcopy(item))

    def delete_native(self, keys: Sequence[RecordKey]) -> None:
        with self._store.lock:
            for key in keys:
                self._store.items.pop(key.id, None)
                self._store.listed.pop(key.id, None)
                self._store.log.append((key.id, None, self._store.now_ms()))

    def _put(self, key_id: str, item: Stored) -> None:
        now = self._store.now_ms()
        self._store.items[key_id] = item
        self._store.generation += 1
        self._store.listed[key_id] = (self._store.generation, now)
        self._store.log.append((key_id, item, now))

    def purge_tombstones(self, older_than_ms: int) -> int:
        with self._store.lock:
            old = [k for k, item in self._store.items.items()
                   if (m := _meta_of(item.get(META_FIELD))) is not None and m.tombstone
                   and m.version.wall_ms < older_than_ms]
            for k in old:
                del self._store.items[k]
                self._store.listed.pop(k, None)
        return len(old)

    # -- capture ------------------------------------------------------------------------------

    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        if self._listing:
            return self._listing_page(cursor, limit)
        if self._feed:
            return self._latest_version_page(cursor, limit)
        if cursor is None and self.target.options.get("initial_capture") == "scan":
            with self._store.lock:
                cursor = {"phase": "scan", "from": len(self._store.log), "after": ""}
        if cursor is None and self.target.options.get("initial_capture") == "feed":
            with self._store.lock:
                cursor = {"phase": "feed", "pos": 0, "upto": len(self._store.log)}
        if cursor is not None and cursor.get("phase") == "scan":
            return self._scan_page(cursor, limit)
        if cursor is not None and cursor.get("phase") == "feed":
            return self._feed_page(cursor, limit)
        pos = int((cursor or {}).get("pos", 0))
        until = int((cursor or {}).get("until", 0))
        with self._store.lock:
            end = len(self._store.log)
            stop = min(pos + limit, until) if pos < until else pos + limit
            page = self._store.log[pos:stop]
        changes, bad = self._changes(page)
        new_pos = pos + len(page)
        overlap = pos < until
        after: Cursor = {"pos": new_pos, "until": until} if new_pos < until else {"pos": new_pos}
        return ChangePage(changes, after, more=new_pos < end or overlap, rejected=bad, overlap=overlap)

    def _latest_version_page(self, cursor: Cursor | None, limit: int) -> ChangePage:
        """The next ``limit`` items whose last change lies after the cursor, in the order of those
        changes, each in its current state; a deleted item is not reported at all."""
        pos = int((cursor or {}).get("pos", 0))
        with self._store.lock:
            log = list(self._store.log)
        picked = _latest_changes(log, pos, limit, deletes=False)
        changes, bad = self._changes([log[i] for i in picked])
        more = len(picked) == limit and picked[-1] + 1 < len(log)
        return ChangePage(changes, {"pos": picked[-1] + 1 if more else len(log)}, more=more, rejected=bad)

    def _feed_page(self, cursor: Cursor, limit: int) -> ChangePage:
        """From the beginning, each key's latest change only; at ``upto``, the live log."""
        pos, upto = int(cursor["pos"]), int(cursor["upto"])
        with self._store.lock:
            history = self._store.log[:upto]
        picked = _latest_changes(history, pos, limit, deletes=True)
        changes, bad = self._changes([history[i] for i in picked])
        if len(picked) == limit and picked[-1] + 1 < upto:
            return ChangePage(changes, {**cursor, "pos": picked[-1] + 1}, more=True, rejected=bad)
        return ChangePage(changes, {"pos": upto}, more=True, rejected=bad)

    def _changes(self, entries: list[tuple[str, Stored | None, int]]) -> tuple[list[Change], list[RecordError]]:
        changes: list[Change] = []
        bad: list[RecordError] = []
        for key_id, item, at_ms in entries:
            if item is None:
                changes.append(dataclasses.replace(self._delete_change(key_id), observed_ms=at_ms))
                continue
            try:
                changes.append(Change(self._captured(key_id, item), observed_ms=at_ms))
            except RecordError as err:
                bad.append(err)
        return changes, bad

    def _scan_page(self, cursor: Cursor, limit: int) -> ChangePage:
        """Current items after ``cursor['after']`` in key order; at the end, the change log from ``from``."""
        with self._store.lock:
            names = sorted(k for k in self._store.items if k > cursor["after"])[:limit]
            items = [(k, self._store.items[k]) for k in names]
            end = len(self._store.log)
        changes, bad = [], []
        for key_id, item in items:
            try:
                changes.append(Change(self._captured(key_id, item)))
            except RecordError as err:
                bad.append(err)
        if len(names) == limit:
            return ChangePage(changes, {**cursor, "after": names[-1]}, more=True, scanned=True, rejected=bad)
        # scan done: the log from where it stood before the scan; what was written since overlaps
        return ChangePage(changes, {"pos": int(cursor["from"]), "until": end}, more=True, scanned=True,
                          rejected=bad)

    def _listing_page(self, cursor: Cursor | None, limit: int) -> ChangePage:
        """The next page of a listing compared with the cursor's manifest (as GCS and S3 capture)."""
        manifest, at, full = read_cursor(cursor)
        with self._store.lock:
            names = sorted((k for k in self._store.items if at is None or k > at), key=lambda k: k.encode())
            listing = [Listed(k, self._store.listed[k][0], (self._store.items[k], self._store.listed[k][1]))
                       for k in names]
        page = scan(manifest, listing, at, limit)
        changes: list[Change] = []
        bad: list[RecordError] = []
        for event in page.events:
            outcome: Fetched | RecordError | None = None
            if event.listed is not None:
                item, at_ms = event.listed.blob
                try:
                    outcome = Fetched(self._captured(event.name, item), event.listed.generation, at_ms)
                except RecordError as err:
                    bad.append(err)
                    outcome = err
            change = record_outcome(manifest, event, outcome, self.target.key_schema.parse_id)
            if change is not None:
                changes.append(change)
        return ChangePage(changes, make_cursor(manifest, page.at if page.more else None, full and page.more),
                          more=page.more, scanned=full, rejected=bad, mid_pass=at is not None)

    def _delete_change(self, key_id: str) -> Change:
        key = self.target.key_schema.parse_id(key_id)
        body = None if self.target.kind == "blob" else self.target.key_schema.key_body(key)
        return Change(Record(key, body, None), native_delete=True)

    def current_cursor(self) -> Cursor:
        with self._store.lock:
            if not self._listing:
                return {"pos": len(self._store.log)}
            manifest = Manifest()
            for key_id, (generation, _) in self._store.listed.items():
                meta = _meta_of(self._store.items[key_id].get(META_FIELD))
                manifest.set(key_id, generation, tombstone=bool(meta and meta.tombstone))
            return make_cursor(manifest)

    # -- apply ---------------------------------------------------------------------------------

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        results = []
        with self._store.lock:
            for rec in records:
                try:
                    results.append(self._apply_one(rec))
                except RecordError as err:
                    results.append(rejected(rec, err, self.target))
        return results

    def _apply_one(self, rec: Record) -> ApplyResult:
        if rec.meta is None:
            raise RecordError("unstamped", "apply_batch needs records stamped with a version")
        item = self._encode(rec)
        found = self._store.items.get(rec.key.id)
        existing = None
        if found is not None:
            try:
                existing = self._decode(rec.key.id, found)
            except RecordError:
                existing = None           # an undecodable foreign item: unversioned, overwritten
        stored_meta = meta_if_valid(existing) if existing else None
        if decide(rec.meta, stored_meta) is not ApplyOutcome.APPLIED:
            return result_of(rec, stored_meta, existing)
        self._put(rec.key.id, item)
        return ApplyResult(rec.key, ApplyOutcome.APPLIED, existing=existing)

    # -- reads -----------------------------------------------------------------------------------

    def read(self, key: RecordKey) -> Record | None:
        with self._store.lock:
            item = self._store.items.get(key.id)
        if item is None:
            return None
        try:
            return self._decode(key.id, item)
        except RecordError:
            return None

    def list_digests(self) -> Iterator[Digest]:
        """Range by range, so a listing never copies more than one range of the store at once."""
        for part in self.digest_ranges():
            yield from self.list_range_digests(part)

    def digest_ranges(self) -> list[DigestRange]:
        """Slices by a stable hash of the key id, sized to :data:`RANGE_TARGET_KEYS` (at least 4)."""
        with self._store.lock:
            count = len(self._store.items)
        n = ranges_for(count, minimum=4, maximum=4096)
        return [DigestRange(i, n, None, f"hash slice {i + 1} of {n}") for i in range(n)]

    def list_range_digests(self, part: DigestRange) -> Iterator[Digest]:
        """The digests of the keys whose ``crc32`` falls in ``part``'s slice (a snapshot of that slice)."""
        with self._store.lock:
            items = [(k, v) for k, v in self._store.items.items()
                     if zlib.crc32(k.encode("utf-8")) % part.of == part.index]
        for key_id, item in items:
            try:
                rec = self._decode(key_id, item)
            except RecordError:
                continue
            meta = meta_if_valid(rec)
            yield Digest(rec.key.id, meta.version.token if meta else None,
                         meta.comparable_hash if meta else rec.digest_hash(False),
                         rec.tombstone)


def _latest_changes(log: Sequence[tuple[str, Stored | None, int]], pos: int, limit: int, *,
                    deletes: bool) -> list[int]:
    """Indexes of the first ``limit`` entries from ``pos`` that are their key's last change in
    ``log`` (a change feed's view: each key once, at its latest change), deletes too or not."""
    last = {key_id: i for i, (key_id, _, _) in enumerate(log)}
    return [i for i in range(pos, len(log)) if last[log[i][0]] == i and (deletes or log[i][1] is not None)][:limit]


def _meta_of(raw: Any) -> ReplicationMeta | None:
    if not isinstance(raw, dict):
        return None
    try:
        return ReplicationMeta.from_dict(raw)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
