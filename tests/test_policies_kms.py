"""The AWS KMS keyring against a real KMS API (moto server from the local stack), and the
clear install hint of the keyrings whose SDK is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import boto3
import pytest

from mcrepl.adapters.base import ConfigError, CredentialsError
from mcrepl.policies.encryption import (AwsKmsKeyring, AzureKeyVaultKeyring, DataKeyStore, FieldCipher,
                                        GcpKmsKeyring)


@pytest.fixture()
def kms_session(local_stack) -> tuple[boto3.session.Session, str]:  # type: ignore[no-untyped-def]
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="eu-west-1")
    return session, local_stack.endpoint("dynamodb")      # moto's server answers every AWS API


def test_kms_keyring_wraps_with_encryption_context_and_survives_rotation(
        tmp_path: Path, kms_session: tuple[boto3.session.Session, str]) -> None:
    session, endpoint = kms_session
    key_arn = session.client("kms", endpoint_url=endpoint).create_key(Description="mcrepl test KEK")["KeyMetadata"]["Arn"]
    ring = AwsKmsKeyring(key_arn, endpoint_url=endpoint, session=session)
    wrapped = ring.wrap(b"k" * 32, {"dataset": "customers", "kid": "customers/1"})
    assert b"k" * 32 not in wrapped.blob
    assert ring.unwrap(wrapped, {"dataset": "customers", "kid": "customers/1"}) == b"k" * 32
    with pytest.raises(CredentialsError) as info:
        ring.unwrap(wrapped, {"dataset": "orders", "kid": "customers/1"})
    assert "aws-kms" in str(info.value)

    cipher = FieldCipher(DataKeyStore(tmp_path / "state.db", ring))
    old = cipher.encrypt_value("customers", "c1", "email", "old@example.com")
    report = cipher.datakeys.rotate()
    assert report.rewrapped == 1
    new = cipher.encrypt_value("customers", "c2", "email", "new@example.com")
    fresh = FieldCipher(DataKeyStore(tmp_path / "state.db", AwsKmsKeyring(key_arn, endpoint_url=endpoint,
                                                                                session=session)))
    assert fresh.decrypt_value("customers", "c1", "email", old) == "old@example.com"
    assert fresh.decrypt_value("customers", "c2", "email", new) == "new@example.com"


def test_key_vault_keyring_without_its_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.keyvault.keys.crypto", None)      # as if the extra were missing
    with pytest.raises(ConfigError) as info:
        AzureKeyVaultKeyring("https://vault.vault.azure.net/keys/kek")
    assert "pip install 'mcrepl[azure-keyvault]'" in str(info.value)


def test_cloud_kms_keyring_without_its_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.kms", None)
    with pytest.raises(ConfigError) as info:
        GcpKmsKeyring("projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k")
    assert "pip install 'mcrepl[gcp-kms]'" in str(info.value)
