"""Capture-log residency: the log is in an allowed jurisdiction, or it is encrypted.

The capture log lives in the state store on the orchestrator's host and holds every
captured record of a dataset, so it is one more place the data lives. The config says
where that host is (``orchestrator.location``); :func:`log_cipher_for` says whether the
log of a dataset must be sealed and returns the :class:`LogCipher` that does it, keyed by
the dataset's own data keys (same store, same rollover, same keyring).

Usage in the state store (``orchestrator/state/log.py``)::

    cipher = log_cipher_for(config, "customers")        # None: plaintext is allowed there
    columns = encode_record(record, cipher)
    record = decode_record(key, meta, body_kind, body, cipher)

Only bodies are sealed: record keys and replication metadata stay readable (the log is
indexed by them). A sealed body is ``b"MCL1" + len(kid) + kid + nonce + ciphertext``,
bound by associated data to the dataset, the key id and the caller's ``aad`` (the log
binds its row: record key, body kind, version), so a body moved to another row fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from cryptography.exceptions import InvalidTag

from mcrepl.adapters.base import ConfigError, CredentialsError, PolicyError

from .datakeys import DataKeyStore, kid_dataset, open_datakeys
from .decisions import plaintext_kept_out_of
from .residency import catalogue, country_code, location_jurisdictions

if TYPE_CHECKING:
    from mcrepl.orchestrator.config import McreplConfig

MAGIC = b"MCL1"
NONCE_BYTES = 12


def orchestrator_jurisdictions(config: "McreplConfig") -> frozenset[str] | None:
    """Jurisdictions of ``orchestrator.location`` (``None`` when undeclared).

    Raises :class:`ConfigError` for a location that is neither a known region nor an ISO
    3166-1 alpha-2 country (``engine.policy_errors`` reports it at validate time).
    """
    location = config.orchestrator.location
    if location is None:
        return None
    if ":" in location:
        return location_jurisdictions(location)
    code = country_code(location)
    if code is None:
        raise ConfigError(f"orchestrator location {location!r} is neither a region nor an ISO 3166-1 "
                          "alpha-2 country code", path="orchestrator.location",
                          fix="write a region (aws:eu-west-1, azure:westeurope, gcp:europe-west1) or a country (DE)")
    return frozenset({catalogue().jurisdiction_of_country(code)})


def log_must_be_sealed(config: "McreplConfig", dataset: str) -> list[str]:
    """Why the capture log of ``dataset`` may not hold plaintext where the orchestrator runs
    (empty: it may)."""
    return plaintext_kept_out_of(config, dataset, orchestrator_jurisdictions(config))


class LogCipher:
    """Seals and opens capture-log bodies of one dataset under its data keys (AES-256-GCM).

    Encryptions count against the data key's limit like field encryptions; bodies sealed
    before a rollover or rotation open with the key id they carry.
    """

    def __init__(self, dataset: str, datakeys: DataKeyStore) -> None:
        self.dataset = dataset
        self.datakeys = datakeys

    def _aad(self, kid: str, aad: bytes) -> bytes:
        return b"mcrepl-log/v1\x00" + self.dataset.encode() + b"\x00" + kid.encode() + b"\x00" + aad

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Ciphertext of ``plaintext`` bound to this dataset and ``aad``."""
        kid, aead, nonce = self.datakeys.encryption(self.dataset)
        kid_bytes = kid.encode()
        return MAGIC + bytes([len(kid_bytes)]) + kid_bytes + nonce + aead.encrypt(nonce, plaintext,
                                                                                   self._aad(kid, aad))

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """Plaintext of a body :meth:`seal` made with the same ``aad``.

        Raises :class:`CredentialsError` (never with content) when the body is not sealed,
        belongs to another dataset or row, or was altered.
        """
        if sealed[:4] != MAGIC or len(sealed) < 5 + sealed[4] + NONCE_BYTES:
            raise CredentialsError(f"capture-log body of {self.dataset} is not sealed", operation="log.open")
        end = 5 + sealed[4]
        kid = sealed[5:end].decode()
        nonce, ct = sealed[end:end + NONCE_BYTES], sealed[end + NONCE_BYTES:]
        try:
            if kid_dataset(kid) != self.dataset:
                raise InvalidTag()
            return self.datakeys.aead(kid).decrypt(nonce, ct, self._aad(kid, aad))
        except InvalidTag:
            raise CredentialsError(f"capture-log body of {self.dataset} does not belong to this dataset and row, "
                                   "or was altered", operation="log.open") from None


def log_cipher_for(config: "McreplConfig", dataset: str,
                   datakeys: "DataKeyStore | Callable[[], DataKeyStore] | None" = None) -> LogCipher | None:
    """The cipher the capture log of ``dataset`` must use, or ``None`` when plaintext is allowed.

    ``policies.encryption.capture_log``: ``auto`` seals exactly when
    :func:`log_must_be_sealed` gives reasons; ``encrypt`` always seals; ``plaintext`` never
    does and raises :class:`PolicyError` where it would leak (fail closed — ``validate``
    refuses that config with rule ``residency.capture-log``). ``datakeys`` (or a function
    opening it) is the store to use; by default the config's.
    """
    mode = config.policies.encryption.capture_log
    reasons = log_must_be_sealed(config, dataset) if mode != "encrypt" else ["capture_log: encrypt"]
    if not reasons:
        return None
    if mode == "plaintext":
        raise PolicyError(f"the capture log of {dataset} may not hold plaintext where the orchestrator runs: "
                          f"{'; '.join(reasons)} (rule residency.capture-log)")
    store = datakeys() if callable(datakeys) else datakeys      # opened only when it is needed
    return LogCipher(dataset, store or open_datakeys(config))


__all__ = ["LogCipher", "log_cipher_for", "log_must_be_sealed", "orchestrator_jurisdictions"]
