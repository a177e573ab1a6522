"""The wrapped data-key store: one store from any directory, ids unique per store, rollover
before the GCM random-nonce limit with a durable counter, a bounded cache, a legacy
import, and pickling without key material."""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path
from typing import Mapping

import pytest
import yaml

from mcrepl.adapters.base import CredentialsError
from mcrepl.orchestrator.config import load_config
from mcrepl.policies.datakeys import GCM_RANDOM_NONCE_LIMIT, DataKeyStore, datakeys_path, open_datakeys
from mcrepl.policies.encryption import FieldCipher, LocalKeyring
from mcrepl.policies.keyring import WrappedKey


class CountingKeyring:
    """Our LocalKeyring, counting how often the store asks it to unwrap."""

    def __init__(self, inner: LocalKeyring) -> None:
        self.inner, self.unwraps = inner, 0

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        return self.inner.wrap(data_key, context)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        self.unwraps += 1
        return self.inner.unwrap(wrapped, context)

    def rotate(self) -> str:
        return self.inner.rotate()

    def current(self) -> str:
        return self.inner.current()


@pytest.fixture()
def ring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.create(tmp_path / "keyring.json")


def test_the_same_store_is_used_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "deploy"
    conf.mkdir()
    (conf / "mcrepl.yaml").write_text(yaml.safe_dump({
        "state_dir": ".state", "datasets": {"customers": {
            "key": {"partition": "id"}, "primary": "dynamodb:eu-west-1", "replicas": ["gcs:europe-west3"]}},
        "policies": {"encryption": {"keyring": {"path": "secrets/kek.json"}}}}))
    monkeypatch.chdir(conf)
    config = load_config("mcrepl.yaml")
    LocalKeyring.create(config.policies.encryption.keyring.path or "")
    enc = FieldCipher(open_datakeys(config)).encrypt_value("customers", "c1", "email", "a@example.com")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = load_config(conf / "mcrepl.yaml")
    assert datakeys_path(again) == conf / ".state" / "datakeys.db"
    assert FieldCipher(open_datakeys(again)).decrypt_value("customers", "c1", "email", enc) == "a@example.com"
    assert not list(elsewhere.iterdir())               # nothing was created where the command ran


def test_key_ids_are_unique_per_store_and_a_foreign_id_is_named(tmp_path: Path, ring: LocalKeyring) -> None:
    a, b = DataKeyStore(tmp_path / "a.db", ring), DataKeyStore(tmp_path / "b.db", ring)
    kid_a, kid_b = a.active("customers")[0], b.active("customers")[0]
    assert kid_a != kid_b and kid_a.startswith("customers/1@") and kid_b.startswith("customers/1@")
    enc = FieldCipher(a).encrypt_value("customers", "c1", "email", "a@example.com")
    with pytest.raises(CredentialsError) as info:
        FieldCipher(b).decrypt_value("customers", "c1", "email", enc)
    assert a.store_id in str(info.value) and b.store_id in str(info.value)
    assert "a@example.com" not in str(info.value)


def test_rollover_before_the_limit_with_a_durable_counter(tmp_path: Path, ring: LocalKeyring) -> None:
    assert GCM_RANDOM_NONCE_LIMIT == 2 ** 32
    store = DataKeyStore(tmp_path / "k.db", ring, max_encryptions=10, reserve_block=4)
    cipher = FieldCipher(store)
    kids = [cipher.encrypt_value("customers", f"c{i}", "email", "x")["kid"] for i in range(25)]
    distinct = list(dict.fromkeys(kids))
    assert len(distinct) == 3 and [kids.count(k) for k in distinct] == [10, 10, 5]
    assert all(store.encryptions(k) <= 10 for k in distinct)
    # a second process (or a crashed one's successor) continues from the durable count
    other = DataKeyStore(tmp_path / "k.db", ring, max_encryptions=10, reserve_block=4)
    nxt = [FieldCipher(other).encrypt_value("customers", f"d{i}", "email", "x")["kid"] for i in range(4)]
    assert store.encryptions(distinct[-1]) == 10 and set(nxt) <= {distinct[-1]} | set(other.kids("customers"))
    total_reserved = sum(other.encryptions(k) for k in other.kids("customers"))
    assert total_reserved >= 25 + 4                       # reserved before use: never under-counted
    # every ciphertext still decrypts after rollovers
    reopened = FieldCipher(DataKeyStore(tmp_path / "k.db", ring))
    enc = cipher.encrypt_value("customers", "z", "email", "after")
    assert reopened.decrypt_value("customers", "z", "email", enc) == "after"


def test_a_crash_loses_at_most_one_reserved_block(tmp_path: Path, ring: LocalKeyring) -> None:
    first = DataKeyStore(tmp_path / "k.db", ring, max_encryptions=100, reserve_block=8)
    kid = first.encryption("customers")[0]          # reserves 8, uses 1, then "crashes"
    del first
    second = DataKeyStore(tmp_path / "k.db", ring, max_encryptions=100, reserve_block=8)
    assert second.encryption("customers")[0] == kid and second.encryptions(kid) == 16


def test_unwrapped_keys_are_cached_with_a_bound(tmp_path: Path, ring: LocalKeyring) -> None:
    writer = FieldCipher(DataKeyStore(tmp_path / "k.db", ring))
    encs = {ds: writer.encrypt_value(ds, "r", "f", ds) for ds in ("a1", "b1", "c1", "d1", "e1")}
    counting = CountingKeyring(LocalKeyring(tmp_path / "keyring.json"))
    reader = FieldCipher(DataKeyStore(tmp_path / "k.db", counting, cache_size=2))
    for _ in range(3):
        assert reader.decrypt_value("a1", "r", "f", encs["a1"]) == "a1"
    assert counting.unwraps == 1                          # the cache answers after the first unwrap
    for ds, enc in encs.items():
        assert reader.decrypt_value(ds, "r", "f", enc) == ds
    assert len(reader.datakeys._cache) == 2               # bounded: least recently used keys dropped


def test_a_legacy_json_store_is_imported_once_and_its_keys_only_decrypt(tmp_path: Path, ring: LocalKeyring) -> None:
    state = tmp_path / "state"
    state.mkdir()
    ctx = {"purpose": "mcrepl-data-key", "dataset": "customers", "kid": "customers/1"}
    raw = b"\x01" * 32
    (state / "datakeys.json").write_text(json.dumps({"datasets": {"customers": {
        "active": "customers/1", "keys": {"customers/1": ring.wrap(raw, ctx).to_dict()}}}}))
    from mcrepl.orchestrator.config import McreplConfig
    config = McreplConfig.model_validate({"state_dir": str(state), "datasets": {"customers": {
        "key": {"partition": "id"}, "primary": "dynamodb:eu-west-1", "replicas": ["gcs:europe-west3"]}},
        "policies": {"encryption": {"keyring": {"path": str(tmp_path / "keyring.json")}}}})
    store = open_datakeys(config)
    assert store.key("customers/1") == raw
    assert (state / "datakeys.json.imported").exists() and not (state / "datakeys.json").exists()
    new_kid = store.encryption("customers")[0]     # never counted: a fresh, counted key takes over
    assert new_kid == f"customers/2@{store.store_id}"


def test_the_store_pickles_without_key_material_or_connection(tmp_path: Path, ring: LocalKeyring) -> None:
    store = DataKeyStore(tmp_path / "k.db", ring)
    kid, key = store.active("customers")
    blob = pickle.dumps(store)
    assert key not in blob and ring._versions["1"] not in blob      # neither the data key nor the KEK
    again = pickle.loads(blob)
    assert again.key(kid) == key


def test_a_replaced_wrapped_key_does_not_unwrap(tmp_path: Path, ring: LocalKeyring) -> None:
    store = DataKeyStore(tmp_path / "k.db", ring)
    kid, _ = store.active("customers")
    forged = LocalKeyring.create(tmp_path / "attacker.json").wrap(b"\x02" * 32, store._context("customers", kid))
    with sqlite3.connect(tmp_path / "k.db") as db:
        db.execute("UPDATE datakeys SET kek=?, blob=? WHERE kid=?", ("local/v1", forged.blob, kid))
    with pytest.raises(CredentialsError):
        DataKeyStore(tmp_path / "k.db", ring).key(kid)
