"""Client-side field encryption: AES-256-GCM envelope encryption under per-dataset data keys.

Ciphertext moved to another field, record or dataset fails with ``InvalidTag``; 100,000
encryptions draw 100,000 distinct nonces; after ``rotate`` both old and new data decrypt
and every data key is wrapped under the new KEK only; encrypted values survive the tagged
JSON encoding the Cosmos DB and GCS adapters use.
"""

from __future__ import annotations

import stat
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from mcrepl.adapters.base import ConfigError, CredentialsError, tagged_json
from mcrepl.policies.encryption import (NONCE_BYTES, DataKeyStore, FieldCipher, LocalKeyring, is_encrypted)


@pytest.fixture()
def cipher(tmp_path: Path) -> FieldCipher:
    return FieldCipher(DataKeyStore(tmp_path / "state.db", LocalKeyring.create(tmp_path / "keyring.json")))


def test_key_files_are_owner_only_and_hold_no_plain_data_keys(tmp_path: Path, cipher: FieldCipher) -> None:
    kid = cipher.encrypt_value("customers", "c1", "email", "a@example.com")["kid"]
    for name in ("keyring.json", "state.db"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    data_key = cipher.datakeys.key(kid)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert len(data_key) == 32 and data_key not in stored
    with pytest.raises(FileExistsError):
        LocalKeyring.create(tmp_path / "keyring.json")


def test_a_group_readable_key_file_is_refused(tmp_path: Path) -> None:
    LocalKeyring.create(tmp_path / "k.json")
    (tmp_path / "k.json").chmod(0o640)
    with pytest.raises(CredentialsError):
        LocalKeyring(tmp_path / "k.json")
    with pytest.raises(ConfigError):
        LocalKeyring(tmp_path / "missing.json")


def test_round_trip_keeps_canonical_types(cipher: FieldCipher) -> None:
    values = ["x", 12345678901234567890, Decimal("1.25"), b"\x00\xff", None, True,
              datetime(2026, 1, 2, tzinfo=timezone.utc), {"street": "1 Main", "n": [1, 2]}, frozenset({"a", "b"})]
    for v in values:
        enc = cipher.encrypt_value("customers", "c1", "f", v)
        assert is_encrypted(enc) and enc["kid"] == f"customers/1@{cipher.datakeys.store_id}"
        assert isinstance(enc["ct"], bytes)
        assert cipher.decrypt_value("customers", "c1", "f", enc) == v


def test_ciphertext_copied_to_another_field_record_or_dataset_fails_with_invalid_tag(cipher: FieldCipher) -> None:
    enc = cipher.encrypt_value("customers", "c1", "email", "a@example.com")
    with pytest.raises(InvalidTag):
        cipher.decrypt_value("customers", "c1", "phone", enc)          # another field
    with pytest.raises(InvalidTag):
        cipher.decrypt_value("customers", "c2", "email", enc)          # another record
    with pytest.raises(InvalidTag):
        cipher.decrypt_value("orders", "c1", "email", enc)             # another dataset
    tampered = dict(enc, ct=enc["ct"][:-1] + bytes([enc["ct"][-1] ^ 1]))
    with pytest.raises(InvalidTag):
        cipher.decrypt_value("customers", "c1", "email", tampered)
    assert cipher.decrypt_value("customers", "c1", "email", enc) == "a@example.com"


def test_body_level_encrypt_and_decrypt_with_nested_paths(cipher: FieldCipher) -> None:
    body = {"id": "c1", "email": "a@example.com", "address": {"street": "1 Main", "city": "Berlin"}, "age": 40}
    enc = cipher.encrypt_fields("customers", "c1", body, ["email", "address.street", "missing.field"])
    assert is_encrypted(enc["email"]) and is_encrypted(enc["address"]["street"])
    assert enc["address"]["city"] == "Berlin" and enc["age"] == 40 and body["email"] == "a@example.com"
    assert cipher.decrypt_fields("customers", "c1", enc) == body
    moved = dict(enc, phone=enc["email"])           # copy ciphertext into another field of the record
    with pytest.raises(Exception) as info:
        cipher.decrypt_fields("customers", "c1", moved)
    assert "phone" in str(info.value) and "a@example.com" not in str(info.value)


def test_100000_encryptions_repeat_no_nonce(cipher: FieldCipher) -> None:
    n = 100_000
    nonces = {cipher.encrypt_value("customers", "c1", "email", "same plaintext")["ct"][:NONCE_BYTES]
              for _ in range(n)}
    assert len(nonces) == n


def test_rotation_rewraps_under_the_new_kek_and_old_and_new_records_decrypt(tmp_path: Path, cipher: FieldCipher) -> None:
    old = cipher.encrypt_value("customers", "c1", "email", "old@example.com")
    other = cipher.encrypt_value("orders", "o1", "card", "4111")
    before = cipher.datakeys.wrapping_keks()
    report = cipher.datakeys.rotate()
    store = cipher.datakeys.store_id
    assert report.rewrapped == 2 and report.new_data_keys == {"customers": f"customers/2@{store}",
                                                              "orders": f"orders/2@{store}"}
    assert cipher.datakeys.wrapping_keks() == {report.kek} and report.kek not in before
    new = cipher.encrypt_value("customers", "c2", "email", "new@example.com")
    assert new["kid"] == f"customers/2@{store}"
    # a fresh process: only the files on disk
    reopened = FieldCipher(DataKeyStore(tmp_path / "state.db", LocalKeyring(tmp_path / "keyring.json")))
    assert reopened.decrypt_value("customers", "c1", "email", old) == "old@example.com"
    assert reopened.decrypt_value("customers", "c2", "email", new) == "new@example.com"
    assert reopened.decrypt_value("orders", "o1", "card", other) == "4111"


def test_a_wrapped_data_key_moved_to_another_dataset_does_not_unwrap(tmp_path: Path, cipher: FieldCipher) -> None:
    import sqlite3
    kid = cipher.encrypt_value("customers", "c1", "email", "a@example.com")["kid"]
    moved = kid.replace("customers/", "orders/")
    with sqlite3.connect(tmp_path / "state.db") as db:       # someone with write access to the store
        db.execute("INSERT INTO datakeys(kid, dataset, seq, kek, blob, created_at) "
                   "SELECT ?, 'orders', 1, kek, blob, created_at FROM datakeys WHERE kid=?", (moved, kid))
    fresh = DataKeyStore(tmp_path / "state.db", LocalKeyring(tmp_path / "keyring.json"))
    with pytest.raises(CredentialsError):
        fresh.key(moved)


def test_encrypted_values_survive_the_tagged_json_of_cosmos_and_gcs(cipher: FieldCipher) -> None:
    body = {"id": "c1", "email": cipher.encrypt_value("customers", "c1", "email", "a@example.com")}
    again = tagged_json.loads(tagged_json.dumps(body))
    assert again == body and is_encrypted(again["email"])
    assert cipher.decrypt_fields("customers", "c1", again)["email"] == "a@example.com"


@pytest.mark.parametrize("text", ["a@example.com", "ü \"quoted\" \\ \n\t\u2028", "\x00\x1f", "日本", ""])
def test_the_fast_paths_write_the_same_bytes_as_json(cipher: FieldCipher, text: str) -> None:
    import json

    from mcrepl.policies.encryption import associated_data
    kid = cipher.datakeys.active("customers")[0]
    canonical = json.dumps(["mcrepl-field/v1", "customers", text, "a.b", kid], separators=(",", ":"),
                           ensure_ascii=False).encode("utf-8")
    assert associated_data("customers", text, "a.b", kid) == canonical
    assert cipher._aad("customers", text, "a.b", kid) == canonical
    enc = cipher.encrypt_value("customers", text, "a.b", text)          # string fast path
    plain = cipher.datakeys.aead(kid).decrypt(enc["ct"][:NONCE_BYTES], enc["ct"][NONCE_BYTES:], canonical)
    assert plain == tagged_json.dumps(text)


def test_nonces_stay_distinct_across_many_leases_and_processes(tmp_path: Path) -> None:
    ring = LocalKeyring.create(tmp_path / "k.json")
    nonces = []
    for _ in range(3):                     # three processes in turn, each reserving small blocks
        cipher = FieldCipher(DataKeyStore(tmp_path / "s.db", ring, reserve_block=16))
        nonces += [cipher.encrypt_value("customers", "c1", "f", "v")["ct"][:NONCE_BYTES] for _ in range(1000)]
    assert len(set(nonces)) == len(nonces)
    assert len({n[:8] for n in nonces}) == 3 * -(-1000 // 16)        # one random prefix per reserved block
