"""mcrepl's reserved key range: records the orchestrator itself writes beside user data.

The orchestrator writes a *heartbeat* to each dataset's primary at an interval (follow
mode, and ``sync --schedule``) and times its arrival at every replica, so lag is
measured end to end even when applications write nothing. Adapters write it through
their :class:`~.roles.Heartbeats` role, as a plain write an application could make, so
capture reports it like any other change; it then lives in every copy like any record
(captured, logged, routed, applied), but it is not user data: verify and anti-entropy
leave it out of their comparisons and counts, the residency rules do not apply to it
(it carries no user field), and listings meant for people (``mcrepl local peek``) skip it.

The range is every key whose partition value is :data:`HEARTBEAT_ID`. A dataset with a
sort key gets one heartbeat too, under a fixed sort value: the same string for a string
sort key, ``0`` for a number, the UTF-8 bytes of :data:`HEARTBEAT_ID` for a binary one. A
partition key that is not a string has no value mcrepl could reserve without taking one
an application may use, so such a dataset gets no heartbeat: :func:`heartbeat_key`
raises a :class:`~.errors.ConfigError` saying so, ``validate`` refuses follow mode with
heartbeats on it, and scheduled passes skip its heartbeat with a warning.
"""

from __future__ import annotations

import json

from .errors import ConfigError
from .record import KeySchema, Record, RecordKey, blob, document

HEARTBEAT_ID = "_mcrepl:heartbeat"
"""The partition value (and blob name) of the heartbeat record."""
WRITTEN_FIELD = "heartbeat_written_ms"
"""The body field that carries the heartbeat's write time (ms since the epoch, the writer's clock)."""


def is_reserved(key_id: str) -> bool:
    """Whether ``key_id`` (a :attr:`RecordKey.id`) lies in mcrepl's reserved range."""
    return key_id == HEARTBEAT_ID or key_id.startswith(HEARTBEAT_ID + "|")


def heartbeat_key(schema: KeySchema) -> RecordKey:
    """The heartbeat's key under ``schema`` (see the module docstring for the sort-key mapping).

    Raises :class:`ConfigError` for a partition key that is not a string.
    """
    if not heartbeat_capable(schema):
        raise ConfigError(f"heartbeats need a string partition key (their reserved key is {HEARTBEAT_ID!r}); "
                          f"the partition key {schema.partition.name!r} is of type {schema.partition.type}",
                          path="sync.heartbeat", fix="set sync.heartbeat: null for this dataset")
    if schema.sort is None:
        return RecordKey((HEARTBEAT_ID,))
    return RecordKey((HEARTBEAT_ID, 0 if schema.sort.type == "N" else
                      HEARTBEAT_ID.encode() if schema.sort.type == "B" else HEARTBEAT_ID))


def heartbeat_capable(schema: KeySchema) -> bool:
    """Whether a dataset keyed by ``schema`` can hold the heartbeat record."""
    return schema.partition.type == "S"


def heartbeat_record(schema: KeySchema, written_ms: int, *, blob_dataset: bool = False) -> Record:
    """The heartbeat written at ``written_ms``, unstamped (an adapter writes it as a plain write).

    A blob dataset's heartbeat is the object :data:`HEARTBEAT_ID` holding a small JSON
    document; a document dataset's is the key's fields plus :data:`WRITTEN_FIELD`.
    """
    if blob_dataset:
        return blob(HEARTBEAT_ID, json.dumps({WRITTEN_FIELD: written_ms}).encode())
    body: dict[str, object] = dict(schema.key_body(heartbeat_key(schema)))
    body[WRITTEN_FIELD] = written_ms
    return document(schema, body)


def written_ms_of(record: Record) -> int | None:
    """The write time a heartbeat record carries (``None`` for anything else or a tombstone)."""
    if not is_reserved(record.key.id) or record.tombstone:
        return None
    body = record.body
    if isinstance(body, bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    value = body.get(WRITTEN_FIELD) if isinstance(body, dict) else None
    try:
        return int(value) if value is not None else None   # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


__all__ = ["HEARTBEAT_ID", "WRITTEN_FIELD", "heartbeat_capable", "heartbeat_key", "heartbeat_record",
           "is_reserved", "written_ms_of"]
