"""Key-encryption keys (KEKs): the pluggable keyring that wraps per-dataset data keys.

A :class:`Keyring` only wraps and unwraps small data keys; it never sees record data.
:class:`LocalKeyring` keeps versioned 256-bit KEKs in a file (mode 0600) for tests and
the demo; the cloud keyrings (:mod:`mcrepl.policies.cloud_keyrings`) call AWS KMS, Azure
Key Vault or Cloud KMS behind the same interface. Every wrap is bound to a context
(dataset, data-key id) so a wrapped key cannot be swapped onto another dataset.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcrepl.adapters.base import ConfigError, CredentialsError

if TYPE_CHECKING:
    from .model import KeyringSpec


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted under one KEK version; ``kek`` names that version."""

    kek: str
    blob: bytes

    def to_dict(self) -> dict[str, str]:
        return {"kek": self.kek, "blob": base64.b64encode(self.blob).decode("ascii")}

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> "WrappedKey":
        return cls(str(d["kek"]), base64.b64decode(d["blob"]))


def context_bytes(context: Mapping[str, str]) -> bytes:
    """Canonical bytes of a wrap context (used as AES-GCM associated data)."""
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode("utf-8")


class Keyring(Protocol):
    """Wraps and unwraps data keys under key-encryption keys it never reveals."""

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        """Encrypt ``data_key`` under the current KEK version, bound to ``context``."""
        ...

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        """Decrypt a wrapped data key (any KEK version still held), checking ``context``."""
        ...

    def rotate(self) -> str:
        """Make a new KEK version current (or ask the KMS to); returns its id."""
        ...

    def current(self) -> str:
        """Id of the KEK version new wraps use."""
        ...


class LocalKeyring:
    """Versioned AES-256 KEKs in a JSON key file readable only by its owner (mode 0600).

    For tests and the demo: anyone who can read the file can decrypt everything, so real
    deployments use a KMS keyring.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError(f"key file {self.path} does not exist", fix="run: mcrepl keys init CONFIG")
        if os.name == "posix" and self.path.stat().st_mode & 0o077:
            raise CredentialsError(f"key file {self.path} is readable by other users",
                                   operation="keyring.open")
        data = json.loads(self.path.read_text("utf-8"))
        self._versions = {k: base64.b64decode(v) for k, v in data["versions"].items()}
        self._current = str(data["current"])
        self._name = str(data.get("name", "local"))

    @classmethod
    def create(cls, path: str | Path, name: str = "local") -> "LocalKeyring":
        """Create a new key file with one KEK version; refuses to overwrite an existing one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"name": name, "current": "1",
                "versions": {"1": base64.b64encode(secrets.token_bytes(32)).decode("ascii")}}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        return cls(path)

    def __getstate__(self) -> dict[str, str]:
        """Pickles as its path: the KEK stays in the file, never in a work unit."""
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def _save(self) -> None:
        data = {"name": self._name, "current": self._current,
                "versions": {k: base64.b64encode(v).decode("ascii") for k, v in self._versions.items()}}
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.path)

    def _kek_id(self, version: str) -> str:
        return f"{self._name}/v{version}"

    def current(self) -> str:
        return self._kek_id(self._current)

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self._versions[self._current]).encrypt(nonce, data_key, context_bytes(context))
        return WrappedKey(self.current(), nonce + ct)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        name, _, version = wrapped.kek.rpartition("/v")
        kek = self._versions.get(version) if name == self._name else None
        if kek is None:
            raise CredentialsError(f"key-encryption key {wrapped.kek} is not in {self.path}",
                                   operation="keyring.unwrap")
        try:
            return AESGCM(kek).decrypt(wrapped.blob[:12], wrapped.blob[12:], context_bytes(context))
        except InvalidTag:
            raise CredentialsError(f"data key wrapped under {wrapped.kek} does not match its context "
                                   "(dataset or key id) or was altered", operation="keyring.unwrap") from None

    def rotate(self) -> str:
        version = str(max(int(v) for v in self._versions) + 1)
        self._versions[version] = secrets.token_bytes(32)
        self._current = version
        self._save()
        return self.current()


def keyring_from_spec(spec: "KeyringSpec", state_dir: str | Path = ".mcrepl") -> Keyring:
    """The keyring a config's ``policies.encryption.keyring`` describes (cloud SDKs load lazily)."""
    if spec.type == "local":
        return LocalKeyring(spec.path or Path(state_dir) / "keyring.json")
    from . import cloud_keyrings
    if spec.type == "aws-kms":
        return cloud_keyrings.AwsKmsKeyring(str(spec.key_id), region=spec.region, endpoint_url=spec.endpoint)
    if spec.type == "azure-keyvault":
        return cloud_keyrings.AzureKeyVaultKeyring(str(spec.key_id))
    return cloud_keyrings.GcpKmsKeyring(str(spec.key_id))


__all__ = ["Keyring", "LocalKeyring", "WrappedKey", "context_bytes", "keyring_from_spec"]
