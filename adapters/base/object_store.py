"""A complete adapter for object stores, over a handful of primitives each store writes.

As fsspec's ``AbstractFileSystem`` does for files, this module holds everything an
object store's adapter shares — conditional apply without a read where the state is
known, capture by listing against a manifest, reads pinned to one object version,
digests from listing metadata, tombstone purges — and asks the store for a few
primitives only (:class:`ObjectIO`): list in name order, stat, fetch one version,
put with a precondition, remove. GCS and S3 are both this class plus their I/O, their
naming rules and their :class:`~.objects.ObjectLayout`.

Objects are records one-to-one: the name is ``RecordKey.id`` for documents, the raw
name for blobs; replication metadata is custom object metadata (:mod:`.objects`).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .conditional import KnownStates, PreconditionFailed, StoredState, apply_each, apply_with_known
from .digest_ranges import DigestRange
from .errors import NotFoundError, RecordError, UnavailableError
from .interface import (ApplyResult, Change, ChangePage, Cursor, Digest, ReplicaAdapter, ReplicaTarget,
                        conflict_between)
from .listing import Event, Fetched, Listed, record_outcome, scan
from .manifest import Manifest, make_cursor, read_cursor
from .objects import ObjectLayout, decode_metadata, key_of_name, tombstone_body
from .record import Record, RecordKey
from .reserved import heartbeat_record
from .retry import RetryPolicy, policy_for

log = logging.getLogger("mcrepl.adapters.objects")
T = TypeVar("T")
R = TypeVar("R")
Token = TypeVar("Token")
#: threads of one adapter: the apply fan-out plus capture/digest downloads
WORKERS = 8
#: where name ranges of a digest listing start: digits and punctuation, upper case, a-m, n and above
NAME_BOUNDS: tuple[str, ...] = ("A", "a", "n")
#: re-reads of an object that keeps changing between its metadata read and its download
FETCH_ATTEMPTS = 5


class ObjectMissing(NotFoundError):
    """An object (not the bucket) was not there, or not in the version asked for."""


class _Unconditional:
    def __repr__(self) -> str:
        return "UNCONDITIONAL"


#: ``expect`` for a write or delete that takes no precondition (an application's own writes)
UNCONDITIONAL: Any = _Unconditional()


@dataclass(frozen=True)
class StoredObject(Generic[Token]):
    """One object as a listing or a stat reports it (no content).

    ``token`` is what a precondition or a pinned read names (GCS: the generation; S3: the
    ETag); ``version`` is a positive integer that changes whenever the object does (the
    manifest keeps it); ``digest`` is the store's digest of the content, compared with
    ``mcrepl-md5`` (:meth:`~.objects.ObjectLayout.trusted_meta`).
    """

    name: str
    token: Token
    version: int
    metadata: Mapping[str, str] | None
    digest: str | None
    updated_ms: int | None = None


class ObjectIO(Protocol[Token]):
    """The primitives a store provides; every call runs under the retry policy, SDK errors translated.

    Each is bounded by the store client's request timeouts and the retry deadline;
    reads and listings are idempotent, and so are conditional writes and deletes.
    """

    def list(self, start_after: str | None = None) -> Iterator[StoredObject[Token]]:
        """Every object with a name after ``start_after`` (all when ``None``), in UTF-8 byte order."""

    # optional: ``list_range(start, end)`` lists the names in ``[start, end)`` (``None``: open),
    # in name order; a store with it gets ranged digest listings (:meth:`ObjectStoreAdapter.digest_ranges`)

    def stat(self, name: str, key: str | None = None) -> StoredObject[Token] | None:
        """The object's metadata (no content), or ``None`` if it does not exist."""

    def fetch(self, obj: StoredObject[Token], key: str | None = None) -> bytes:
        """The content of exactly that version of the object; :class:`ObjectMissing` when it was replaced."""

    def put(self, name: str, data: bytes, content_type: str, metadata: Mapping[str, str] | None, *,
            expect: Token | None, key: str | None = None) -> Token:
        """Write ``name`` if it holds ``expect`` (``None``: must not exist; :data:`UNCONDITIONAL`: any).

        Raises :class:`~.conditional.PreconditionFailed` when it does not; returns the new token.
        """

    def remove(self, name: str, *, expect: Token | None = UNCONDITIONAL, key: str | None = None) -> bool:
        """Delete ``name`` if it holds ``expect``; ``False`` if it was already gone."""

    def ensure_bucket(self, location: str | None) -> bool:
        """Create the bucket if missing (in ``location`` when given); ``True`` if this call created it."""

    def delete_bucket(self) -> None:
        """Delete the (empty) bucket; a missing one is fine."""

    def close(self) -> None:
        """Release the client."""


class ObjectStoreAdapter(ReplicaAdapter, Generic[Token]):
    """A bucket holding one dataset, one object per record; every :class:`ReplicaAdapter` guarantee.

    A subclass provides :attr:`layout`, :meth:`open_io` and :meth:`object_name` (the
    store's naming rules), and :meth:`bucket_location`. Apply is read → decide → write with
    the store's precondition, minus the read when the state is known: an object this
    adapter wrote last is updated on the token it got back, and while unknown keys keep
    turning out absent (an initial sync) a create-only write goes first; a failed
    precondition falls back to the read (:func:`~.conditional.apply_with_known`).
    Capture compares a listing with the manifest carried in the cursor (:mod:`.listing`).
    """

    layout: ObjectLayout

    def __init__(self, target: ReplicaTarget, policy: RetryPolicy | None = None) -> None:
        super().__init__(target)
        self.io: ObjectIO[Token] = self.open_io(target, policy or policy_for(target.options))
        self._kind = target.kind
        self._schema = target.key_schema
        # the manifest behind the last cursor returned, so the usual next call (with that
        # cursor) skips decoding it; popped on use, so it is never shared between calls
        self._manifests: dict[str, Manifest] = {}
        # token + metadata of objects we wrote last: an update is then one write
        # conditioned on that token instead of a metadata read and a write
        self._known: KnownStates[Token] = KnownStates(int(target.options.get("known_state_entries", 8192)))

    # -- what a store provides -------------------------------------------------------

    @abstractmethod
    def open_io(self, target: ReplicaTarget, policy: RetryPolicy) -> ObjectIO[Token]:
        """The store's primitives for ``target`` (no connection yet)."""

    @abstractmethod
    def object_name(self, key: RecordKey) -> str:
        """The object name of ``key``; :class:`RecordError` for a name the store refuses."""

    def bucket_location(self) -> str | None:
        """Where ``ensure_ready`` creates a missing bucket (``None``: the endpoint's default)."""
        return None if self.target.options.get("local") else self.target.region

    # -- lifecycle -------------------------------------------------------------------

    def ensure_ready(self) -> None:
        """Create the bucket if missing."""
        if self.io.ensure_bucket(self.bucket_location()):
            log.info("created bucket %s", self.target.resource)

    def drop(self) -> None:
        """Delete every object, then the bucket; a bucket already gone is fine."""
        try:
            names = [o.name for o in self.io.list()]
        except NotFoundError:
            return
        parallel(lambda n: self.io.remove(n), names)
        self.io.delete_bucket()
        self._known.clear()

    def close(self) -> None:
        self.io.close()

    # -- apply -----------------------------------------------------------------------

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        """Conditional apply of each record (8 threads; no batch atomicity on object stores)."""
        return apply_each(self.target, records, self._apply_one, workers=WORKERS)

    def _apply_one(self, record: Record) -> ApplyResult:
        assert record.meta is not None, "apply_batch needs stamped records"
        name = self.object_name(record.key)
        content, content_type = self.layout.encode_content(record, self._kind)
        metadata = self.layout.encode_metadata(record.meta, content)
        key_id = record.key.id

        def load() -> StoredState[Token]:
            return self._load_for_apply(record, name)

        def write(token: Token | None) -> Token:
            return self.io.put(name, content, content_type, metadata, expect=token, key=key_id)

        return apply_with_known(record, name, self._known, load, write)

    def _load_for_apply(self, record: Record, name: str) -> StoredState[Token]:
        """The stored state, fetching the body only when the decision or a merge needs it.

        Metadata proven by the store's digest decides alone; the body is fetched when the
        versions conflict (the engine's merge needs it) or when the object claims mcrepl
        metadata its digest does not confirm. An object without any mcrepl metadata is
        native: the write wins and its body is not read.
        """
        assert record.meta is not None
        obj = self.io.stat(name, record.key.id)
        if obj is None:
            return StoredState(None, None)
        meta = self.layout.trusted_meta(obj.metadata, obj.digest)
        if meta is not None and conflict_between(record.meta, meta) is None:
            body = tombstone_body(record.key, self._kind, self._schema) if meta.tombstone else None
            return StoredState(Record(record.key, body, meta), obj.token, meta=meta)
        if meta is None and decode_metadata(obj.metadata) is None:
            return StoredState(None, obj.token)
        try:
            fetched = self._fetch(obj, record.key)
        except RecordError:
            return StoredState(None, obj.token)      # not a document: native, overwrite it
        if fetched is None:
            return StoredState(None, None)
        stored, current = fetched
        return StoredState(stored, current.token)

    # -- reads -----------------------------------------------------------------------

    def read(self, key: RecordKey) -> Record | None:
        try:
            name = self.object_name(key)
        except RecordError:
            return None                   # a name the store cannot hold is never stored
        obj = self.io.stat(name, key.id)
        fetched = self._fetch(obj, key) if obj is not None else None
        return fetched[0] if fetched else None

    def _fetch(self, obj: StoredObject[Token], key: RecordKey) -> tuple[Record, StoredObject[Token]] | None:
        """``(record, object)`` for the live object, or ``None`` if it is gone.

        Fetches the listed version; if it was replaced meanwhile, stats it again, so the
        record's body and metadata always come from the same version. Raises
        :class:`RecordError` when the body is not a document of this dataset.
        """
        for _ in range(FETCH_ATTEMPTS):
            meta = self.layout.trusted_meta(obj.metadata, obj.digest)
            if meta is not None and meta.tombstone:
                return Record(key, tombstone_body(key, self._kind, self._schema), meta), obj
            try:
                data = self.io.fetch(obj, key.id)
            except ObjectMissing:
                again = self.io.stat(obj.name, key.id)
                if again is None:
                    return None
                obj = again
                continue
            return self.layout.stored_record(key, data, obj.metadata, obj.digest, self._kind,
                                             self._schema), obj
        raise UnavailableError(f"object {obj.name!r} kept changing while being read",
                               provider=self.target.provider, replica=self.target.replica,
                               dataset=self.target.dataset, operation="read", key=key.id)

    def list_digests(self) -> Iterator[Digest]:
        """Digests from listing metadata; only native objects are downloaded and hashed."""
        return self._digests_of(self.io.list())

    def digest_ranges(self) -> list[DigestRange]:
        """Name ranges split at :data:`NAME_BOUNDS`, when the store lists between two names.

        Names are cut by their first character (UTF-8 byte order equals code point order),
        which needs no request and works for any name; keys that share their first
        character share a range. A store whose I/O cannot bound a listing has no ranges
        (verify lists it whole).
        """
        if not callable(getattr(self.io, "list_range", None)):
            return []
        edges: list[str | None] = [None, *NAME_BOUNDS, None]
        n = len(edges) - 1
        return [DigestRange(i, n, (edges[i], edges[i + 1]),
                            f"names [{edges[i] or ''}, {edges[i + 1] or 'end'})") for i in range(n)]

    def list_range_digests(self, part: DigestRange) -> Iterator[Digest]:
        """The digests of the objects named in ``[start, end)`` of ``part``."""
        start, end = part.spec
        return self._digests_of(self.io.list_range(start, end))  # type: ignore[attr-defined]

    def _digests_of(self, objects: Iterator[StoredObject[Token]]) -> Iterator[Digest]:
        for page in chunks(objects, 256):
            natives = []
            for obj in page:
                meta = self.layout.trusted_meta(obj.metadata, obj.digest)
                if meta is None:
                    natives.append(obj)
                else:
                    yield Digest(self._key_id(obj.name), meta.version.token, meta.comparable_hash,
                                 meta.tombstone)
            for digest in parallel(self._native_digest, natives):
                if digest is not None:
                    yield digest

    def _native_digest(self, obj: StoredObject[Token]) -> Digest | None:
        key_id = self._key_id(obj.name)
        try:
            key = key_of_name(obj.name, self._kind, self._schema)
            fetched = self._fetch(obj, key)
        except RecordError:
            # not a record of this dataset: hash the raw bytes so verify shows a mismatch
            try:
                data = self.io.fetch(obj, key_id)
            except ObjectMissing:
                return None
            return Digest.of_undecodable(key_id, data)
        if fetched is None:
            return None
        record = fetched[0]
        meta = record.meta
        return Digest(key_id, meta.version.token if meta else None,
                      meta.comparable_hash if meta else record.digest_hash(False), record.tombstone)

    def _key_id(self, name: str) -> str:
        """The digest key id of an object: ``RecordKey.id`` (a blob name is escaped there)."""
        return RecordKey((name,)).id if self._kind == "blob" else name

    # -- capture ---------------------------------------------------------------------

    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        """Changed, new and vanished objects since the cursor's manifest (see :mod:`.listing`)."""
        cached = self._manifests.pop(str(cursor.get("m")), None) if cursor else None
        manifest, at, full = read_cursor(cursor, cached)
        listing = (Listed(o.name, o.version, o) for o in self.io.list(start_after=at))
        page = scan(manifest, listing, at, limit)
        outcomes = parallel(self._resolve, page.events)
        changes: list[Change] = []
        rejected: list[RecordError] = []
        for event, outcome in zip(page.events, outcomes):
            if isinstance(outcome, RecordError):
                rejected.append(outcome.located(dataset=self.target.dataset, key=event.name,
                                                target=self.target.replica))
            change = record_outcome(manifest, event, outcome,
                                    lambda name: key_of_name(name, self._kind, self._schema))
            if change is not None:
                changes.append(change)
        new_cursor = make_cursor(manifest, page.at if page.more else None, full and page.more)
        self._manifests.clear()
        self._manifests[new_cursor["m"]] = manifest
        return ChangePage(changes, new_cursor, more=page.more, scanned=full, rejected=rejected,
                          mid_pass=at is not None)

    def _resolve(self, event: Event) -> Fetched | RecordError | None:
        """Fetch a changed object (``None`` when it vanished); runs on worker threads."""
        if event.listed is None:
            return None
        try:
            key = key_of_name(event.name, self._kind, self._schema)
            fetched = self._fetch(event.listed.blob, key)
        except RecordError as err:
            return err
        if fetched is None:
            return None
        record, obj = fetched
        return Fetched(record, obj.version, obj.updated_ms)

    def current_cursor(self) -> Cursor:
        """A manifest of the bucket now: capture from it sees only later changes."""
        manifest = Manifest()
        for obj in self.io.list():
            meta = self.layout.trusted_meta(obj.metadata, obj.digest)
            manifest.set(obj.name, obj.version, tombstone=bool(meta and meta.tombstone))
        return make_cursor(manifest)

    # -- seeding (mcrepl.testing.seeding.NativeWriter), heartbeats and maintenance ----

    def write_native(self, records: Sequence[Record]) -> None:
        """Plain writes with no mcrepl metadata, as an application would write."""
        def put(record: Record) -> None:
            name = self.object_name(record.key)
            data, content_type = self.layout.encode_content(Record(record.key, record.body), self._kind)
            self.io.put(name, data, content_type, None, expect=UNCONDITIONAL, key=record.key.id)
        parallel(put, records)

    def write_heartbeat(self, written_ms: int) -> None:
        """The heartbeat as one plain upload (no mcrepl metadata): the listing reports it as a native write."""
        record = heartbeat_record(self._schema, written_ms, blob_dataset=self._kind == "blob")
        data, content_type = self.layout.encode_content(record, self._kind)
        self.io.put(self.object_name(record.key), data, content_type, None, expect=UNCONDITIONAL,
                    key=record.key.id)

    def delete_native(self, keys: Sequence[RecordKey]) -> None:
        """Plain deletes (no tombstone); a missing object is fine."""
        parallel(lambda key: self.io.remove(self.object_name(key), key=key.id), keys)

    def purge_tombstones(self, older_than_ms: int) -> int:
        """Delete mcrepl tombstones older than ``older_than_ms``, each only if unchanged.

        The delete carries the tombstone's token as a precondition, so a record written
        there meanwhile is never removed (where the store enforces delete preconditions).
        """
        doomed = []
        for obj in self.io.list():
            meta = self.layout.trusted_meta(obj.metadata, obj.digest)
            if meta is not None and meta.tombstone and meta.version.wall_ms < older_than_ms:
                doomed.append(obj)

        def purge(obj: StoredObject[Token]) -> bool:
            try:
                return self.io.remove(obj.name, expect=obj.token, key=obj.name)
            except PreconditionFailed:
                return False               # rewritten since listed: no longer an old tombstone
        return sum(parallel(purge, doomed))


def parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``fn`` over ``items`` on :data:`WORKERS` threads, results in input order."""
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items)), thread_name_prefix="object-io") as pool:
        return list(pool.map(fn, items))


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["FETCH_ATTEMPTS", "ObjectIO", "ObjectMissing", "ObjectStoreAdapter", "StoredObject", "UNCONDITIONAL",
           "WORKERS", "chunks", "parallel"]
