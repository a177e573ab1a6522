"""Keyrings backed by AWS KMS, Azure Key Vault and Google Cloud KMS.

Each SDK is imported only when its keyring is built; a missing one raises a
:class:`ConfigError` saying what to ``pip install``. SDK exceptions are translated here
into :class:`CredentialsError` / :class:`UnavailableError` and never leave this module.
The KEK never leaves the KMS: data keys travel to it to be wrapped and unwrapped.

Context binding and integrity: AWS KMS and Cloud KMS encrypt with authenticated
encryption and take the wrap context as encryption context / additional authenticated
data, so a replaced or moved wrapped key fails to decrypt. Key Vault's RSA-OAEP wrap is
neither: anyone holding the *public* key can wrap a key of their choosing, so a store
writer could swap in a data key they know. The Key Vault keyring therefore signs every
wrapped key with the same Key Vault key (RS/PS256 over the wrap, the key version and the
context — only Key Vault holds the private key) and refuses to unwrap a key whose
signature does not verify. The key needs the ``sign`` and ``verify`` operations besides
``wrapKey`` and ``unwrapKey`` (role *Key Vault Crypto User* grants all four).
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any, Callable, Mapping, TypeVar

from mcrepl.adapters.base import ConfigError, CredentialsError, UnavailableError

from .keyring import WrappedKey, context_bytes

T = TypeVar("T")


def _require(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"this keyring needs the {package} package", path="policies.encryption.keyring",
                          fix=f"pip install {package}") from None


def _kms_call(provider: str, operation: str, fn: Callable[[], T]) -> T:
    """Run one KMS call, translating SDK errors (the message never includes key material)."""
    try:
        return fn()
    except (ConfigError, CredentialsError):
        raise
    except Exception as exc:  # noqa: BLE001 - every SDK's own error tree ends here
        name = type(exc).__name__
        response = getattr(exc, "response", None)    # botocore: a dict; google-api-core: the gRPC call
        code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
        denied = any(w in (name + code).lower() for w in ("denied", "auth", "forbidden", "invalidciphertext",
                                                          "notfound", "disabled", "permission"))
        err = CredentialsError if denied else UnavailableError
        raise err(f"{provider} {operation} failed: {code or name}", provider=provider,
                  operation=operation) from None


class AwsKmsKeyring:
    """AWS KMS: ``key_id`` is a key ARN or alias ARN; rotation is KMS on-demand rotation
    (old key material stays usable for decryption, new wraps use the new material)."""

    def __init__(self, key_id: str, region: str | None = None, endpoint_url: str | None = None,
                 session: Any = None) -> None:
        boto3 = _require("boto3", "boto3")
        self.key_id = key_id
        region = region or (key_id.split(":")[3] if key_id.startswith("arn:") else None)
        self._kms = (session or boto3.session.Session()).client("kms", region_name=region,
                                                                endpoint_url=endpoint_url)

    def current(self) -> str:
        return self.key_id

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        out = _kms_call("aws-kms", "encrypt", lambda: self._kms.encrypt(
            KeyId=self.key_id, Plaintext=data_key, EncryptionContext=dict(context)))
        return WrappedKey(str(out["KeyId"]), bytes(out["CiphertextBlob"]))

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        out = _kms_call("aws-kms", "decrypt", lambda: self._kms.decrypt(
            KeyId=wrapped.kek, CiphertextBlob=wrapped.blob, EncryptionContext=dict(context)))
        return bytes(out["Plaintext"])

    def rotate(self) -> str:
        _kms_call("aws-kms", "rotate", lambda: self._kms.rotate_key_on_demand(KeyId=self.key_id))
        return self.key_id


_AKV_SIGNED = b"AKV2"          # wrapped-key format: magic, 2-byte length, RSA-OAEP wrap, signature


class AzureKeyVaultKeyring:
    """Azure Key Vault RSA key (``https://VAULT.vault.azure.net/keys/NAME``): RSA-OAEP-256
    wrap plus a PS256 signature by the same key (see the module docstring); rotation
    creates a new key version, older versions still unwrap and verify.

    ``crypto_client`` (``key id → CryptographyClient``) replaces the default client that
    calls Key Vault; tests pass the SDK's own local ``CryptographyClient.from_jwk``.
    """

    def __init__(self, key_id: str, credential: Any = None,
                 crypto_client: Callable[[str], Any] | None = None) -> None:
        crypto = _require("azure.keyvault.keys.crypto", "'mcrepl[azure-keyvault]' (azure-keyvault-keys)")
        keys = _require("azure.keyvault.keys", "'mcrepl[azure-keyvault]' (azure-keyvault-keys)")
        self.key_id = key_id.rstrip("/")
        if credential is None and crypto_client is None:
            credential = _require("azure.identity", "azure-identity").DefaultAzureCredential()
        self._credential = credential
        self._crypto_client = crypto_client
        self._crypto_mod, self._keys_mod = crypto, keys
        vault, _, rest = self.key_id.partition("/keys/")
        self._vault, self._name = vault, rest.split("/")[0]

    def _client(self, key_id: str) -> Any:
        if self._crypto_client is not None:
            return self._crypto_client(key_id)
        return self._crypto_mod.CryptographyClient(key_id, self._credential)

    @staticmethod
    def _signed_digest(kek: str, encrypted: bytes, context: Mapping[str, str]) -> bytes:
        return hashlib.sha256(b"mcrepl-akv-wrap/v1\x00" + kek.encode() + b"\x00" + len(encrypted).to_bytes(2, "big")
                              + encrypted + context_bytes(context)).digest()

    def current(self) -> str:
        key = _kms_call("azure-keyvault", "get_key", lambda: self._keys_mod.KeyClient(
            self._vault, self._credential).get_key(self._name))
        return str(key.id)

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        payload = data_key + hashlib.sha256(context_bytes(context)).digest()
        alg = self._crypto_mod.KeyWrapAlgorithm.rsa_oaep_256
        out = _kms_call("azure-keyvault", "wrap_key", lambda: self._client(self.key_id).wrap_key(alg, payload))
        kek, encrypted = str(out.key_id), bytes(out.encrypted_key)
        digest = self._signed_digest(kek, encrypted, context)
        sig = _kms_call("azure-keyvault", "sign", lambda: self._client(kek).sign(
            self._crypto_mod.SignatureAlgorithm.ps256, digest))
        return WrappedKey(kek, _AKV_SIGNED + len(encrypted).to_bytes(2, "big") + encrypted + bytes(sig.signature))

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        blob = wrapped.blob
        size = int.from_bytes(blob[4:6], "big") if blob[:4] == _AKV_SIGNED else -1
        if size <= 0 or len(blob) <= 6 + size:
            raise CredentialsError("wrapped data key carries no Key Vault signature; it was not written by "
                                   "mcrepl or was replaced", provider="azure-keyvault", operation="unwrap_key")
        encrypted, sig = blob[6:6 + size], blob[6 + size:]
        client = self._client(wrapped.kek)
        digest = self._signed_digest(wrapped.kek, encrypted, context)
        check = _kms_call("azure-keyvault", "verify", lambda: client.verify(
            self._crypto_mod.SignatureAlgorithm.ps256, digest, sig))
        if not check.is_valid:
            raise CredentialsError("wrapped data key was replaced or altered: its Key Vault signature does not "
                                   "verify", provider="azure-keyvault", operation="unwrap_key")
        alg = self._crypto_mod.KeyWrapAlgorithm.rsa_oaep_256
        out = _kms_call("azure-keyvault", "unwrap_key", lambda: client.unwrap_key(alg, encrypted))
        key, digest = bytes(out.key[:-32]), bytes(out.key[-32:])
        if digest != hashlib.sha256(context_bytes(context)).digest():
            raise CredentialsError("data key does not match its context (dataset or key id)",
                                   provider="azure-keyvault", operation="unwrap_key")
        return key

    def rotate(self) -> str:
        key = _kms_call("azure-keyvault", "rotate_key", lambda: self._keys_mod.KeyClient(
            self._vault, self._credential).rotate_key(self._name))
        return str(key.id)


class GcpKmsKeyring:
    """Cloud KMS symmetric key (``projects/P/locations/L/keyRings/R/cryptoKeys/K``); rotation
    adds a primary key version, older enabled versions still decrypt."""

    def __init__(self, key_name: str, client: Any = None) -> None:
        kms = _require("google.cloud.kms", "'mcrepl[gcp-kms]' (google-cloud-kms)")
        self.key_name = key_name
        self._kms = client or kms.KeyManagementServiceClient()

    def current(self) -> str:
        key = _kms_call("gcp-kms", "get_crypto_key", lambda: self._kms.get_crypto_key(name=self.key_name))
        return str(key.primary.name)

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        out = _kms_call("gcp-kms", "encrypt", lambda: self._kms.encrypt(request={
            "name": self.key_name, "plaintext": data_key,
            "additional_authenticated_data": context_bytes(context)}))
        return WrappedKey(str(out.name), bytes(out.ciphertext))

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        out = _kms_call("gcp-kms", "decrypt", lambda: self._kms.decrypt(request={
            "name": self.key_name, "ciphertext": wrapped.blob,
            "additional_authenticated_data": context_bytes(context)}))
        return bytes(out.plaintext)

    def rotate(self) -> str:
        version = _kms_call("gcp-kms", "create_crypto_key_version", lambda: self._kms.create_crypto_key_version(
            request={"parent": self.key_name, "crypto_key_version": {}}))
        version_id = str(version.name).rsplit("/", 1)[-1]
        _kms_call("gcp-kms", "update_crypto_key_primary_version", lambda: self._kms.update_crypto_key_primary_version(
            request={"name": self.key_name, "crypto_key_version_id": version_id}))
        return str(version.name)


__all__ = ["AwsKmsKeyring", "AzureKeyVaultKeyring", "GcpKmsKeyring"]
