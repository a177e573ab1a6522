"""The canonical record and its replication metadata.

A record is a key, a body (a canonical document, or bytes for blob datasets) and
:class:`ReplicationMeta` stored beside the data in every store, so any replica can be
compared with any other without the orchestrator's state.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal, Mapping

from .errors import RecordError
from .values import Value, content_hash, normalize, parse_decimal

KeyType = Literal["S", "N", "B"]
KeyPart = str | int | Decimal | bytes


@dataclass(frozen=True)
class KeyAttribute:
    """One key attribute: its field name in the body and its DynamoDB-style type."""

    name: str
    type: KeyType = "S"


@dataclass(frozen=True)
class KeySchema:
    """Which body fields form the record key (a partition key and an optional sort key)."""

    partition: KeyAttribute
    sort: KeyAttribute | None = None

    @property
    def attributes(self) -> tuple[KeyAttribute, ...]:
        return (self.partition,) if self.sort is None else (self.partition, self.sort)

    def key_of(self, body: Mapping[str, Value]) -> "RecordKey":
        """Extract the key from a document body, with an error naming the missing field."""
        parts: list[KeyPart] = []
        for attr in self.attributes:
            if attr.name not in body or body[attr.name] is None:
                raise RecordError("missing-key", f"key field {attr.name!r} is missing", field=attr.name)
            parts.append(_check_part(attr, body[attr.name]))
        return RecordKey(tuple(parts))

    def key_body(self, key: "RecordKey") -> dict[str, Value]:
        """The key fields as a body fragment (what a tombstone keeps)."""
        return {a.name: p for a, p in zip(self.attributes, key.parts)}

    def parse_id(self, key_id: str) -> "RecordKey":
        """Inverse of :meth:`RecordKey.id` for this schema."""
        texts = key_id.split("|")
        if len(texts) != len(self.attributes):
            raise RecordError("bad-key", f"key id has {len(texts)} parts, schema has "
                              f"{len(self.attributes)}")
        parts: list[KeyPart] = []
        for attr, text in zip(self.attributes, texts):
            text = _unescape(text)
            if attr.type == "S":
                parts.append(text)
            elif attr.type == "N":
                parts.append(parse_decimal(text, attr.name))
            else:
                parts.append(base64.urlsafe_b64decode(text.encode()))
        return RecordKey(tuple(parts))


def _check_part(attr: KeyAttribute, value: Value) -> KeyPart:
    ok = {"S": isinstance(value, str) and value != "",
          "N": isinstance(value, (int, Decimal)) and not isinstance(value, bool),
          "B": isinstance(value, bytes) and value != b""}[attr.type]
    if not ok:
        raise RecordError("bad-key-type", f"key field {attr.name!r} must be a non-empty "
                          f"{ {'S': 'string', 'N': 'number', 'B': 'binary'}[attr.type]}", field=attr.name)
    return value  # type: ignore[return-value]


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("|", "%7C")


def _unescape(text: str) -> str:
    return text.replace("%7C", "|").replace("%25", "%")


@dataclass(frozen=True, order=True)
class RecordKey:
    """A record's key parts, in key-schema order."""

    parts: tuple[KeyPart, ...]

    @property
    def id(self) -> str:
        """Reversible string form: parts joined by ``|`` (``%`` and ``|`` escaped).

        Used as the Cosmos DB id (further escaped there), the GCS object name and the
        key in state, reports and digests.
        """
        out = []
        for p in self.parts:
            if isinstance(p, bytes):
                out.append(base64.urlsafe_b64encode(p).decode())
            elif isinstance(p, str):
                out.append(_escape(p))
            else:
                out.append(str(p))
        return "|".join(out)

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True, order=True)
class Version:
    """A hybrid logical clock reading plus its origin: one total order over all writes.

    Ordering is by wall time, then the logical counter, then the origin replica name —
    the deterministic tie-break that makes last-writer-wins agree on every replica.
    """

    wall_ms: int
    counter: int
    origin: str

    @property
    def token(self) -> str:
        """Fixed-width text whose string order equals the version order.

        Stores compare it inside their own conditions (DynamoDB condition expressions
        compare strings), so no read-before-write is needed there.
        """
        return f"{self.wall_ms:015d}.{self.counter:08d}.{self.origin}"

    @classmethod
    def parse(cls, token: str) -> "Version":
        wall, counter, origin = token.split(".", 2)
        return cls(int(wall), int(counter), origin)


def vector_dominates(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """True when version vector ``a`` has seen everything ``b`` has (per-origin tokens)."""
    return all(a.get(origin, "") >= tok for origin, tok in b.items())


def vectors_concurrent(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """True when neither vector has seen all of the other: a real conflict."""
    return not vector_dominates(a, b) and not vector_dominates(b, a)


@dataclass(frozen=True)
class ReplicationMeta:
    """What mcrepl stores beside each record in each store.

    ``vector`` maps each origin replica to the token of the latest write from it that
    this version has seen; it tells real conflicts from ordinary succession.
    ``epoch`` is the primary-pointer epoch (fencing token) the write was made under.
    ``content_hash`` always describes the body as stored; ``plain_hash`` is set when the
    stored body was transformed on the way (client-side field encryption) and holds the
    hash of the plaintext record, which is what replicas are compared on.
    """

    version: Version
    content_hash: str
    tombstone: bool = False
    vector: Mapping[str, str] = field(default_factory=dict)
    epoch: int = 0
    plain_hash: str | None = None
    written: Version | None = None
    written_ms: int | None = None

    @property
    def written_at_ms(self) -> int:
        """When the body's write happened, as well as anyone can tell: last-writer-wins orders by it.

        The store's own time for a native write when its change log gave one (a write
        logged late — found when a demoted primary rejoined — keeps the time it was made,
        not the time it was found), else the version's clock reading.
        """
        return self.written_ms if self.written_ms is not None else self.content_version.wall_ms

    @property
    def content_version(self) -> Version:
        """The version of the write whose body this is: last-writer-wins compares these.

        A settlement re-stamps the winning body with a new version (so it supersedes both
        sides) but keeps the winner's own version here; otherwise a later settlement would
        let a re-stamped old body beat a newer write it never saw.
        """
        return self.written or self.version

    @property
    def comparable_hash(self) -> str:
        """The hash replicas are compared on: the plaintext's, whatever is stored."""
        return self.plain_hash or self.content_hash

    def to_dict(self) -> dict[str, object]:
        """Compact, JSON-compatible form (all strings, bools and ints).

        Vector entries with an empty token (origins known but not seen, added only to make
        a store's condition check every origin) are not stored: they carry no information.
        """
        d: dict[str, object] = {"v": self.version.token, "h": self.content_hash, "t": self.tombstone,
                                "vv": {o: t for o, t in self.vector.items() if t}, "e": self.epoch}
        if self.plain_hash:
            d["ph"] = self.plain_hash
        if self.written is not None:
            d["w"] = self.written.token
        if self.written_ms is not None:
            d["a"] = self.written_ms
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "ReplicationMeta":
        vv: Any = d.get("vv") or {}  # a mapping, or its JSON text where the store keeps strings
        if isinstance(vv, str):
            vv = json.loads(vv)
        return cls(Version.parse(str(d["v"])), str(d["h"]), _as_bool(d.get("t", False)),
                   {str(k): str(v) for k, v in dict(vv).items()}, int(str(d.get("e", 0))),
                   str(d["ph"]) if d.get("ph") else None, Version.parse(str(d["w"])) if d.get("w") else None,
                   int(str(d["a"])) if d.get("a") not in (None, "") else None)


def _as_bool(v: object) -> bool:
    return v in (True, "true", "1", 1, "True")


@dataclass(frozen=True)
class Record:
    """A key, its body and its replication metadata.

    ``meta`` is ``None`` for a change captured from a write that did not come through
    mcrepl (an application writing to the primary directly): the sync engine stamps it.
    A tombstone's body holds only the key fields (``None`` for blobs).
    """

    key: RecordKey
    body: dict[str, Value] | bytes | None
    meta: ReplicationMeta | None = None

    @property
    def tombstone(self) -> bool:
        return self.meta is not None and self.meta.tombstone

    def digest_hash(self, tombstone: bool | None = None) -> str:
        """Content hash of this record's key, body and tombstone flag."""
        t = self.tombstone if tombstone is None else tombstone
        return content_hash(self.key.id, None if t else self.body, t)

    def stamped(self, version: Version, vector: Mapping[str, str] | None = None, *,
                tombstone: bool = False, epoch: int = 0) -> "Record":
        """A copy carrying ``version``; the vector defaults to ``{origin: token}``."""
        vv = dict(vector or {})
        vv[version.origin] = max(vv.get(version.origin, ""), version.token)
        meta = ReplicationMeta(version, self.digest_hash(tombstone), tombstone, vv, epoch)
        return replace(self, meta=meta)


def document(schema: KeySchema, body: Mapping[str, object]) -> Record:
    """Build an unstamped document record from user data, normalising every value."""
    canon = normalize(dict(body))
    assert isinstance(canon, dict)
    return Record(schema.key_of(canon), canon)


def blob(name: str, data: bytes) -> Record:
    """Build an unstamped blob record (key = object name)."""
    if not name:
        raise RecordError("missing-key", "blob name is empty", field="name")
    return Record(RecordKey((name,)), bytes(data))


def tombstone_of(schema: KeySchema, key: RecordKey, version: Version,
                 vector: Mapping[str, str] | None = None, *, blob_dataset: bool = False,
                 epoch: int = 0) -> Record:
    """A delete as a record: key fields only, flagged so it replicates and can't resurrect."""
    body = None if blob_dataset else schema.key_body(key)
    return Record(key, body).stamped(version, vector, tombstone=True, epoch=epoch)


def meta_if_valid(record: Record) -> ReplicationMeta | None:
    """The record's metadata if it still describes the body, else ``None``.

    An application that updates an item in place keeps our stale metadata attribute;
    the hash no longer matching tells us the change did not come through mcrepl.
    """
    if record.meta is None:
        return None
    if record.meta.tombstone:
        return record.meta
    return record.meta if record.digest_hash(False) == record.meta.content_hash else None
