"""Pure conversion between canonical records and Cosmos DB documents (no SDK, no I/O).

Layout (a key-value layout: partition key path ``/id``, so every record is its own
logical partition and every read is a point lookup by id)::

    {"id": <escaped RecordKey.id>,
     <body fields, tagged_json-encoded>,
     "_mcrepl_fields": {<body fields that would collide with Cosmos/mcrepl names>},
     "_mcrepl": ReplicationMeta.to_dict()}            # absent on native documents

Blob datasets store ``{"id", "name", "data": <tagged bytes>}`` (``data`` absent on a
tombstone).

Guarantees:

* **Ids** — Cosmos forbids ``/ \\ ? #``, tabs and newlines in ids and an id ending in a
  space. :func:`document_id` percent-escapes exactly those (and ``%`` itself), so the
  mapping is reversible and :func:`key_of_document` recovers the :class:`RecordKey`.
* **Reserved names** — a top-level body field named ``id`` or ``ttl`` or starting with
  ``_`` would collide with the document id, Cosmos system properties (``_rid``, ``_ts``
  …), per-item TTL or our own metadata. Such fields are stored, unchanged, inside the
  ``_mcrepl_fields`` wrapper and put back on read: lossless, and the wrapper is itself a
  reserved name, so a user field called ``_mcrepl_fields`` is wrapped too. A document
  whose ``_mcrepl`` is not mcrepl metadata was written by an application: all its fields,
  ``_mcrepl`` included, are the user's (:mod:`mcrepl.adapters.base.inband`).
* **Numbers** — Cosmos numbers are IEEE doubles; integers beyond 2**53 and decimals a
  double cannot hold exactly are written as ``tagged_json`` text, never rounded.
* **Size** — a document whose JSON exceeds :data:`MAX_DOCUMENT_BYTES` is refused with a
  ``RecordError`` (rule ``item-too-large``) naming the largest field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..base.errors import RecordError
from ..base.inband import META_FIELD, WRAPPED_FIELDS, split_reserved, user_fields
from ..base.interface import DatasetKind
from ..base.record import KeySchema, Record, RecordKey, ReplicationMeta
from ..base.tagged_json import from_json, to_json
from .settings import MAX_DOCUMENT_BYTES

SYSTEM_FIELDS = frozenset({"_rid", "_self", "_etag", "_attachments", "_ts", "_lsn"})
#: Cosmos DB's documented item size limit (2 MB), measured on the JSON we send.
#: Cosmos DB's documented id length limit.
MAX_ID_BYTES = 1023

_ID_FORBIDDEN = {"%": "%25", "/": "%2F", "\\": "%5C", "?": "%3F", "#": "%23",
                 "\t": "%09", "\r": "%0D", "\n": "%0A"}
_PERCENT_CODE = re.compile(r"%([0-9A-F]{2})")


def document_id(key: RecordKey) -> str:
    """The Cosmos id of ``key``: ``key.id`` with the characters Cosmos forbids escaped."""
    text = "".join(_ID_FORBIDDEN.get(ch, ch) for ch in key.id)
    if text.endswith(" "):
        text = text[:-1] + "%20"
    if len(text.encode("utf-8")) > MAX_ID_BYTES:
        raise RecordError("id-too-long", f"the escaped key is {len(text.encode('utf-8'))} bytes; "
                          f"Cosmos DB ids hold at most {MAX_ID_BYTES} bytes: use shorter keys")
    return text


def key_id_of(doc_id: str) -> str:
    """Inverse of :func:`document_id` at the text level (``RecordKey.id``)."""
    return _PERCENT_CODE.sub(lambda m: chr(int(m.group(1), 16)), doc_id)


def _reserved(name: str) -> bool:
    return name in ("id", "ttl") or name.startswith("_")


def to_document(record: Record, kind: DatasetKind, *, with_meta: bool = True) -> dict[str, Any]:
    """The Cosmos document for ``record`` (``with_meta=False``: as an application writes it)."""
    doc: dict[str, Any] = {"id": document_id(record.key)}
    if kind == "blob":
        doc["name"] = record.key.parts[0]
        if record.body is not None:
            if not isinstance(record.body, bytes):
                raise RecordError("not-bytes", "a blob dataset's body must be bytes", field="data")
            doc["data"] = to_json(record.body)
    else:
        if not isinstance(record.body, dict):
            raise RecordError("not-a-document", "a document dataset's body must be a mapping")
        if not with_meta:
            # as an application writes it: its fields as they are, its own id the document's
            doc.update((name, to_json(value)) for name, value in record.body.items())
            if "id" in record.body:
                doc["id"] = str(record.body["id"])
            check_size(doc)
            return doc
        top, wrapped = split_reserved(record.body, _reserved)
        doc.update((name, to_json(value)) for name, value in top.items())
        if wrapped:
            doc[WRAPPED_FIELDS] = {name: to_json(value) for name, value in wrapped.items()}
    if with_meta and record.meta is not None:
        doc[META_FIELD] = record.meta.to_dict()
    check_size(doc)
    return doc


def check_size(doc: Mapping[str, Any]) -> int:
    """The encoded size of ``doc``; ``item-too-large`` when Cosmos would refuse it."""
    size = len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        largest = max((n for n in doc if n != "id"), default=None,
                      key=lambda n: len(json.dumps(doc[n], ensure_ascii=False)))
        raise RecordError("item-too-large", f"the encoded document is {size} bytes; Cosmos DB items "
                          f"hold at most {MAX_DOCUMENT_BYTES} bytes: split the record or keep large "
                          "payloads in a blob dataset", field=largest)
    return size


def key_of_document(doc: Mapping[str, Any], schema: KeySchema) -> RecordKey:
    """The record key: parsed from the document id, else (a foreign id) from the key fields."""
    try:
        return schema.parse_id(key_id_of(str(doc["id"])))
    except (RecordError, ValueError) as first:
        try:
            return schema.key_of(_body_fields(doc, decode_meta(doc), schema))
        except RecordError:
            raise RecordError("bad-key", f"document id {doc.get('id')!r} is not an mcrepl key and "
                              "the key fields are missing", key=str(doc.get("id"))) from first


def decode_meta(doc: Mapping[str, Any]) -> ReplicationMeta | None:
    """The document's mcrepl metadata, or ``None`` when its ``_mcrepl`` is absent or not metadata."""
    raw = doc.get(META_FIELD)
    if not isinstance(raw, dict):
        return None
    try:
        return ReplicationMeta.from_dict(raw)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def _body_fields(doc: Mapping[str, Any], meta: ReplicationMeta | None, schema: KeySchema) -> dict[str, Any]:
    """Decoded user fields: top-level minus id and system properties, plus the wrapped ones.

    mcrepl's documents carry the escaped key as their ``id`` (a body field named ``id`` is
    wrapped). In an application's document the ``id`` is Cosmos's own, except when the
    dataset's key field is ``id``: then it is that field.
    """
    keep_id = meta is None and any(a.name == "id" for a in schema.attributes)
    fields = user_fields(doc, meta, lambda w: w if isinstance(w, dict) else None,
                         ignore=lambda n: n in SYSTEM_FIELDS or (n == "id" and not keep_id))
    return {n: from_json(v, n) for n, v in fields.items()}


def from_document(doc: Mapping[str, Any], schema: KeySchema, kind: DatasetKind) -> Record:
    """The canonical record a stored document holds (system properties dropped).

    ``meta`` is ``None`` when the document has no ``_mcrepl`` attribute (a native write);
    whether existing metadata still matches the body is for ``meta_if_valid`` to judge.
    """
    key = key_of_document(doc, schema)
    meta = decode_meta(doc)
    body: dict[str, Any] | bytes | None
    if kind == "blob":
        data = doc.get("data")
        decoded = None if data is None else from_json(data, "data")
        if decoded is not None and not isinstance(decoded, bytes):
            raise RecordError("not-bytes", "blob document's data is not tagged bytes",
                              key=key.id, field="data")
        body = decoded
    else:
        body = _body_fields(doc, meta, schema)
    return Record(key, body, meta)
