"""The Azure Key Vault and Cloud KMS keyrings, run on their SDKs' own offline machinery.

Neither service has an emulator, and the project never hand-writes a fake of a cloud
API, so each keyring runs its real SDK with the SDK-provided stand-in for the network:

* **Azure Key Vault — the SDK's own local CryptographyClient** (``CryptographyClient.from_jwk``):
  azure-keyvault-keys performs RSA-OAEP-256 wrap/unwrap and PS256 sign/verify in-process
  with its local provider, the code path it also uses for public-key operations against
  a real vault. The KeyClient calls (``current``, ``rotate``) are not exercised here.
* **Cloud KMS — gRPC's own testing channel** (``grpc_testing.channel``, package
  grpcio-testing): the generated ``KeyManagementServiceClient`` sends real protobuf
  requests over it; the test reads each request and scripts the answer, asserting what
  the keyring sent. The channel is wrapped only where grpc_testing 1.80 lags grpc 1.85:
  it drops call options (``wait_for_ready``, ``compression``) the testing channel does not
  accept and gives its failed calls the ``result()`` that grpc's interceptors call.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import grpc
import grpc_testing
import pytest
from azure.keyvault.keys import JsonWebKey
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import KeyManagementServiceGrpcTransport
from google.cloud.kms_v1.types import service as kms_service
from google.protobuf import descriptor_pb2, descriptor_pool

from mcrepl.adapters.base import CredentialsError
from mcrepl.policies.datakeys import DataKeyStore
from mcrepl.policies.encryption import AzureKeyVaultKeyring, FieldCipher, GcpKmsKeyring
from mcrepl.policies.keyring import context_bytes

VAULT_KEY = "https://mcrepl-test.vault.azure.net/keys/kek"
CTX = {"purpose": "mcrepl-data-key", "dataset": "customers", "kid": "customers/1@abc"}


# -- Azure Key Vault: the SDK's local CryptographyClient ---------------------------------

def _jwk(version: str) -> JsonWebKey:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    big = lambda i: i.to_bytes((i.bit_length() + 7) // 8, "big")  # noqa: E731
    return JsonWebKey(kid=f"{VAULT_KEY}/{version}", kty="RSA", key_ops=["wrapKey", "unwrapKey", "sign", "verify"],
                      n=big(numbers.public_numbers.n), e=big(numbers.public_numbers.e), d=big(numbers.d),
                      p=big(numbers.p), q=big(numbers.q), dp=big(numbers.dmp1), dq=big(numbers.dmq1),
                      qi=big(numbers.iqmp))


@pytest.fixture()
def vault_ring() -> AzureKeyVaultKeyring:
    client = CryptographyClient.from_jwk(_jwk("v1"))                # the SDK's own local client
    return AzureKeyVaultKeyring(VAULT_KEY, crypto_client=lambda key_id: client)


def test_key_vault_wraps_signs_and_unwraps_with_the_sdk_local_client(vault_ring: AzureKeyVaultKeyring,
                                                                     tmp_path: Path) -> None:
    wrapped = vault_ring.wrap(b"k" * 32, CTX)
    assert wrapped.kek == f"{VAULT_KEY}/v1" and b"k" * 32 not in wrapped.blob
    assert vault_ring.unwrap(wrapped, CTX) == b"k" * 32
    with pytest.raises(CredentialsError):
        vault_ring.unwrap(wrapped, {**CTX, "dataset": "orders"})   # bound to its dataset and id
    cipher = FieldCipher(DataKeyStore(tmp_path / "k.db", vault_ring))
    enc = cipher.encrypt_value("customers", "c1", "email", "a@example.com")
    fresh = FieldCipher(DataKeyStore(tmp_path / "k.db", vault_ring))
    assert fresh.decrypt_value("customers", "c1", "email", enc) == "a@example.com"


def test_a_key_vault_wrapped_key_replaced_with_the_public_key_is_refused(vault_ring: AzureKeyVaultKeyring) -> None:
    """The attack the signature stops: RSA-OAEP needs only the public key, so a store writer
    can wrap a data key of their own, with the right context digest, and keep the old
    signature or none; the keyring refuses both instead of using the attacker's key."""
    genuine = vault_ring.wrap(b"k" * 32, CTX)
    public_only = CryptographyClient.from_jwk(JsonWebKey(**{
        **{k: getattr(vault_ring._client(VAULT_KEY)._key, k) for k in ("kid", "kty", "n", "e")},
        "key_ops": ["wrapKey"]}))
    chosen = b"a" * 32 + hashlib.sha256(context_bytes(CTX)).digest()
    forged = public_only.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, chosen).encrypted_key
    size = int.from_bytes(genuine.blob[4:6], "big")
    with_old_signature = genuine.blob[:4] + len(forged).to_bytes(2, "big") + forged + genuine.blob[6 + size:]
    for blob in (with_old_signature, forged):
        with pytest.raises(CredentialsError) as info:
            vault_ring.unwrap(type(genuine)(genuine.kek, blob), CTX)
        assert "signature" in str(info.value)


# -- Cloud KMS: gRPC's own testing channel -------------------------------------------------

KEY_NAME = "projects/p/locations/europe-west1/keyRings/mcrepl/cryptoKeys/kek"


def _kms_service() -> Any:
    """A descriptor of the KMS service, built from the SDK's own message types (the
    proto-plus package registers messages, not services)."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindServiceByName("google.cloud.kms.v1.KeyManagementService")
    except KeyError:
        types = kms_service.EncryptRequest.pb().DESCRIPTOR.file
        proto = descriptor_pb2.FileDescriptorProto(name="mcrepl_tests/kms_service.proto", package="google.cloud.kms.v1",
                                                   dependency=[types.name], syntax="proto3")
        svc = proto.service.add(name="KeyManagementService")
        for method in ("Encrypt", "Decrypt"):
            svc.method.add(name=method, input_type=f".google.cloud.kms.v1.{method}Request",
                           output_type=f".google.cloud.kms.v1.{method}Response")
        pool.Add(proto)
        return pool.FindServiceByName("google.cloud.kms.v1.KeyManagementService")


class _FailedCall(grpc.RpcError):
    """grpc_testing's failed call, with the ``result()`` that real gRPC calls have and the
    client's interceptor calls."""

    def __init__(self, err: Any) -> None:
        super().__init__(err.details())
        self._err = err

    def code(self) -> grpc.StatusCode:
        return self._err.code()

    def details(self) -> str:
        return str(self._err.details())

    def trailing_metadata(self) -> Any:
        return self._err.trailing_metadata()

    def initial_metadata(self) -> Any:
        return self._err.initial_metadata()

    def result(self, timeout: Any = None) -> Any:
        raise self


class _CallOptionsDropped(grpc.Channel):
    """grpc_testing's channel, minus the call options its 1.80 multicallables do not take."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    *_: Any, **__: Any) -> Any:
        call = self._channel.unary_unary(method, request_serializer, response_deserializer)

        class _Call:
            def __call__(self, request: Any, timeout: Any = None, metadata: Any = None, credentials: Any = None,
                         **_: Any) -> Any:
                return call(request, timeout=timeout, metadata=metadata, credentials=credentials)

            def with_call(self, request: Any, timeout: Any = None, metadata: Any = None, credentials: Any = None,
                          **_: Any) -> Any:
                try:
                    return call.with_call(request, timeout=timeout, metadata=metadata, credentials=credentials)
                except grpc.RpcError as err:
                    raise _FailedCall(err) from None

        return _Call()

    def unary_stream(self, *a: Any, **k: Any) -> Any:
        raise NotImplementedError("the keyring makes unary calls only")

    stream_unary = stream_stream = unary_stream

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        return None

    def unsubscribe(self, callback: Any) -> None:
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> "_CallOptionsDropped":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


@pytest.fixture()
def kms() -> tuple[GcpKmsKeyring, Any, Any]:
    service = _kms_service()
    channel = grpc_testing.channel([service], grpc_testing.strict_real_time())
    transport = KeyManagementServiceGrpcTransport(channel=_CallOptionsDropped(channel),
                                                  credentials=AnonymousCredentials())
    return GcpKmsKeyring(KEY_NAME, client=kms_v1.KeyManagementServiceClient(transport=transport)), channel, service


def _serve(channel: Any, service: Any, method: str, answer: Callable[[Any], tuple[Any, grpc.StatusCode]],
           call: Callable[[], Any]) -> Any:
    """Run ``call`` on a thread; answer its one ``method`` request with ``answer(request)``."""
    out: dict[str, Any] = {}

    def client() -> None:
        try:
            out["value"] = call()
        except Exception as exc:  # noqa: BLE001 - re-raised in the test thread below
            out["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    taken: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=lambda: taken.put(channel.take_unary_unary(service.methods_by_name[method])),
                     daemon=True).start()
    deadline = time.monotonic() + 10
    while True:                      # the client may fail before it sends anything: never wait forever
        try:
            _, request, rpc = taken.get(timeout=0.05)
            break
        except queue.Empty:
            if "error" in out:
                raise out["error"]
            assert time.monotonic() < deadline, f"the keyring sent no {method} request"
    response, code = answer(request)
    rpc.terminate(response, (), code, "" if code is grpc.StatusCode.OK else "denied by the test")
    thread.join(10)
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_cloud_kms_wraps_with_the_context_as_aad_and_unwraps(kms: tuple[GcpKmsKeyring, Any, Any]) -> None:
    ring, channel, service = kms
    seen: list[Any] = []

    def encrypt(request: Any) -> tuple[Any, grpc.StatusCode]:
        seen.append(request)
        return kms_service.EncryptResponse(name=f"{KEY_NAME}/cryptoKeyVersions/3", ciphertext=b"opaque-1"), \
            grpc.StatusCode.OK

    wrapped = _serve(channel, service, "Encrypt", encrypt, lambda: ring.wrap(b"k" * 32, CTX))
    assert (seen[0].name, seen[0].plaintext, seen[0].additional_authenticated_data) == (
        KEY_NAME, b"k" * 32, context_bytes(CTX))
    assert (wrapped.kek, wrapped.blob) == (f"{KEY_NAME}/cryptoKeyVersions/3", b"opaque-1")

    def decrypt(request: Any) -> tuple[Any, grpc.StatusCode]:
        assert request.ciphertext == b"opaque-1" and request.additional_authenticated_data == context_bytes(CTX)
        return kms_service.DecryptResponse(plaintext=b"k" * 32), grpc.StatusCode.OK

    assert _serve(channel, service, "Decrypt", decrypt, lambda: ring.unwrap(wrapped, CTX)) == b"k" * 32


def test_cloud_kms_refusal_becomes_a_credentials_error_without_key_material(kms: tuple[GcpKmsKeyring, Any, Any]) -> None:
    ring, channel, service = kms
    with pytest.raises(CredentialsError) as info:
        _serve(channel, service, "Encrypt", lambda request: (kms_service.EncryptResponse(),
                                                             grpc.StatusCode.PERMISSION_DENIED),
               lambda: ring.wrap(b"secret-data-key-bytes-0123456789", CTX))
    assert "gcp-kms" in str(info.value) and "secret-data-key" not in str(info.value)
