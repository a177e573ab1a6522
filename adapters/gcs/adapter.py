"""Google Cloud Storage replica: one bucket per dataset per replica, one object per record.

Object names are the record key (``RecordKey.id`` for documents, the raw name for blobs);
replication metadata is custom object metadata (see :mod:`.wire`). Apply is
read → decide → write with a generation precondition, minus the read when the state is
known: an object we wrote last is updated conditioned on the generation we got back, and
while unknown keys keep turning out absent (an initial sync) a create-only upload
(``ifGenerationMatch=0``) goes first; a 412 falls back to the read (see
:func:`~mcrepl.adapters.base.conditional.apply_with_known`). Capture compares a listing with
the manifest of generations carried in the cursor (see :mod:`.capture`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..base.conditional import (KnownStates, PreconditionFailed, StoredState, apply_each,
                               apply_with_known)
from ..base.errors import NotFoundError, RecordError, UnavailableError
from ..base.interface import (ApplyResult, Capabilities, Change, ChangePage, Cursor, Digest,
                              ReplicaAdapter, ReplicaTarget, conflict_between)
from ..base.record import Record, RecordKey
from ..base.retry import RetryPolicy, policy_for
from . import wire
from .bucket_io import BucketIO
from .capture import Event, Listed, scan
from .client import WORKERS
from .cursor import Manifest, make_cursor, read_cursor
from .errors import ObjectMissing

log = logging.getLogger("mcrepl.adapters.gcs")
T = TypeVar("T")
R = TypeVar("R")
#: re-reads of an object that keeps changing between its metadata read and its download
FETCH_ATTEMPTS = 5


class GCSAdapter(ReplicaAdapter):
    """A bucket holding one dataset; honours every :class:`ReplicaAdapter` guarantee.

    GCS has no change log (``incremental_capture=False``): capture lists the bucket and
    diffs it with a manifest, which also reveals native deletes. Objects hold up to 5 TiB.
    """

    capabilities = Capabilities(incremental_capture=False, transactional_batch=False,
                                max_record_bytes=wire.MAX_OBJECT_BYTES, capture_sees_deletes=True)

    def __init__(self, target: ReplicaTarget, policy: RetryPolicy | None = None) -> None:
        super().__init__(target)
        self.io = BucketIO(target, policy or policy_for(target.options))
        self._kind = target.kind
        self._schema = target.key_schema
        # the manifest behind the last cursor returned, so the usual next call (with that
        # cursor) skips decoding it; popped on use, so it is never shared between calls
        self._manifests: dict[str, Manifest] = {}
        # generation + metadata of objects we wrote last: an update is then one upload
        # conditioned on that generation instead of a metadata read and an upload
        self._known: KnownStates[int] = KnownStates(int(target.options.get("known_state_entries", 8192)))

    # -- lifecycle -------------------------------------------------------------------

    def ensure_ready(self) -> None:
        """Create the bucket if missing (in ``target.region`` on real GCP)."""
        location = None if self.target.options.get("local") else self.target.region
        if self.io.ensure_bucket(location):
            log.info("created bucket %s", self.io.name)

    def drop(self) -> None:
        """Delete every object, then the bucket; a bucket already gone is fine."""
        try:
            names = [b.name for b in self.io.list()]
        except NotFoundError:
            return
        _parallel(lambda n: self.io.delete(n), names)
        self.io.delete_bucket()
        self._known.clear()

    def close(self) -> None:
        self.io.close()

    # -- apply -----------------------------------------------------------------------

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        """Conditional apply of each record (8 threads; no batch atomicity on GCS)."""
        return apply_each(self.target, records, self._apply_one, workers=WORKERS)

    def _apply_one(self, record: Record) -> ApplyResult:
        assert record.meta is not None, "apply_batch needs stamped records"
        name = wire.object_name(record.key, self._kind)
        content, content_type = wire.encode_content(record, self._kind)
        metadata = wire.encode_metadata(record.meta, content)
        key_id = record.key.id

        def load() -> StoredState[int]:
            return self._load_for_apply(record, name)

        def write(generation: int | None) -> int:
            return self.io.upload(name, content, content_type, metadata,
                                  if_generation_match=generation or 0, key=key_id)

        return apply_with_known(record, name, self._known, load, write)

    def _load_for_apply(self, record: Record, name: str) -> StoredState[int]:
        """The stored state, downloading the body only when the decision or a merge needs it.

        Metadata proven by the object's MD5 (see :mod:`.wire`) decides alone; the body is
        fetched when the versions conflict (the engine's merge needs it) or when the
        object claims mcrepl metadata that its MD5 does not confirm. An object without
        any mcrepl metadata is native: the write wins and its body is not read.
        """
        assert record.meta is not None
        blob = self.io.get(name, record.key.id)
        if blob is None:
            return StoredState(None, None)
        meta = wire.trusted_meta(blob.metadata, blob.md5_hash)
        if meta is not None and conflict_between(record.meta, meta) is None:
            body = wire.tombstone_body(record.key, self._kind, self._schema) if meta.tombstone else None
            return StoredState(Record(record.key, body, meta), int(blob.generation), meta=meta)
        if meta is None and wire.decode_metadata(blob.metadata) is None:
            return StoredState(None, int(blob.generation))
        try:
            fetched = self._fetch(name, blob, record.key)
        except RecordError:
            return StoredState(None, int(blob.generation))   # not a document: native, overwrite it
        if fetched is None:
            return StoredState(None, None)
        stored, generation, _ = fetched
        return StoredState(stored, generation)

    # -- reads -----------------------------------------------------------------------

    def read(self, key: RecordKey) -> Record | None:
        try:
            name = wire.object_name(key, self._kind)
        except RecordError:
            return None                   # a name GCS cannot hold is never stored
        blob = self.io.get(name, key.id)
        fetched = self._fetch(name, blob, key) if blob is not None else None
        return fetched[0] if fetched else None

    def _fetch(self, name: str, blob: Any, key: RecordKey) -> tuple[Record, int, Any] | None:
        """``(record, generation, blob)`` for the live object, or ``None`` if it is gone.

        Downloads the listed generation; if it was replaced meanwhile, reads the metadata
        again, so the record's body and metadata always come from the same generation.
        Raises :class:`RecordError` when the body is not a document of this dataset.
        """
        for _ in range(FETCH_ATTEMPTS):
            meta = wire.trusted_meta(blob.metadata, blob.md5_hash)
            if meta is not None and meta.tombstone:
                body = wire.tombstone_body(key, self._kind, self._schema)
                return Record(key, body, meta), int(blob.generation), blob
            try:
                data = self.io.download(name, int(blob.generation), key.id)
            except ObjectMissing:
                blob = self.io.get(name, key.id)
                if blob is None:
                    return None
                continue
            record = wire.stored_record(key, data, blob.metadata, blob.md5_hash, self._kind,
                                        self._schema)
            return record, int(blob.generation), blob
        raise UnavailableError(f"object {name!r} kept changing while being read", provider="gcs",
                               replica=self.target.replica, dataset=self.target.dataset,
                               operation="read", key=key.id)

    def list_digests(self) -> Iterator[Digest]:
        """Digests from listing metadata; only native objects are downloaded and hashed."""
        for page in _chunks(self.io.list(), 256):
            natives = []
            for blob in page:
                meta = wire.trusted_meta(blob.metadata, blob.md5_hash)
                if meta is None:
                    natives.append(blob)
                else:
                    yield Digest(self._key_id(blob.name), meta.version.token,
                                 meta.comparable_hash, meta.tombstone)
            for digest in _parallel(self._native_digest, natives):
                if digest is not None:
                    yield digest

    def _native_digest(self, blob: Any) -> Digest | None:
        key_id = self._key_id(blob.name)
        try:
            key = wire.key_of_name(blob.name, self._kind, self._schema)
            fetched = self._fetch(blob.name, blob, key)
        except RecordError:
            # not a record of this dataset: hash the raw bytes so verify shows a mismatch
            try:
                data = self.io.download(blob.name, int(blob.generation), key_id)
            except ObjectMissing:
                return None
            return Digest.of_undecodable(key_id, data)
        if fetched is None:
            return None
        record = fetched[0]
        meta = record.meta
        return Digest(key_id, meta.version.token if meta else None,
                      meta.comparable_hash if meta else record.digest_hash(False),
                      record.tombstone)

    def _key_id(self, name: str) -> str:
        """The digest key id of an object: ``RecordKey.id`` (a blob name is escaped there)."""
        return RecordKey((name,)).id if self._kind == "blob" else name

    # -- capture ---------------------------------------------------------------------

    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        """Changed, new and vanished objects since the cursor's manifest (see :mod:`.capture`)."""
        cached = self._manifests.pop(str(cursor.get("m")), None) if cursor else None
        manifest, at, full = read_cursor(cursor, cached)
        listing = (Listed(b.name, int(b.generation), b) for b in self.io.list(start_offset=at))
        page = scan(manifest, listing, at, limit)
        outcomes = _parallel(self._resolve, page.events)
        changes: list[Change] = []
        rejected: list[RecordError] = []
        for event, outcome in zip(page.events, outcomes):
            if isinstance(outcome, RecordError):
                rejected.append(outcome.located(dataset=self.target.dataset, key=event.name,
                                                target=self.target.replica))
            change = self._record_outcome(manifest, event, outcome)
            if change is not None:
                changes.append(change)
        new_cursor = make_cursor(manifest, page.at if page.more else None, full and page.more)
        self._manifests.clear()
        self._manifests[new_cursor["m"]] = manifest
        return ChangePage(changes, new_cursor, more=page.more, scanned=full, rejected=rejected)

    def _resolve(self, event: Event) -> tuple[Record, int, Any] | RecordError | None:
        """Fetch a changed object (``None`` when it vanished); runs on worker threads."""
        if event.listed is None:
            return None
        try:
            key = wire.key_of_name(event.name, self._kind, self._schema)
            return self._fetch(event.name, event.listed.blob, key)
        except RecordError as err:
            return err

    def _record_outcome(self, manifest: Manifest, event: Event,
                        outcome: tuple[Record, int, Any] | RecordError | None) -> Change | None:
        """Update the manifest for one event and build its :class:`Change` (in page order)."""
        name = event.name
        if isinstance(outcome, RecordError):
            # passed over (the caller quarantines it); a new generation is looked at again
            manifest.set(name, event.listed.generation if event.listed else 0)
            return None
        if outcome is None:
            known, purged = name in manifest, manifest.is_tombstone(name)
            manifest.remove(name)
            if not known or purged:
                return None                # created and deleted in between, or a tombstone purge
            try:
                key = wire.key_of_name(name, self._kind, self._schema)
            except RecordError:
                return None                # a foreign object that was skipped when it appeared
            return Change(Record(key, None), native_delete=True)
        record, generation, blob = outcome
        manifest.set(name, generation, tombstone=record.tombstone)
        updated = getattr(blob, "updated", None)
        observed = int(updated.timestamp() * 1000) if updated is not None else None
        return Change(record, observed_ms=observed)

    def current_cursor(self) -> Cursor:
        """A manifest of the bucket now: capture from it sees only later changes."""
        manifest = Manifest()
        for blob in self.io.list():
            meta = wire.trusted_meta(blob.metadata, blob.md5_hash)
            manifest.set(blob.name, int(blob.generation), tombstone=bool(meta and meta.tombstone))
        return make_cursor(manifest)

    # -- native writes and maintenance -----------------------------------------------

    def write_native(self, records: Sequence[Record]) -> None:
        """Plain uploads with no mcrepl metadata, as an application would write."""
        def put(record: Record) -> None:
            name = wire.object_name(record.key, self._kind)
            data, content_type = wire.encode_content(Record(record.key, record.body), self._kind)
            self.io.upload(name, data, content_type, None, key=record.key.id)
        _parallel(put, records)

    def delete_native(self, keys: Sequence[RecordKey]) -> None:
        """Plain deletes (no tombstone); a missing object is fine."""
        def remove(key: RecordKey) -> None:
            self.io.delete(wire.object_name(key, self._kind), key=key.id)
        _parallel(remove, keys)

    def purge_tombstones(self, older_than_ms: int) -> int:
        """Delete mcrepl tombstones older than ``older_than_ms``, each only if unchanged.

        The delete carries the tombstone's generation as a precondition, so a record
        written there meanwhile is never removed (real GCS enforces this; fake-gcs-server
        ignores delete preconditions).
        """
        doomed = []
        for blob in self.io.list():
            meta = wire.trusted_meta(blob.metadata, blob.md5_hash)
            if meta is not None and meta.tombstone and meta.version.wall_ms < older_than_ms:
                doomed.append((blob.name, int(blob.generation)))

        def purge(item: tuple[str, int]) -> bool:
            try:
                return self.io.delete(item[0], if_generation_match=item[1], key=item[0])
            except PreconditionFailed:
                return False               # rewritten since listed: no longer an old tombstone
        return sum(_parallel(purge, doomed))


def _parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``fn`` over ``items`` on :data:`WORKERS` threads, results in input order."""
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items)),
                            thread_name_prefix="gcs-io") as pool:
        return list(pool.map(fn, items))


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
