"""Embedded SQLite state of the sync engine.

One file holds everything a restart needs: capture cursors, the capture log, each
replica lane's offset and counters, the hybrid logical clock, conflicts, quarantine,
the primary pointer and its history, and the audit outbox. Every multi-row change is one
transaction, so a process killed at any instruction leaves a consistent store (WAL mode,
``synchronous=FULL``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcrepl.adapters.base import McreplError
from mcrepl.orchestrator.clock import SYSTEM_CLOCK, Clock
from mcrepl.orchestrator.hlc import ClockState

from .db import Database
from .heartbeats import HeartbeatTable
from .journal import ConflictRow, Journal, QuarantineRow
from .lanes import COUNTERS, LaneState, LaneTable
from .leases import Lease, PartitionLeases, this_owner
from .log import CaptureLog, LogEntry, Staging, decode_record, encode_record
from .outbox import AuditOutbox, AuditSink

if TYPE_CHECKING:
    from mcrepl.policies.capture_log import LogCipher

CLOCK_ROW = "hlc"
"""The one persisted hybrid-logical-clock reading: every origin's versions are issued from it."""


@dataclass(frozen=True)
class PrimaryPointer:
    """Which location is a dataset's primary, under which epoch (fencing token)."""

    dataset: str
    location: str
    epoch: int


def _demoted_key(dataset: str, epoch: int) -> str:
    return f"epoch_demoted_at:{dataset}:{epoch}"


class EpochChanged(McreplError):
    """A promotion happened while work begun under the previous epoch was running."""


_DEFAULT_SINK: Any = object()


class StateStore:
    """The state file: ``log``, ``lanes`` and ``journal`` tables plus clock, pointer and audit outbox.

    ``audit`` is where committed audit entries are flushed: by default the hash-chained
    ``audit.jsonl`` beside the state file (``None``: keep them staged, e.g. in-memory
    stores). Opening a store flushes what a crash left staged.
    """

    def __init__(self, path: str | Path, *, clock: Clock = SYSTEM_CLOCK, durable: bool = True,
                 audit: AuditSink | None = _DEFAULT_SINK) -> None:
        self.clock = clock
        self.db = Database(path, durable=durable)
        self._ciphers: dict[str, LogCipher] = {}       # shared by the log and the staging table
        self.log = CaptureLog(self.db, clock.time, self._ciphers)
        self.lanes = LaneTable(self.db, clock.time)
        self.journal = Journal(self.db, clock.time)
        self.staging = Staging(self.db, self._ciphers)
        self.leases = PartitionLeases(self.db, clock.time)
        self.heartbeats = HeartbeatTable(self.db)
        if audit is _DEFAULT_SINK:
            audit = _default_audit(path)
        self.audit = AuditOutbox(self.db, clock.time, audit)
        self.audit.flush()

    def seal_bodies(self, dataset: str, cipher: "LogCipher | None") -> None:
        """Seal the log's and the staging table's bodies of ``dataset`` with ``cipher`` from now on
        (``None``: plaintext; sealed rows still need the cipher to be read)."""
        if cipher is None:
            self._ciphers.pop(dataset, None)
        else:
            self._ciphers[dataset] = cipher

    def transaction(self):  # type: ignore[no-untyped-def]
        """An atomic block over every table (see :meth:`Database.transaction`)."""
        return self.db.transaction()

    # -- hybrid logical clock ----------------------------------------------------------

    def load_clock(self) -> ClockState:
        """The highest clock reading ever persisted (zero when new).

        Rows written under other names by older versions count too, so an upgrade never
        restarts the clock below a version it issued.
        """
        row = self.db.one("SELECT wall_ms, counter FROM clock ORDER BY wall_ms DESC, counter DESC LIMIT 1")
        return ClockState(int(row["wall_ms"]), int(row["counter"])) if row else ClockState()

    def save_clock(self, state: ClockState) -> None:
        """Persist a clock reading (joins the caller's transaction); never moves it backwards."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT wall_ms, counter FROM clock WHERE name=?", (CLOCK_ROW,)).fetchone()
            if row and ClockState(row[0], row[1]) >= state:
                return
            conn.execute("INSERT OR REPLACE INTO clock(name, wall_ms, counter) VALUES (?,?,?)",
                         (CLOCK_ROW, state.wall_ms, state.counter))

    # -- primary pointer ---------------------------------------------------------------

    def primary(self, dataset: str, default_location: str) -> PrimaryPointer:
        """The dataset's primary; the first call records ``default_location`` at epoch 1."""
        with self.db.transaction() as conn:
            now = self.clock.time()
            if conn.execute("INSERT OR IGNORE INTO primary_pointer(dataset, location, epoch, changed_at) "
                            "VALUES (?,?,1,?)", (dataset, default_location, now)).rowcount:
                conn.execute("INSERT OR IGNORE INTO primary_history(dataset, epoch, location, started_at) "
                             "VALUES (?,1,?,?)", (dataset, default_location, now))
            row = conn.execute("SELECT location, epoch FROM primary_pointer WHERE dataset=?",
                               (dataset,)).fetchone()
        return PrimaryPointer(dataset, row[0], int(row[1]))

    def check_epoch(self, dataset: str, epoch: int) -> None:
        """Raise :class:`EpochChanged` unless ``epoch`` is still the dataset's epoch.

        Called inside the transactions that commit a lane's batch, a settlement or a repair:
        work begun under a primary that was demoted meanwhile must not be committed as if
        that primary were still in charge (its settlements would carry the demoted epoch).
        """
        row = self.db.one("SELECT location, epoch FROM primary_pointer WHERE dataset=?", (dataset,))
        if row is not None and int(row["epoch"]) != epoch:
            raise EpochChanged(f"the primary of {dataset!r} changed to {row['location']} (epoch {row['epoch']}) "
                               f"while work begun under epoch {epoch} was running; it will be redone under the "
                               "new primary")

    def current_primary(self, dataset: str) -> PrimaryPointer | None:
        """The recorded primary of ``dataset``, or ``None`` before its first pass."""
        row = self.db.one("SELECT location, epoch FROM primary_pointer WHERE dataset=?", (dataset,))
        return PrimaryPointer(dataset, str(row["location"]), int(row["epoch"])) if row else None

    def epochs_of(self, dataset: str, location: str) -> set[int]:
        """Every epoch in which ``location`` was the primary of ``dataset``."""
        return {int(r["epoch"]) for r in self.db.rows(
            "SELECT epoch FROM primary_history WHERE dataset=? AND location=?", (dataset, location))}

    def demoted_since(self, dataset: str, location: str) -> float | None:
        """When ``location`` last stopped being the primary of ``dataset`` (this host's clock).

        ``None`` when it never was the primary, or still is.
        """
        row = self.db.one("SELECT MIN(started_at) AS at FROM primary_history WHERE dataset=? AND epoch > "
                          "(SELECT MAX(epoch) FROM primary_history WHERE dataset=? AND location=?)",
                          (dataset, dataset, location))
        return float(row["at"]) if row is not None and row["at"] is not None else None

    def set_primary(self, dataset: str, location: str, *, fence: bool = True) -> PrimaryPointer:
        """Point ``dataset`` at a new primary and bump the epoch (used by failover).

        With ``fence`` (the default) the end of the old epoch is recorded in the same
        transaction (:meth:`demoted_at`, for reports and ``failover status``); writers are
        fenced by the epoch itself, which they check before writing. ``fence=False``
        exists only so drills can show what split-brain does without it.
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT epoch FROM primary_pointer WHERE dataset=?", (dataset,)).fetchone()
            epoch = (int(row[0]) if row else 0) + 1
            now = self.clock.time()
            conn.execute("INSERT OR REPLACE INTO primary_pointer(dataset, location, epoch, changed_at) "
                         "VALUES (?,?,?,?)", (dataset, location, epoch, now))
            conn.execute("INSERT OR REPLACE INTO primary_history(dataset, epoch, location, started_at) "
                         "VALUES (?,?,?,?)", (dataset, epoch, location, now))
            if fence and row:
                conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?,?)",
                             (_demoted_key(dataset, epoch - 1), repr(now)))
        return PrimaryPointer(dataset, location, epoch)

    def demoted_at(self, dataset: str, epoch: int) -> float | None:
        """When ``epoch`` of ``dataset`` ended by a fenced promotion (``None``: current or unfenced)."""
        value = self.get_meta(_demoted_key(dataset, epoch))
        return float(value) if value is not None else None

    # -- small named values ------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        """A named value (e.g. the hash of the last configuration seen)."""
        row = self.db.one("SELECT value FROM meta WHERE name=?", (name,))
        return str(row["value"]) if row else None

    def set_meta(self, name: str, value: str) -> None:
        """Store a named value."""
        self.db.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?,?)", (name, value))

    def clear_meta(self, name: str) -> None:
        """Forget a named value."""
        self.db.execute("DELETE FROM meta WHERE name=?", (name,))

    def clear_meta_prefix(self, prefix: str) -> int:
        """Forget every named value whose name starts with ``prefix``; how many there were."""
        return self.db.execute("DELETE FROM meta WHERE substr(name, 1, ?)=?", (len(prefix), prefix))

    def mark_dataset_purged(self, dataset: str) -> None:
        """Remember when the dataset's tombstones were last purged."""
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO datasets(dataset) VALUES (?)", (dataset,))
            conn.execute("UPDATE datasets SET last_purge_at=? WHERE dataset=?", (self.clock.time(), dataset))

    def request_verify(self, dataset: str) -> None:
        """Ask for an anti-entropy verify of ``dataset`` at the next pass (after a promotion, a wipe …)."""
        with self.db.transaction():
            self.db.execute("INSERT OR IGNORE INTO datasets(dataset) VALUES (?)", (dataset,))
            self.db.execute("UPDATE datasets SET verify_requested_at=? WHERE dataset=?", (self.clock.time(), dataset))

    def verify_requested(self, dataset: str) -> bool:
        """Whether a verify was asked for and has not run since."""
        row = self.db.one("SELECT verify_requested_at AS r FROM datasets WHERE dataset=?", (dataset,))
        if row is None or row["r"] is None:
            return False
        last = self.last_verify(dataset)
        return last is None or float(last["started_at"]) < float(row["r"])

    def record_verify(self, dataset: str, started_at: float, converged: bool, divergent: int, repaired: int,
                      summary: str) -> None:
        """Remember one anti-entropy verify (what ``status`` shows as the dataset's last comparison)."""
        self.db.execute("INSERT INTO verify_runs(dataset, started_at, finished_at, converged, divergent, "
                        "repaired, summary) VALUES (?,?,?,?,?,?,?)",
                        (dataset, started_at, self.clock.time(), int(converged), divergent, repaired, summary))

    def last_verify(self, dataset: str) -> dict[str, Any] | None:
        """The latest recorded verify of ``dataset``."""
        row = self.db.one("SELECT started_at, finished_at, converged, divergent, repaired, summary "
                          "FROM verify_runs WHERE dataset=? ORDER BY id DESC LIMIT 1", (dataset,))
        return dict(row) if row else None

    def close(self) -> None:
        """Flush staged audit entries and close the file."""
        self.audit.flush()
        self.db.close()


def _default_audit(path: str | Path) -> AuditSink | None:
    if str(path) == ":memory:":
        return None
    from mcrepl.orchestrator.observability.audit import AuditTrail, audit_path
    return AuditTrail(audit_path(Path(path).parent))


__all__ = ["COUNTERS", "AuditOutbox", "EpochChanged", "CaptureLog", "ConflictRow", "Journal", "LaneState", "LaneTable", "LogEntry",
           "Lease", "PartitionLeases", "PrimaryPointer", "QuarantineRow", "StateStore", "decode_record", "encode_record", "this_owner"]
