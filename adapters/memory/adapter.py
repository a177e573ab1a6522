"""In-memory replica: a dict per (replica, dataset), with a change log for capture."""

from __future__ import annotations

import threading
from typing import Iterator, Sequence

from ..base import (ApplyOutcome, ApplyResult, Capabilities, Change, ChangePage, Cursor, Digest,
                    Record, RecordKey, ReplicaAdapter, ReplicaTarget, conflict_between, decide,
                    meta_if_valid)

_STORES: dict[tuple[str, str, str], "_Store"] = {}
_LOCK = threading.Lock()


class _Store:
    def __init__(self) -> None:
        self.items: dict[RecordKey, Record] = {}
        self.log: list[Record] = []
        self.lock = threading.Lock()


class MemoryAdapter(ReplicaAdapter):
    """Process-local store; ``options['namespace']`` isolates tests from each other."""

    capabilities = Capabilities(
        incremental_capture=True, transactional_batch=True,
        max_record_bytes=16 * 1024 * 1024, capture_sees_deletes=True)

    def __init__(self, target: ReplicaTarget) -> None:
        super().__init__(target)
        ident = (str(target.options.get("namespace", "")), target.replica, target.resource)
        with _LOCK:
            self._store = _STORES.setdefault(ident, _Store())
        self._ident = ident

    def ensure_ready(self) -> None:
        """Nothing to create: the store exists from construction."""

    def write_native(self, records: Sequence[Record]) -> None:
        with self._store.lock:
            for record in records:
                native = Record(record.key, record.body, None)
                self._store.items[record.key] = native
                self._store.log.append(native)

    def delete_native(self, keys: Sequence[RecordKey]) -> None:
        with self._store.lock:
            for key in keys:
                self._store.items.pop(key, None)
                self._store.log.append(Record(key, None, None))

    def purge_tombstones(self, older_than_ms: int) -> int:
        with self._store.lock:
            old = [k for k, r in self._store.items.items()
                   if r.tombstone and r.meta is not None and r.meta.version.wall_ms < older_than_ms]
            for k in old:
                del self._store.items[k]
        return len(old)

    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        pos = int((cursor or {}).get("pos", 0))
        with self._store.lock:
            page = self._store.log[pos:pos + limit]
            end = len(self._store.log)
        changes = [Change(r, native_delete=r.body is None and r.meta is None) for r in page]
        new_pos = pos + len(page)
        return ChangePage(changes, {"pos": new_pos}, more=new_pos < end)

    def current_cursor(self) -> Cursor:
        with self._store.lock:
            return {"pos": len(self._store.log)}

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        results = []
        with self._store.lock:
            for rec in records:
                assert rec.meta is not None, "apply_batch needs stamped records"
                stored = self._store.items.get(rec.key)
                stored_meta = meta_if_valid(stored) if stored else None
                outcome = decide(rec.meta, stored_meta)
                if outcome is ApplyOutcome.APPLIED:
                    self._store.items[rec.key] = rec
                    self._store.log.append(rec)
                results.append(ApplyResult(rec.key, outcome, conflict_between(rec.meta, stored_meta),
                                           existing=stored))
        return results

    def read(self, key: RecordKey) -> Record | None:
        with self._store.lock:
            return self._store.items.get(key)

    def list_digests(self) -> Iterator[Digest]:
        with self._store.lock:
            items = list(self._store.items.values())
        for rec in items:
            meta = meta_if_valid(rec)
            yield Digest(rec.key.id, meta.version.token if meta else None,
                         meta.comparable_hash if meta else rec.digest_hash(False),
                         rec.tombstone)

    def drop(self) -> None:
        with _LOCK:
            _STORES.pop(self._ident, None)
