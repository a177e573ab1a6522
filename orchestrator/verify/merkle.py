"""Range digests: find the differing keys between replicas without comparing every key.

Each replica's digests are streamed once into a throw-away SQLite index; while they
stream, every key's leaf hash is added (mod 2**256, so order never matters) into one of
4,096 buckets chosen by the first three hex digits of ``sha256(key_id)``. Comparison then
walks a tree of range digests — the whole keyspace, 16 ranges, 256, 4,096 — and descends
only into ranges whose sums differ; key-level comparison reads only the leaf buckets that
differ. Identical replicas cost one listing each and 1 comparison; a divergence of *d*
keys costs at most *d* leaf buckets of key rows.

Tombstones do not enter the sums: a delete that one replica still holds as a tombstone
and another has already purged is not a divergence. A tombstone facing a live record
still shows, because the live record is in its replica's sum.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from mcrepl.adapters.base import Digest

MOD = 2**256
LEVELS = (1, 2, 3)                       # hex digits of bucket prefix per tree level


def bucket_of(key_id: str) -> str:
    """The 3-hex-digit leaf bucket of a key: uniform whatever the key distribution.

    CRC-32 spreads keys as evenly as a cryptographic hash does and costs a fraction of
    one; the bucket only groups keys (the leaf hash below is what detects differences),
    and the index lives for one verify, so nothing stored depends on the choice.
    """
    return _HEX3[zlib.crc32(key_id.encode("utf-8")) & 0xFFF]


_HEX3 = [f"{i:03x}" for i in range(4096)]


def leaf_hash(d: Digest) -> int:
    """What a key contributes to its bucket: key and comparable content, not the version.

    Versions stay out on purpose: a primary holding a native record (no version) and a
    replica holding the same body under mcrepl's version agree.
    """
    h = hashlib.sha256(f"{d.key_id}\x00{d.content_hash}".encode("utf-8")).digest()
    return int.from_bytes(h, "big")


@dataclass(frozen=True)
class KeyRow:
    """One replica's digest for one key, as stored in the index."""

    key_id: str
    version: str | None
    content_hash: str
    tombstone: bool


class DigestIndex:
    """Digests of several replicas in one temporary SQLite file, with bucket sums."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mcrepl-verify-", dir=directory)
        self._db = sqlite3.connect(Path(self._dir.name) / "digests.sqlite", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        # appended in arrival order (no key index while loading: random-order B-tree inserts cost
        # most of a load); the index on (replica, bucket) is built only if some bucket differs
        self._db.execute("CREATE TABLE d (replica TEXT, bucket TEXT, key_id TEXT, version TEXT, "
                         "hash TEXT, tomb INTEGER)")
        self._indexed = False
        self.sums: dict[str, dict[str, int]] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self, replica: str) -> None:
        """Count ``replica`` as listed (with no digests yet): an empty store is still a side."""
        with self._lock:
            self.sums.setdefault(replica, {})
            self.counts.setdefault(replica, 0)

    def load(self, replica: str, digests: Iterable[Digest],
             on_progress: Callable[[int], None] | None = None, batch: int = 2000) -> int:
        """Stream ``digests`` (one range of ``replica``, or all of it) into the index; returns how many.

        Several ranges of one replica may load at once from different threads: each sums
        its own buckets and adds them to the replica's under the lock (addition mod 2**256
        is order-free).
        """
        sums: dict[str, int] = {}
        rows: list[tuple] = []
        n = 0
        for d in digests:
            key_id = d.key_id
            b = bucket_of(key_id)
            if not d.tombstone:
                sums[b] = sums.get(b, 0) + leaf_hash(d)
            rows.append((replica, b, key_id, d.version, d.content_hash, int(d.tombstone)))
            if len(rows) >= batch:
                n += len(rows)
                self._flush(rows)
                if on_progress:
                    on_progress(len(rows))
                rows = []
        n += len(rows)
        self._flush(rows)
        if on_progress and rows:
            on_progress(len(rows))
        with self._lock:
            total = self.sums.setdefault(replica, {})
            for b, v in sums.items():
                total[b] = (total.get(b, 0) + v) % MOD
            self.counts[replica] = self.counts.get(replica, 0) + n
        return n

    def _flush(self, rows: list[tuple]) -> None:
        if rows:
            with self._lock:          # replicas are loaded concurrently, one thread each
                self._db.executemany("INSERT INTO d VALUES (?,?,?,?,?,?)", rows)

    def range_sum(self, replica: str, prefix: str) -> int:
        """Sum of the leaf buckets under ``prefix`` (``""`` = the whole keyspace)."""
        sums = self.sums.get(replica, {})
        return sum(v for b, v in sums.items() if b.startswith(prefix)) % MOD

    def differing_buckets(self, a: str, b: str) -> tuple[list[str], int]:
        """Leaf buckets whose sums differ between ``a`` and ``b``, and how many range digests were compared."""
        compared = 1
        if self.range_sum(a, "") == self.range_sum(b, ""):
            return [], compared
        frontier = [""]
        for width in LEVELS:
            children = []
            for prefix in frontier:
                for digit in "0123456789abcdef":
                    child = prefix + digit
                    compared += 1
                    if self._sum_at(a, child, width) != self._sum_at(b, child, width):
                        children.append(child)
            frontier = children
        return frontier, compared

    def _sum_at(self, replica: str, prefix: str, width: int) -> int:
        if width == 3:
            return self.sums.get(replica, {}).get(prefix, 0)
        return self.range_sum(replica, prefix)

    def rows(self, replica: str, buckets: list[str]) -> Iterator[KeyRow]:
        """Key rows of ``replica`` in ``buckets`` (tombstones included)."""
        with self._lock:
            if not self._indexed:
                self._db.execute("CREATE INDEX d_bucket ON d (replica, bucket)")
                self._indexed = True
        for i in range(0, len(buckets), 500):
            chunk = buckets[i:i + 500]
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(f"SELECT key_id, version, hash, tomb FROM d WHERE replica=? AND bucket IN ({marks})",
                                   [replica, *chunk])
            for key_id, version, h, tomb in cur:
                yield KeyRow(key_id, version, h, bool(tomb))

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> "DigestIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
