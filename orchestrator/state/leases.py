"""Leases per partition: which coordinator drives a dataset's capture or a lane, until when.

The model is DynamoDB's KCL lease table and Cosmos DB's change-feed processor: a row per
partition (``capture:<location>``, ``lane:<location>``) naming its owner, a token that
goes up whenever the owner changes (a fencing token), and an expiry the owner keeps
pushing forward while it works. Two ``mcrepl sync`` processes on one state file (a cron
job overlapping the last one, an operator's manual run) therefore never drive the same
lane or capture at once: the second finds the partition leased and says so. A
coordinator that died leaves its leases to expire; one on the same host whose process is
gone is known dead at once, so a crashed cron job's successor does not wait.

The owner is the host and process (``host/pid``): every engine of one process shares
it, so a process re-takes its own leases (the simulation restarts engines in-process).
The checkpoints themselves (capture cursors, lane offsets) stay where they are: a lease
says who may move them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

from .db import Database

@dataclass(frozen=True)
class Lease:
    """A partition held by ``owner`` under fencing ``token`` until ``expires_at``."""

    dataset: str
    partition: str
    owner: str
    token: int
    expires_at: float


def this_owner() -> str:
    """The owner id of this process: ``host/pid``."""
    return f"{socket.gethostname()}/{os.getpid()}"


def _owner_gone(owner: str) -> bool:
    """Whether ``owner`` is a process on this host that no longer runs."""
    host, _, pid = owner.rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class PartitionLeases:
    """Takes, renews and releases partition leases in the state file (table ``partition_leases``)."""

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self._db = db
        self._now = now

    def take(self, dataset: str, partition: str, owner: str, ttl_s: float) -> tuple[Lease | None, Lease | None]:
        """``(lease, None)`` when ``owner`` now holds the partition; ``(None, holder)`` when another does."""
        now = self._now()
        with self._db.transaction():
            row = self._db.one("SELECT owner, token, expires_at FROM partition_leases WHERE dataset=? AND partition=?",
                               (dataset, partition))
            if row is not None and row["owner"] != owner and row["expires_at"] > now \
                    and not _owner_gone(row["owner"]):
                return None, Lease(dataset, partition, row["owner"], int(row["token"]), float(row["expires_at"]))
            token = 1 if row is None else int(row["token"]) + (row["owner"] != owner)
            self._db.execute("INSERT OR REPLACE INTO partition_leases(dataset, partition, owner, token, taken_at, "
                             "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                             (dataset, partition, owner, token, now, now + ttl_s))
        return Lease(dataset, partition, owner, token, now + ttl_s), None

    def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        """The lease pushed forward, or ``None`` when it was lost (expired and taken by another owner)."""
        expires = self._now() + ttl_s
        changed = self._db.execute("UPDATE partition_leases SET expires_at=? WHERE dataset=? AND partition=? "
                                   "AND owner=? AND token=?",
                                   (expires, lease.dataset, lease.partition, lease.owner, lease.token))
        return Lease(lease.dataset, lease.partition, lease.owner, lease.token, expires) if changed else None

    def release(self, lease: Lease) -> None:
        """Give the partition up now (its expiry moves to the present; the token stays for fencing)."""
        self._db.execute("UPDATE partition_leases SET expires_at=? WHERE dataset=? AND partition=? AND owner=? "
                         "AND token=?", (self._now(), lease.dataset, lease.partition, lease.owner, lease.token))

    def held(self, dataset: str) -> list[Lease]:
        """Every unexpired lease of ``dataset`` (``status`` shows them)."""
        rows = self._db.rows("SELECT partition, owner, token, expires_at FROM partition_leases WHERE dataset=? "
                             "AND expires_at > ? ORDER BY partition", (dataset, self._now()))
        return [Lease(dataset, r["partition"], r["owner"], int(r["token"]), float(r["expires_at"])) for r in rows]


__all__ = ["Lease", "PartitionLeases", "this_owner"]
