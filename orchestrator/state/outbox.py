"""The audit outbox: audit entries committed in the same transaction as what they describe.

The audit trail is a hash-chained file (:mod:`mcrepl.orchestrator.observability.audit`);
a file append cannot join a SQLite transaction. So the engine writes each audit entry
into this table *inside* the transaction that commits the checkpoint it describes, and
:meth:`AuditOutbox.flush` then moves entries to the file in order. A crash between the
commit and the flush leaves the entry here, and the next flush (every state store flushes
when it opens) writes it: no checkpoint without its audit line. Each file entry carries
its outbox id, so an entry already appended before a crash is never appended twice.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Protocol

from .db import Database


class AuditSink(Protocol):
    """Where flushed entries go (the hash-chained file)."""

    def append(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]: ...

    def head(self) -> dict[str, Any] | None: ...


OUTBOX_ID = "outbox_id"
"""The payload field naming the outbox row a file entry came from."""


class AuditOutbox:
    """Stages audit entries in the state file; flushes them to an :class:`AuditSink`."""

    def __init__(self, db: Database, now: Callable[[], float], sink: AuditSink | None) -> None:
        self._db = db
        self._now = now
        self.sink = sink
        self._flush_lock = threading.Lock()

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        """Stage one entry (joins the caller's transaction, so it commits with the checkpoint)."""
        self._db.execute("INSERT INTO audit_outbox(kind, payload, at) VALUES (?,?,?)",
                         (kind, json.dumps(payload, sort_keys=True, default=str), self._now()))

    def pending(self) -> int:
        """Entries committed but not yet in the file."""
        row = self._db.one("SELECT COUNT(*) AS n FROM audit_outbox")
        return int(row["n"]) if row else 0

    def flush(self) -> int:
        """Append every staged entry to the sink, oldest first; returns how many were appended.

        A sink with ``append_many`` (the audit file) takes them all under one fsync, and the
        rows go in one delete; a crash between the two leaves rows the next flush finds
        already in the file (by their outbox id) and only deletes.
        """
        if self.sink is None:
            return 0
        with self._flush_lock:
            head = self.sink.head()
            last = int((head or {}).get("payload", {}).get(OUTBOX_ID, 0)) if isinstance(head, dict) else 0
            rows = self._db.rows("SELECT id, kind, payload FROM audit_outbox ORDER BY id")
            fresh = [(str(row["kind"]), {**json.loads(row["payload"]), OUTBOX_ID: row["id"]})
                     for row in rows if row["id"] > last]      # not appended before a crash cut the delete short
            many = getattr(self.sink, "append_many", None)
            if many is not None:
                many(fresh)
            else:
                for kind, payload in fresh:
                    self.sink.append(kind, payload)
            if rows:            # ids only grow: a row staged since the select has a larger one
                self._db.execute("DELETE FROM audit_outbox WHERE id<=?", (rows[-1]["id"],))
        return len(fresh)
