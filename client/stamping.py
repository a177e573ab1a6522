"""Turning an application's operation into a stamped record, as mcrepl's own writes are.

A write is a read-modify-write: the stored record is read, the writer's hybrid logical
clock moves past its version, and the new body (or tombstone) is stamped with a fresh
version, the stored version vector extended by it, and the epoch the writer believes
in. Stamped writes apply conditionally (newer wins) like replication does, so an
application and the sync engine never overwrite each other's newer data.
"""

from __future__ import annotations

import threading
from typing import Literal, Mapping

from mcrepl.adapters.base import KeySchema, Record, ReplicaAdapter, document, meta_if_valid, tombstone_of
from mcrepl.orchestrator.hlc import HybridLogicalClock

OpKind = Literal["insert", "update", "delete"]


class WriterClocks:
    """One hybrid logical clock per origin (``location/writer``), thread-safe.

    The origin names the location *and* the writer: mcrepl stamps a location's native
    writes and its settlements under the location itself, and two clocks must never
    issue one token.
    """

    def __init__(self) -> None:
        self._clocks: dict[str, HybridLogicalClock] = {}
        self._lock = threading.Lock()

    def __call__(self, origin: str) -> HybridLogicalClock:
        with self._lock:
            return self._clocks.setdefault(origin, HybridLogicalClock(origin))


def stamp(adapter: ReplicaAdapter, schema: KeySchema, clock: HybridLogicalClock, kind: OpKind, key: str,
          body: Mapping[str, object] | None, epoch: int) -> Record:
    """The record that performs ``kind`` on ``key`` at ``adapter``'s location under ``epoch``."""
    record_key = schema.parse_id(key)
    existing = adapter.read(record_key)
    meta = meta_if_valid(existing) if existing is not None else None
    if meta is not None:
        clock.observe(meta.version)
    version = clock.tick()
    vector = dict(meta.vector) if meta is not None else {}
    if kind == "delete":
        return tombstone_of(schema, record_key, version, vector, epoch=epoch)
    full = {**(body or {}), **schema.key_body(record_key)}
    return document(schema, full).stamped(version, vector, epoch=epoch)


__all__ = ["OpKind", "WriterClocks", "stamp"]
