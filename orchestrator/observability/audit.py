"""An append-only, hash-chained audit trail of every batch and configuration change.

The file is JSON lines; each entry is ``{seq, ts, kind, payload, prev, alg, hash}``
where ``hash = sha256(prev + canonical_json(entry without hash))`` — or, when the
environment variable ``MCREPL_AUDIT_KEY`` is set, HMAC-SHA256 of the same bytes under
that key (``alg`` says which). A plain chain detects an edit, a deletion, a reordering
or a line cut in the middle, but someone who can write the file can recompute every
hash after their edit; with the key kept outside the host they cannot.

Guarantees:

* :meth:`AuditTrail.append` returns only after the entry is on disk (``fsync``); it is
  serialised by a lock between threads and by ``fcntl.flock`` between processes, and
  re-reads the chain head under the lock, so concurrent writers never fork the chain.
* A torn final line (a crash mid-write, never acknowledged) is cut off by the next
  append, which records the repair as an ``audit.repaired`` entry.
* :meth:`AuditTrail.verify` names the first entry that does not check out.
* Payloads go through :func:`~.logging.redact`, so no secret is ever written.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from pydantic import SecretBytes

from .redaction import redact

GENESIS = "0" * 64
"""The ``prev`` of the first entry."""

KEY_ENV = "MCREPL_AUDIT_KEY"
AUDIT_FILENAME = "audit.jsonl"
_FIELDS = ("seq", "ts", "kind", "payload", "prev", "alg", "hash")


def audit_path(state_dir: str | Path) -> Path:
    """Where the audit trail of a state directory lives."""
    return Path(state_dir) / AUDIT_FILENAME


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8: the exact bytes that are hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class AuditVerdict:
    """Result of :meth:`AuditTrail.verify`: ``first_bad_seq`` is ``None`` when ``ok``."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str


class AuditTrail:
    """One audit file. Cheap to construct; opens the file per operation."""

    def __init__(self, path: str | Path, key: bytes | None = None,
                 sensitive_fields: Iterable[str] = ()) -> None:
        self.path = Path(path)
        env_key = os.environ.get(KEY_ENV)
        # a SecretBytes until the HMAC needs it: never printed by a repr, a log or a traceback
        raw = key if key is not None else (env_key.encode() if env_key else None)
        self._key = SecretBytes(raw) if raw is not None else None
        self._sensitive = tuple(sensitive_fields)
        self._lock = threading.Lock()

    # -- writing -----------------------------------------------------------------------

    def append(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Append one entry (redacted, fsynced, chained to the current head) and return it."""
        if not kind:
            raise ValueError("an audit entry needs a kind, e.g. 'sync.batch' or 'config.changed'")
        clean = json.loads(json.dumps(redact(payload, self._sensitive), default=str))
        with self._locked_head() as (fh, head):
            return self._write(fh, head, kind, clean)

    def append_many(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Append ``(kind, payload)`` entries in order under one lock and one ``fsync``.

        What the audit outbox flushes with: a follower commits many small batches, and one
        open, one head read and one fsync for all of them costs what one entry did. The
        guarantees are :meth:`append`'s: nothing returns before every entry is on disk, and a
        crash mid-write leaves a torn last line the next append cuts off.
        """
        if not entries:
            return []
        if not all(kind for kind, _ in entries):
            raise ValueError("an audit entry needs a kind, e.g. 'sync.batch' or 'config.changed'")
        clean = [(kind, json.loads(json.dumps(redact(payload, self._sensitive), default=str)))
                 for kind, payload in entries]
        with self._locked_head() as (fh, head):
            written = []
            for kind, payload in clean:
                head = self._write(fh, head, kind, payload, sync=False)
                written.append(head)
            fh.flush()
            os.fsync(fh.fileno())
            return written

    @contextmanager
    def _locked_head(self) -> Iterator[tuple[Any, dict[str, Any] | None]]:
        """The file open for appending under both locks, with its head; a torn last line cut off first.

        Both locks, because threads of this process share one file object per call and other
        processes (a second ``mcrepl`` on the same state) share the file itself.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                head, torn = _read_head(fh)
                if torn:
                    fh.truncate(fh.seek(0, os.SEEK_END) - torn)
                    head = self._write(fh, head, "audit.repaired",
                                       {"discarded_bytes": torn,
                                        "why": "an incomplete final line (a write cut short by a crash)"})
                yield fh, head
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write(self, fh: Any, head: dict[str, Any] | None, kind: str, payload: Any,
               sync: bool = True) -> dict[str, Any]:
        entry = {"seq": 0 if head is None else head["seq"] + 1,
                 "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "kind": kind, "payload": payload, "prev": GENESIS if head is None else head["hash"],
                 "alg": "hmac-sha256" if self._key else "sha256"}
        entry["hash"] = self._digest(entry)
        fh.seek(0, os.SEEK_END)
        fh.write((canonical_json(entry) + "\n").encode("utf-8"))
        if sync:
            fh.flush()
            os.fsync(fh.fileno())
        return entry

    def _digest(self, entry: dict[str, Any]) -> str:
        body = {k: v for k, v in entry.items() if k != "hash"}
        message = (entry["prev"] + canonical_json(body)).encode("utf-8")
        if entry["alg"] == "hmac-sha256":
            if self._key is None:
                raise _NeedsKey()
            return hmac.new(self._key.get_secret_value(), message, hashlib.sha256).hexdigest()
        return hashlib.sha256(message).hexdigest()

    # -- reading -----------------------------------------------------------------------

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every parseable entry in file order (use :meth:`verify` to trust them)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for line in fh:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` parseable entries."""
        from collections import deque
        return list(deque(self.entries(), maxlen=max(0, n)))

    def head(self) -> dict[str, Any] | None:
        """The last complete entry; publish its ``seq`` and ``hash`` to anchor the chain."""
        if not self.path.exists():
            return None
        with open(self.path, "rb") as fh:
            return _read_head(fh)[0]

    def verify(self) -> AuditVerdict:
        """Walk the chain and report the first entry that was edited, deleted, moved or cut.

        With a key configured every entry must carry an HMAC (a plain-hash entry in a
        keyed trail is a downgrade and fails); without one, HMAC entries can't be
        checked and the verdict says so.
        """
        if not self.path.exists():
            return AuditVerdict(False, 0, None, f"no audit trail at {self.path}")
        prev, expected = GENESIS, 0
        with open(self.path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)      # never read an append half-written
            for lineno, raw in enumerate(fh, start=1):
                bad = self._check_line(raw, lineno, expected, prev)
                if bad:
                    return AuditVerdict(False, expected, expected, bad)
                entry = json.loads(raw)
                prev, expected = entry["hash"], expected + 1
        return AuditVerdict(True, expected, None, f"{expected} entries, chain intact"
                            + (" (HMAC-verified)" if self._key else ""))

    def _check_line(self, raw: bytes, lineno: int, expected: int, prev: str) -> str | None:
        if not raw.endswith(b"\n"):
            return f"line {lineno} is incomplete (cut off at the end of the file)"
        try:
            entry = json.loads(raw)
        except ValueError:
            return f"line {lineno} is not valid JSON (cut or edited)"
        if not isinstance(entry, dict) or set(entry) != set(_FIELDS):
            return f"line {lineno} does not have the fields {', '.join(_FIELDS)}"
        if entry["seq"] != expected:
            return (f"line {lineno} holds seq {entry['seq']} where seq {expected} belongs: "
                    "an entry was deleted, inserted or moved")
        if entry["prev"] != prev:
            return (f"seq {expected} does not chain to the entry before it (prev hash differs): "
                    "an earlier entry was rewritten or this one was forged")
        if self._key and entry["alg"] != "hmac-sha256":
            return f"seq {expected} carries a plain hash in a keyed trail (downgrade)"
        try:
            digest = self._digest(entry)
        except _NeedsKey:
            return f"seq {expected} is HMAC-signed; set {KEY_ENV} to verify it"
        if not hmac.compare_digest(digest, str(entry["hash"])):
            return f"seq {expected} does not match its hash: its content was edited"
        return None


class _NeedsKey(Exception):
    pass


def _read_head(fh: Any) -> tuple[dict[str, Any] | None, int]:
    """(last complete entry, length of a torn final line), read backwards from the end."""
    end = fh.seek(0, os.SEEK_END)
    complete_end = _newline_end_before(fh, end)
    if complete_end == 0:
        return None, end
    line_start = _newline_end_before(fh, complete_end - 1)
    fh.seek(line_start)
    return json.loads(fh.read(complete_end - line_start)), end - complete_end


def _newline_end_before(fh: Any, limit: int) -> int:
    """Offset just after the last newline in ``[0, limit)`` (0 if there is none)."""
    pos = limit
    while pos > 0:
        step = min(4096, pos)
        fh.seek(pos - step)
        idx = fh.read(step).rfind(b"\n")
        if idx != -1:
            return pos - step + idx + 1
        pos -= step
    return 0
