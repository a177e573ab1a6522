"""Per-dataset data keys, stored wrapped by the keyring's key-encryption key (KEK).

Envelope encryption: each dataset has an active 256-bit data key that encrypts field
values (and capture-log bodies); the store holds only wrapped copies, so it is safe to
back up and replicate beside the state.

Where the store lives: an SQLite file beside the state store, by default
``STATE_DIR/datakeys.db`` (tables ``datakey_*``), so every process that opens the state
folder — the sync job, its worker threads and processes, ``mcrepl keys``, verify — reads
the same keys, and backing up the state folder carries them along. It is a file of its
own because a key's encryption counter is reserved while the sync engine holds the state
store's write transaction (sealing a capture-log page): one SQLite file cannot take both.
``policies.encryption.datakeys`` names another SQLite file (relative to the config file)
when the keys should live elsewhere.

Guarantees:

* **ids unique per store** — ``customers/3@5f2c9a1e7d3b4a60``: dataset, sequence, and the
  store's random id, so two stores never both have a ``customers/1`` with different keys,
  and a ciphertext from another store is named as such instead of failing as tampering;
* **rollover before the GCM limit** — NIST SP 800-38D (8.3) allows 2**32 encryptions
  per key with random nonces. Each key has a durable count of encryptions *reserved* (in
  blocks, before they happen, so a crash over-counts, never under-counts); the key that
  reaches the limit is replaced by a fresh active key. Nonces are a random 64-bit
  prefix per reserved block plus a 32-bit counter (:meth:`DataKeyStore.encryption`);
* **a bounded cache** — unwrapped keys (and their AES-GCM contexts) stay in memory in an
  LRU of ``cache_size`` entries, so a field encryption costs no keyring call or read;
* **integrity** — every wrap is authenticated and bound to (dataset, key id) by the
  keyring (AES-GCM with associated data, KMS encryption context, Key Vault signature).
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcrepl.adapters.base import CredentialsError

from .keyring import Keyring, WrappedKey

if TYPE_CHECKING:
    from mcrepl.orchestrator.config import McreplConfig

#: encryptions per data key with random 96-bit nonces (NIST SP 800-38D, section 8.3)
GCM_RANDOM_NONCE_LIMIT = 2 ** 32
#: encryptions reserved per durable counter update (at most this many are lost per crash)
RESERVE_BLOCK = 2 ** 16

SCHEMA = """
CREATE TABLE IF NOT EXISTS datakey_store (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datakeys (
    kid TEXT PRIMARY KEY, dataset TEXT NOT NULL, seq INTEGER NOT NULL, kek TEXT NOT NULL,
    blob BLOB NOT NULL, encryptions INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    UNIQUE (dataset, seq));
CREATE TABLE IF NOT EXISTS datakey_active (dataset TEXT PRIMARY KEY, kid TEXT NOT NULL);
"""


@dataclass(frozen=True)
class RotationReport:
    """What ``mcrepl keys rotate`` did (ids only, never key material)."""

    kek: str
    rewrapped: int
    new_data_keys: dict[str, str]


def kid_dataset(kid: str) -> str:
    """The dataset a data-key id belongs to (``customers/3@…`` → ``customers``)."""
    return kid.split("/", 1)[0]


def kid_store(kid: str) -> str | None:
    """The store id inside a data-key id (``None`` for ids written before stores had ids)."""
    return kid.rpartition("@")[2] if "@" in kid else None


class _Lease:
    """A block of encryptions reserved in the store for one active key.

    ``next(used)`` is atomic in CPython, so threads take encryptions (and their distinct
    nonce counters) from a lease without a lock; a number ``>= size`` means it is spent.
    """

    __slots__ = ("kid", "aead", "size", "used")

    def __init__(self, kid: str, aead: AESGCM, size: int) -> None:
        # the counter starts at the random 64-bit prefix shifted past the 32-bit index, so
        # next(used) is the whole nonce as an integer: prefix * 2**32 + index
        self.kid, self.aead = kid, aead
        start = int.from_bytes(os.urandom(8), "big") << 32
        self.size, self.used = start + size, itertools.count(start)


@dataclass(frozen=True)
class _Key:
    raw: bytes
    aead: AESGCM


class DataKeyStore:
    """Wrapped data keys in SQLite; unwrapped lazily into a bounded in-memory cache.

    Thread-safe; several processes may share one file (SQLite locking, ``BEGIN
    IMMEDIATE`` for every change). ``max_encryptions`` and ``reserve_block`` exist for
    tests of rollover; production keeps the defaults.
    """

    def __init__(self, path: str | Path, keyring: Keyring, *, max_encryptions: int = GCM_RANDOM_NONCE_LIMIT,
                 reserve_block: int = RESERVE_BLOCK, cache_size: int = 128) -> None:
        if not 0 < reserve_block <= min(max_encryptions, 2 ** 32):
            raise ValueError("reserve_block must be between 1 and min(max_encryptions, 2**32)")
        self.path = Path(path)
        self.keyring = keyring
        self.max_encryptions = max_encryptions
        self.reserve_block = reserve_block
        self.cache_size = cache_size
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._store_id: str | None = None
        self._cache: OrderedDict[str, _Key] = OrderedDict()
        #: dataset → its current lease; a reader may take ``n = next(lease.used)`` and use
        #: ``n.to_bytes(12, "big")`` as nonce without the lock while ``n < lease.size``
        self.leases: dict[str, _Lease] = {}

    # -- the SQLite file ---------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():      # owner-only from the start: the state store holds data too
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            with _Txn(conn) as db:
                db.execute("INSERT OR IGNORE INTO datakey_store(name, value) VALUES ('store_id', ?)",
                           (secrets.token_hex(8),))
                self._store_id = str(db.execute("SELECT value FROM datakey_store WHERE name='store_id'")
                                     .fetchone()[0])
            self._conn = conn
        return self._conn

    def _write(self) -> "_Txn":
        return _Txn(self._db())

    @property
    def store_id(self) -> str:
        """This store's random id (created with the store), part of every key id it issues."""
        with self._lock:
            self._db()
            assert self._store_id is not None
            return self._store_id

    def __getstate__(self) -> dict[str, Any]:
        """Pickles as (path, keyring, limits): never the connection or unwrapped keys."""
        state = self.__dict__.copy()
        for name in ("_lock", "_conn", "_cache", "leases"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._conn = threading.RLock(), None
        self._cache, self.leases = OrderedDict(), {}

    # -- keys --------------------------------------------------------------------------

    @staticmethod
    def _context(dataset: str, kid: str) -> dict[str, str]:
        return {"purpose": "mcrepl-data-key", "dataset": dataset, "kid": kid}

    def _new_key(self, db: sqlite3.Connection, dataset: str) -> str:
        """Create, wrap and activate a fresh data key (inside the caller's write transaction)."""
        seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM datakeys WHERE dataset=?",
                             (dataset,)).fetchone()[0]) + 1
        kid = f"{dataset}/{seq}@{self.store_id}"
        raw = secrets.token_bytes(32)
        wrapped = self.keyring.wrap(raw, self._context(dataset, kid))
        db.execute("INSERT INTO datakeys(kid, dataset, seq, kek, blob, created_at) VALUES (?,?,?,?,?,?)",
                   (kid, dataset, seq, wrapped.kek, wrapped.blob, time.time()))
        db.execute("INSERT OR REPLACE INTO datakey_active(dataset, kid) VALUES (?,?)", (dataset, kid))
        self._remember(kid, raw)
        return kid

    def _remember(self, kid: str, raw: bytes) -> _Key:
        key = _Key(raw, AESGCM(raw))
        self._cache[kid] = key
        self._cache.move_to_end(kid)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return key

    def _cached(self, kid: str) -> _Key:
        with self._lock:
            key = self._cache.get(kid)
            if key is not None:
                self._cache.move_to_end(kid)
                return key
            row = self._db().execute("SELECT dataset, kek, blob FROM datakeys WHERE kid=?", (kid,)).fetchone()
            if row is None:
                owner = kid_store(kid)
                where = (f"it was issued by data-key store {owner}, this one ({self.path}) is {self.store_id}"
                         if owner is not None and owner != self.store_id else f"it is not in {self.path}")
                raise CredentialsError(f"data key {kid} is unknown: {where} (fix: point "
                                       "policies.encryption.datakeys at the store that wrote it)",
                                       operation="datakeys.key")
            raw = self.keyring.unwrap(WrappedKey(str(row[1]), bytes(row[2])), self._context(str(row[0]), kid))
            return self._remember(kid, raw)

    def key(self, kid: str) -> bytes:
        """The data key ``kid``, unwrapped by the keyring (cached, bounded)."""
        return self._cached(kid).raw

    def aead(self, kid: str) -> AESGCM:
        """An AES-GCM context for decrypting under ``kid`` (cached with the key)."""
        return self._cached(kid).aead

    def active(self, dataset: str) -> tuple[str, bytes]:
        """The dataset's current data key ``(kid, key)``, created on first use (counts nothing)."""
        with self._lock:
            row = self._db().execute("SELECT kid FROM datakey_active WHERE dataset=?", (dataset,)).fetchone()
            if row is None:
                with self._write() as db:
                    row = db.execute("SELECT kid FROM datakey_active WHERE dataset=?", (dataset,)).fetchone()
                    kid = str(row[0]) if row else self._new_key(db, dataset)
                return kid, self.key(kid)
            return str(row[0]), self.key(str(row[0]))

    def encryption(self, dataset: str) -> tuple[str, AESGCM, bytes]:
        """``(kid, AES-GCM context, nonce)`` for **one** encryption, counted against the key.

        The nonce is the lease's random 64-bit prefix and the encryption's 32-bit index in
        the lease (NIST SP 800-38D 8.2.1: a fixed field and an invocation counter). Within
        a lease nonces are distinct by construction; across the at most 2**32 / block
        leases of a key, prefixes collide with probability below 2**-33 — tighter than
        the 2**-32 bound of fully random nonces — and no urandom call per encryption.

        Uses the in-memory lease while it lasts; otherwise reserves the next block in the
        store (cut short at ``max_encryptions``), rolling over to a fresh data key first
        when the active one has reached it.
        """
        lease = self.leases.get(dataset)
        if lease is not None:
            n = next(lease.used)
            if n < lease.size:
                return lease.kid, lease.aead, n.to_bytes(12, "big")
        with self._lock:
            lease = self.leases.get(dataset)
            n = next(lease.used) if lease is not None else 0
            if lease is None or n >= lease.size:
                lease = self._reserve(dataset)
                n = next(lease.used)
                self.leases[dataset] = lease
            return lease.kid, lease.aead, n.to_bytes(12, "big")

    def _reserve(self, dataset: str) -> _Lease:
        with self._write() as db:
            row = db.execute("SELECT a.kid, k.encryptions FROM datakey_active a JOIN datakeys k ON k.kid = a.kid "
                             "WHERE a.dataset=?", (dataset,)).fetchone()
            if row is None or int(row[1]) >= self.max_encryptions:
                kid, used = self._new_key(db, dataset), 0
            else:
                kid, used = str(row[0]), int(row[1])
            block = min(self.reserve_block, self.max_encryptions - used)
            db.execute("UPDATE datakeys SET encryptions = encryptions + ? WHERE kid=?", (block, kid))
        return _Lease(kid, self._cached(kid).aead, block)

    def encryptions(self, kid: str) -> int:
        """Encryptions reserved so far under ``kid`` (an upper bound of those made)."""
        with self._lock:
            row = self._db().execute("SELECT encryptions FROM datakeys WHERE kid=?", (kid,)).fetchone()
        return int(row[0]) if row else 0

    def rotate(self, new_data_keys: bool = True) -> RotationReport:
        """New KEK version; re-wrap every data key under it; optionally a new active data key per dataset."""
        with self._lock, self._write() as db:
            kek = self.keyring.rotate()
            count = 0
            for kid, dataset, old_kek, blob in db.execute("SELECT kid, dataset, kek, blob FROM datakeys").fetchall():
                ctx = self._context(dataset, kid)
                raw = self.keyring.unwrap(WrappedKey(old_kek, bytes(blob)), ctx)
                fresh = self.keyring.wrap(raw, ctx)
                db.execute("UPDATE datakeys SET kek=?, blob=? WHERE kid=?", (fresh.kek, fresh.blob, kid))
                count += 1
            datasets = [r[0] for r in db.execute("SELECT DISTINCT dataset FROM datakeys ORDER BY dataset")]
            fresh_ids = {ds: self._new_key(db, ds) for ds in datasets} if new_data_keys else {}
            self.leases.clear()
        return RotationReport(kek, count, fresh_ids)

    def kids(self, dataset: str) -> list[str]:
        """Every key id of ``dataset`` in the store, oldest first."""
        with self._lock:
            return [str(r[0]) for r in self._db().execute("SELECT kid FROM datakeys WHERE dataset=? ORDER BY seq",
                                                          (dataset,))]

    def wrapping_keks(self) -> set[str]:
        """KEK ids the stored data keys are wrapped under (after rotation: only the new one)."""
        with self._lock:
            return {str(r[0]) for r in self._db().execute("SELECT DISTINCT kek FROM datakeys")}

    def import_legacy(self, json_path: str | Path) -> int:
        """Import a pre-SQLite ``datakeys.json`` (wrapped keys kept as they are, ids unchanged).

        Imported keys only decrypt: their use was never counted, so they are marked spent
        and the next encryption starts a fresh, counted key. The file is renamed
        ``….imported`` so it is read once. Returns how many keys were imported.
        """
        src = Path(json_path)
        data = json.loads(src.read_text("utf-8"))
        count = 0
        with self._lock, self._write() as db:
            for dataset, entry in (data.get("datasets") or {}).items():
                for kid, wrapped in (entry.get("keys") or {}).items():
                    seq = int(str(kid).rsplit("/", 1)[1])
                    w = WrappedKey.from_dict(wrapped)
                    db.execute("INSERT OR IGNORE INTO datakeys(kid, dataset, seq, kek, blob, encryptions, created_at) "
                               "VALUES (?,?,?,?,?,?,?)", (kid, dataset, seq, w.kek, w.blob,
                                                          self.max_encryptions, src.stat().st_mtime))
                    count += 1
        src.rename(src.with_name(src.name + ".imported"))
        return count


class _Txn:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): one writer at a time across processes."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def datakeys_path(config: "McreplConfig") -> Path:
    """Where ``config`` keeps its wrapped data keys: ``policies.encryption.datakeys`` or
    ``STATE_DIR/datakeys.db``."""
    return Path(config.policies.encryption.datakeys or Path(config.state_dir) / "datakeys.db")


def open_datakeys(config: "McreplConfig", keyring: Keyring | None = None) -> DataKeyStore:
    """The data-key store of ``config`` (importing a legacy ``STATE_DIR/datakeys.json`` once)."""
    from .keyring import keyring_from_spec
    ring = keyring or keyring_from_spec(config.policies.encryption.keyring, config.state_dir)
    store = DataKeyStore(datakeys_path(config), ring)
    legacy = Path(config.state_dir) / "datakeys.json"
    if legacy.exists():
        store.import_legacy(legacy)
    return store


__all__ = ["DataKeyStore", "GCM_RANDOM_NONCE_LIMIT", "RESERVE_BLOCK", "RotationReport", "datakeys_path",
           "kid_dataset", "kid_store", "open_datakeys"]
