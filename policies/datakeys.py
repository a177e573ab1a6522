"""Per-dataset data keys, stored wrapped by the keyring's key-encryption key.

Envelope encryption: each dataset has an active 256-bit data key (id ``DATASET/N``) that
encrypts field values; the store file holds only wrapped copies, so it is safe to back
up beside the state. Rotation re-wraps every data key under the new KEK version (old
ciphertext stays readable: its data key still exists) and starts a fresh data key for
new writes. Records carry the data-key id, so any version can be found again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mcrepl.adapters.base import CredentialsError

from .keyring import Keyring, WrappedKey

try:  # advisory lock so two sync processes never both create a dataset's first key
    import fcntl
except ImportError:  # pragma: no cover - non-posix
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class RotationReport:
    """What ``mcrepl keys rotate`` did (ids only, never key material)."""

    kek: str
    rewrapped: int
    new_data_keys: dict[str, str]


class DataKeyStore:
    """Wrapped data keys in a JSON file (mode 0600), unwrapped lazily and cached in memory."""

    def __init__(self, path: str | Path, keyring: Keyring) -> None:
        self.path = Path(path)
        self.keyring = keyring
        self._plain: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _context(dataset: str, kid: str) -> dict[str, str]:
        return {"purpose": "mcrepl-data-key", "dataset": dataset, "kid": kid}

    def _read(self) -> dict:
        if not self.path.exists():
            return {"datasets": {}}
        return json.loads(self.path.read_text("utf-8"))

    def _write(self, data: dict) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_suffix(".lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _new_key(self, data: dict, dataset: str) -> str:
        entry = data["datasets"].setdefault(dataset, {"active": None, "keys": {}})
        kid = f"{dataset}/{len(entry['keys']) + 1}"
        key = secrets.token_bytes(32)
        entry["keys"][kid] = self.keyring.wrap(key, self._context(dataset, kid)).to_dict()
        entry["active"] = kid
        self._plain[kid] = key
        return kid

    def active(self, dataset: str) -> tuple[str, bytes]:
        """The dataset's current data key ``(kid, key)``, created on first use."""
        entry = self._read()["datasets"].get(dataset)
        if entry is None or not entry.get("active"):
            with self._locked():
                data = self._read()
                entry = data["datasets"].get(dataset)
                if entry is None or not entry.get("active"):
                    kid = self._new_key(data, dataset)
                    self._write(data)
                    return kid, self._plain[kid]
        kid = str(entry["active"])
        return kid, self.key(kid)

    def key(self, kid: str) -> bytes:
        """The data key ``kid`` (``DATASET/N``), unwrapped by the keyring."""
        if kid in self._plain:
            return self._plain[kid]
        dataset = kid.rsplit("/", 1)[0]
        wrapped = ((self._read()["datasets"].get(dataset) or {}).get("keys") or {}).get(kid)
        if wrapped is None:
            raise CredentialsError(f"data key {kid} is not in {self.path}", operation="datakeys.key")
        key = self.keyring.unwrap(WrappedKey.from_dict(wrapped), self._context(dataset, kid))
        self._plain[kid] = key
        return key

    def rotate(self, new_data_keys: bool = True) -> RotationReport:
        """New KEK version; re-wrap every data key under it; optionally a new active data key per dataset."""
        with self._locked():
            data = self._read()
            kek = self.keyring.rotate()
            count = 0
            for dataset, entry in data["datasets"].items():
                for kid, wrapped in entry["keys"].items():
                    ctx = self._context(dataset, kid)
                    key = self.keyring.unwrap(WrappedKey.from_dict(wrapped), ctx)
                    entry["keys"][kid] = self.keyring.wrap(key, ctx).to_dict()
                    count += 1
            fresh = {ds: self._new_key(data, ds) for ds in list(data["datasets"])} if new_data_keys else {}
            self._write(data)
        return RotationReport(kek, count, fresh)

    def wrapping_keks(self) -> set[str]:
        """KEK ids the stored data keys are wrapped under (after rotation: only the new one)."""
        return {w["kek"] for e in self._read()["datasets"].values() for w in e["keys"].values()}


__all__ = ["DataKeyStore", "RotationReport"]
