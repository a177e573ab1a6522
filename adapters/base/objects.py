"""One object per record, replication metadata as custom object metadata: shared by object stores.

Pure conversions (no SDK import) between canonical records and an object's name,
content and custom metadata, parametrised by an :class:`ObjectLayout` that says the
store's limits and how it reports the digest of the bytes it holds (GCS: ``md5Hash``,
base64; S3: the ETag of a single-part upload, hex MD5). Apply, capture, read and digests
all reuse them.

How metadata is trusted without downloading
-------------------------------------------
Every object mcrepl writes carries its :class:`ReplicationMeta` as custom metadata
(``mcrepl-v``, ``mcrepl-h``, ``mcrepl-t``, ``mcrepl-vv``, ``mcrepl-e``, optional
``mcrepl-ph``) and one more key, ``mcrepl-md5``: the digest of the exact bytes uploaded,
in the form the store reports it for the object.

A plain re-upload drops custom metadata, but a native writer *can* carry our metadata
over (``gsutil cp -p``, ``aws s3 cp`` with metadata, a copy from another object, a client
that re-sends the metadata it read), and some stores change metadata without touching
content. So ``mcrepl-h`` alone proves nothing about the current bytes. The store's
digest is computed by the server from the content actually stored; when it equals
``mcrepl-md5`` the bytes are exactly the bytes whose canonical hash is ``mcrepl-h``, so
the metadata is valid without a download. When it differs (or is absent, as for
composite or multipart objects, which mcrepl never writes) the object is treated as
native, or the body is downloaded and checked with :func:`meta_if_valid` where the body
is needed anyway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from . import tagged_json
from .errors import RecordError
from .interface import DatasetKind
from .record import KeySchema, Record, RecordKey, ReplicationMeta, meta_if_valid

META_PREFIX = "mcrepl-"
MD5_KEY = "mcrepl-md5"
TOMBSTONE_TYPE = "application/octet-stream"
CONTENT_TYPE = {"document": "application/json", "blob": "application/octet-stream"}


@dataclass(frozen=True)
class ObjectLayout:
    """How records become objects in one store: its limits and its content digest.

    ``digest(data)`` is the digest the store reports for an object holding ``data``
    (GCS ``md5Hash``; S3 single-part ETag), so metadata can be proven without a download.
    """

    store: str                              # for messages: "GCS", "S3"
    max_object_bytes: int
    max_metadata_bytes: int
    digest: Callable[[bytes], str]

    @property
    def empty_digest(self) -> str:
        return self.digest(b"")

    def encode_content(self, record: Record, kind: DatasetKind) -> tuple[bytes, str]:
        """The object bytes and content type for ``record`` (empty for a tombstone)."""
        if record.tombstone:
            return b"", TOMBSTONE_TYPE
        if kind == "blob":
            if not isinstance(record.body, (bytes, bytearray)):
                raise RecordError("wrong-body-kind", "a blob dataset needs a bytes body", field="body")
            data = bytes(record.body)
        else:
            if not isinstance(record.body, dict):
                raise RecordError("wrong-body-kind", "a document dataset needs a document body",
                                  field="body")
            data = tagged_json.dumps(record.body)
        if len(data) > self.max_object_bytes:
            raise RecordError("too-large", f"object would be {len(data)} bytes; {self.store} allows "
                              f"{self.max_object_bytes}", field="body")
        return data, CONTENT_TYPE[kind]

    def encode_metadata(self, meta: ReplicationMeta, content: bytes) -> dict[str, str]:
        """Custom metadata for an mcrepl write of ``content`` (see the module docstring)."""
        out = {f"{META_PREFIX}{k}": (json.dumps(v, separators=(",", ":"), sort_keys=True)
                                     if k == "vv" else _text(v))
               for k, v in meta.to_dict().items()}
        out[MD5_KEY] = self.digest(content)
        size = sum(len(k.encode()) + len(v.encode()) for k, v in out.items())
        if size > self.max_metadata_bytes:
            raise RecordError("metadata-too-large", f"replication metadata is {size} bytes; {self.store} "
                              f"allows {self.max_metadata_bytes} (too many origins in the version vector)",
                              field="_mcrepl")
        return out

    def trusted_meta(self, metadata: Mapping[str, str] | None, digest: str | None) -> ReplicationMeta | None:
        """Metadata proven to describe the stored bytes by the store's ``digest`` alone, else ``None``."""
        meta = decode_metadata(metadata)
        if meta is None or not digest or (metadata or {}).get(MD5_KEY) != digest:
            return None
        if meta.tombstone and digest != self.empty_digest:
            return None
        return meta

    def stored_record(self, key: RecordKey, data: bytes, metadata: Mapping[str, str] | None,
                      digest: str | None, kind: DatasetKind, schema: KeySchema) -> Record:
        """The canonical record for a downloaded object; ``meta`` is ``None`` unless valid."""
        meta = self.trusted_meta(metadata, digest)
        if meta is not None and meta.tombstone:
            return Record(key, tombstone_body(key, kind, schema), meta)
        body = decode_body(data, kind)
        if meta is not None:
            return Record(key, body, meta)
        claimed = decode_metadata(metadata)
        if claimed is None or claimed.tombstone:
            return Record(key, body, None)
        return Record(key, body, meta_if_valid(Record(key, body, claimed)))


def _text(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def decode_metadata(metadata: Mapping[str, str] | None) -> ReplicationMeta | None:
    """The :class:`ReplicationMeta` in ``metadata``, or ``None`` if absent or malformed."""
    if not metadata or f"{META_PREFIX}v" not in metadata:
        return None
    fields = {k[len(META_PREFIX):]: v for k, v in metadata.items()
              if k.startswith(META_PREFIX) and k != MD5_KEY}
    try:
        return ReplicationMeta.from_dict(fields)
    except (KeyError, ValueError, TypeError):
        return None


def key_of_name(name: str, kind: DatasetKind, schema: KeySchema) -> RecordKey:
    """The record key an object name stands for (:class:`RecordError` for a foreign name)."""
    return RecordKey((name,)) if kind == "blob" else schema.parse_id(name)


def name_of_key(key: RecordKey, kind: DatasetKind) -> str:
    """The object name for ``key``: the key id for documents, the raw name for blobs."""
    if kind == "blob":
        if len(key.parts) != 1 or not isinstance(key.parts[0], str):
            raise RecordError("bad-key-type", "a blob key is one string part (the object name)",
                              field="name")
        return key.parts[0]
    return key.id


def check_name(name: str, store: str, max_bytes: int, forbidden: Mapping[str, str]) -> None:
    """Refuse a name ``store`` cannot hold: too long in UTF-8, empty, or holding a ``forbidden`` character."""
    size = len(name.encode("utf-8"))
    if size > max_bytes:
        raise RecordError("name-too-long", f"object name is {size} UTF-8 bytes; {store} allows at most "
                          f"{max_bytes} (shorten the key)", field="name")
    if not name:
        raise RecordError("bad-object-name", "object name is empty", field="name")
    for ch, what in forbidden.items():
        if ch in name:
            raise RecordError("bad-object-name", f"object name contains a {what}, which {store} object names "
                              "cannot hold here", field="name")


def decode_body(data: bytes, kind: DatasetKind) -> dict | bytes:
    """The canonical body held in ``data`` (:class:`RecordError` if it isn't a document)."""
    if kind == "blob":
        return bytes(data)
    body = tagged_json.loads(data, "body")
    if not isinstance(body, dict):
        raise RecordError("bad-json", "object body is JSON but not an object", field="body")
    return body


def tombstone_body(key: RecordKey, kind: DatasetKind, schema: KeySchema) -> dict | None:
    """What a tombstone record's body is: the key fields for documents, nothing for blobs."""
    return None if kind == "blob" else schema.key_body(key)


__all__ = ["check_name", "CONTENT_TYPE", "MD5_KEY", "META_PREFIX", "ObjectLayout", "TOMBSTONE_TYPE", "decode_body",
           "decode_metadata", "key_of_name", "name_of_key", "tombstone_body"]
