"""Client-side field encryption: AES-256-GCM under per-dataset data keys (envelope encryption).

An encrypted field holds a canonical value every store round-trips unchanged::

    {"$enc": "v1", "kid": "customers/2", "ct": b"<12-byte nonce><ciphertext><16-byte tag>"}

(DynamoDB: a map of a string and a binary; Cosmos DB and GCS: ``ct`` becomes a tagged
base64 value in :mod:`mcrepl.adapters.base.tagged_json`.)

Guarantees:

* the plaintext is the field's canonical value (``tagged_json``), so types survive;
* associated data binds the ciphertext to dataset, record key, field path and data-key
  id — copied into another field or record it fails with ``InvalidTag``;
* every encryption gets a 96-bit nonce never used with its data key (a random prefix
  per reserved block and a counter) and is counted against the key; the store rolls
  over to a fresh key before 2**32 encryptions (the GCM limit, :mod:`.datakeys`);
* the data-key id (unique per store) travels with the ciphertext, so data written
  before a rotation or rollover stays readable after it;
* keys come from a bounded in-memory cache: a field encryption costs a nonce, the
  associated data and one AES-GCM call (``bench/field_crypto_bench.py`` measures it
  against raw AES-GCM).
"""

from __future__ import annotations

from json.encoder import encode_basestring as _q  # type: ignore[attr-defined]  # the C encoder json.dumps uses
from typing import Any, Iterable, Mapping

from cryptography.exceptions import InvalidTag

from mcrepl.adapters.base import RecordError, tagged_json
from mcrepl.adapters.base.values import Value

from .cloud_keyrings import AwsKmsKeyring, AzureKeyVaultKeyring, GcpKmsKeyring
from .datakeys import DataKeyStore, RotationReport, kid_dataset, open_datakeys
from .keyring import Keyring, LocalKeyring, WrappedKey, keyring_from_spec

ENC_TAG = "$enc"
ENC_VERSION = "v1"
NONCE_BYTES = 12

__all__ = ["AwsKmsKeyring", "AzureKeyVaultKeyring", "DataKeyStore", "ENC_TAG", "FieldCipher",
           "GcpKmsKeyring", "InvalidTag", "Keyring", "LocalKeyring", "RotationReport", "WrappedKey",
           "associated_data", "is_encrypted", "keyring_from_spec", "open_datakeys"]


def is_encrypted(value: Any) -> bool:
    """True for a value written by :meth:`FieldCipher.encrypt_value`."""
    return isinstance(value, dict) and value.get(ENC_TAG) == ENC_VERSION and set(value) == {ENC_TAG, "kid", "ct"}


def associated_data(dataset: str, record_key: str, field: str, kid: str) -> bytes:
    """AES-GCM associated data: what a ciphertext is bound to.

    The bytes of ``json.dumps(["mcrepl-field/v1", dataset, record_key, field, kid],
    separators=(",", ":"), ensure_ascii=False)``, built from the C string encoder the
    json module uses for exactly that (a test holds the two equal).
    """
    return f'["mcrepl-field/v1",{_q(dataset)},{_q(record_key)},{_q(field)},{_q(kid)}]'.encode("utf-8")


class FieldCipher:
    """Encrypts and decrypts individual fields of document bodies for one data-key store."""

    def __init__(self, datakeys: DataKeyStore) -> None:
        self.datakeys = datakeys
        self._aad_parts: dict[tuple[str, str, str], tuple[str, str]] = {}

    def _aad(self, dataset: str, record_key: str, field: str, kid: str) -> bytes:
        """:func:`associated_data`, with the parts that repeat across records cached."""
        parts = self._aad_parts.get((dataset, field, kid))
        if parts is None:
            if len(self._aad_parts) > 4096:
                self._aad_parts.clear()
            parts = self._aad_parts[(dataset, field, kid)] = (
                f'["mcrepl-field/v1",{_q(dataset)},', f",{_q(field)},{_q(kid)}]")
        return (parts[0] + _q(record_key) + parts[1]).encode("utf-8")

    def encrypt_value(self, dataset: str, record_key: str, field: str, value: Value) -> dict[str, Value]:
        """Ciphertext of ``value`` bound to ``(dataset, record_key, field)``.

        Each call takes one counted encryption and its never-used nonce from the store
        (:meth:`DataKeyStore.encryption`). The hot path is written out inline — the lease
        take, a string's canonical bytes without building a JSON encoder (``to_json``
        leaves strings as they are, so they equal ``tagged_json.dumps``), the associated
        data of :meth:`_aad` — since a field encryption must cost at most 1.5x raw AES-GCM
        (``bench/field_crypto_bench.py``).
        """
        lease = self.datakeys.leases.get(dataset)          # the lock-free fast path of encryption()
        n = next(lease.used) if lease is not None else 0
        if lease is not None and n < lease.size:
            kid, aead, nonce = lease.kid, lease.aead, n.to_bytes(12, "big")
        else:
            kid, aead, nonce = self.datakeys.encryption(dataset)
        parts = self._aad_parts.get((dataset, field, kid))
        if parts is None:
            self._aad(dataset, record_key, field, kid)
            parts = self._aad_parts[(dataset, field, kid)]
        plain = _q(value).encode("utf-8") if type(value) is str else tagged_json.dumps(value)
        return {ENC_TAG: ENC_VERSION, "kid": kid,
                "ct": nonce + aead.encrypt(nonce, plain, (parts[0] + _q(record_key) + parts[1]).encode("utf-8"))}

    def decrypt_value(self, dataset: str, record_key: str, field: str, enc: Mapping[str, Any]) -> Value:
        """Plaintext of an encrypted value; raises ``InvalidTag`` if it was moved or altered."""
        kid, blob = str(enc["kid"]), bytes(enc["ct"])
        if kid_dataset(kid) != dataset:
            raise InvalidTag()
        plain = self.datakeys.aead(kid).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                                associated_data(dataset, record_key, field, kid))
        return tagged_json.loads(plain, field)

    def encrypt_fields(self, dataset: str, record_key: str, body: Mapping[str, Value],
                       fields: Iterable[str]) -> dict[str, Value]:
        """A copy of ``body`` with each present field path (``a.b``) replaced by its ciphertext."""
        out = _deep_copy(body)
        for path in fields:
            parent, leaf = _parent(out, path)
            if parent is not None and leaf in parent and not is_encrypted(parent[leaf]):
                parent[leaf] = self.encrypt_value(dataset, record_key, path, parent[leaf])
        return out

    def decrypt_fields(self, dataset: str, record_key: str, body: Mapping[str, Value]) -> dict[str, Value]:
        """A copy of ``body`` with every encrypted value (at any depth) decrypted."""
        def walk(value: Value, path: str) -> Value:
            if is_encrypted(value):
                try:
                    return self.decrypt_value(dataset, record_key, path, value)  # type: ignore[arg-type]
                except InvalidTag:
                    raise RecordError("encryption.field-integrity", "encrypted field does not belong "
                                      "to this dataset, record and field, or was altered",
                                      dataset=dataset, key=record_key, field=path) from None
            if isinstance(value, dict):
                return {k: walk(v, f"{path}.{k}" if path else k) for k, v in value.items()}
            return value
        return walk(dict(body), "")  # type: ignore[return-value]


def _deep_copy(body: Mapping[str, Value]) -> dict[str, Value]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in body.items()}


def _parent(body: dict[str, Value], path: str) -> tuple[dict[str, Value] | None, str]:
    *heads, leaf = path.split(".")
    node: Any = body
    for head in heads:
        node = node.get(head) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), leaf
