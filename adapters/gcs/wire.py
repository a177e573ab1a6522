"""Pure conversion between canonical records and GCS objects (name, content, custom metadata).

No SDK import here: these functions take and return plain values, so they are tested
without a server and reused by apply, capture, read and digests alike.

How metadata is trusted without downloading
-------------------------------------------
Every object mcrepl writes carries its :class:`ReplicationMeta` as custom metadata
(``mcrepl-v``, ``mcrepl-h``, ``mcrepl-t``, ``mcrepl-vv``, ``mcrepl-e``, optional
``mcrepl-ph``) and one more key, ``mcrepl-md5``: the MD5 of the exact bytes uploaded,
in the form GCS reports as the object's ``md5Hash``.

A GCS object generation is immutable: new content means a new generation, and a plain
re-upload drops custom metadata. But a native writer *can* carry our metadata over
(``gsutil cp -p``, a copy/rewrite from another object, a client that re-sends the
metadata it read), and a metadata patch changes metadata without touching content. So
``mcrepl-h`` alone proves nothing about the current bytes. ``md5Hash`` is computed by
the server from the content actually stored; when it equals ``mcrepl-md5`` the bytes are
exactly the bytes whose canonical hash is ``mcrepl-h``, so the metadata is valid without
a download. When it differs (or is absent, as for composite objects, which mcrepl never
writes) the object is treated as native, or the body is downloaded and checked with
:func:`meta_if_valid` where the body is needed anyway.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping

from ..base import tagged_json
from ..base.errors import RecordError
from ..base.interface import DatasetKind
from ..base.record import KeySchema, Record, RecordKey, ReplicationMeta, meta_if_valid
from .settings import MAX_OBJECT_BYTES

MAX_NAME_BYTES = 1024
MAX_METADATA_BYTES = 8 * 1024          # GCS limit on custom metadata per object
META_PREFIX = "mcrepl-"
MD5_KEY = "mcrepl-md5"
TOMBSTONE_TYPE = "application/octet-stream"
CONTENT_TYPE = {"document": "application/json", "blob": "application/octet-stream"}
_FORBIDDEN_CHARS = {"\r": "carriage return", "\n": "line feed", "\x00": "NUL"}
_ACME_PREFIX = ".well-known/acme-challenge/"


def md5_b64(data: bytes) -> str:
    """MD5 of ``data`` in the base64 form GCS reports as ``md5Hash``."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


EMPTY_MD5 = md5_b64(b"")


def object_name(key: RecordKey, kind: DatasetKind) -> str:
    """The object name for ``key``: the key id for documents, the raw name for blobs.

    Raises :class:`RecordError` (``name-too-long`` or ``bad-object-name``) for names GCS
    refuses, naming the rule so the quarantine entry says what to change.
    """
    if kind == "blob":
        if len(key.parts) != 1 or not isinstance(key.parts[0], str):
            raise RecordError("bad-key-type", "a blob key is one string part (the object name)",
                              field="name")
        name = key.parts[0]
    else:
        name = key.id
    check_name(name)
    return name


def check_name(name: str) -> None:
    """Reject names GCS forbids (https://cloud.google.com/storage/docs/objects#naming)."""
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise RecordError("name-too-long", f"object name is {size} UTF-8 bytes; GCS allows "
                          f"at most {MAX_NAME_BYTES} (shorten the key)", field="name")
    if not name:
        raise RecordError("bad-object-name", "object name is empty", field="name")
    if name in (".", ".."):
        raise RecordError("bad-object-name", "GCS forbids the object names '.' and '..'",
                          field="name")
    if name.startswith(_ACME_PREFIX):
        raise RecordError("bad-object-name", f"GCS forbids names starting with {_ACME_PREFIX!r}",
                          field="name")
    for ch, what in _FORBIDDEN_CHARS.items():
        if ch in name:
            raise RecordError("bad-object-name", f"object name contains a {what}, which GCS "
                              "object names cannot hold", field="name")


def key_of_name(name: str, kind: DatasetKind, schema: KeySchema) -> RecordKey:
    """Inverse of :func:`object_name` (raises :class:`RecordError` for a foreign name)."""
    return RecordKey((name,)) if kind == "blob" else schema.parse_id(name)


def encode_content(record: Record, kind: DatasetKind) -> tuple[bytes, str]:
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
    if len(data) > MAX_OBJECT_BYTES:
        raise RecordError("too-large", f"object would be {len(data)} bytes; GCS allows "
                          f"{MAX_OBJECT_BYTES}", field="body")
    return data, CONTENT_TYPE[kind]


def encode_metadata(meta: ReplicationMeta, content: bytes) -> dict[str, str]:
    """Custom metadata for an mcrepl write of ``content`` (see the module docstring)."""
    out = {f"{META_PREFIX}{k}": (json.dumps(v, separators=(",", ":"), sort_keys=True)
                                 if k == "vv" else _text(v))
           for k, v in meta.to_dict().items()}
    out[MD5_KEY] = md5_b64(content)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in out.items())
    if size > MAX_METADATA_BYTES:
        raise RecordError("metadata-too-large", f"replication metadata is {size} bytes; GCS "
                          f"allows {MAX_METADATA_BYTES} (too many origins in the version vector)",
                          field="_mcrepl")
    return out


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


def trusted_meta(metadata: Mapping[str, str] | None, md5_hash: str | None) -> ReplicationMeta | None:
    """Metadata proven to describe the stored bytes by ``md5Hash`` alone, else ``None``."""
    meta = decode_metadata(metadata)
    if meta is None or not md5_hash or (metadata or {}).get(MD5_KEY) != md5_hash:
        return None
    if meta.tombstone and md5_hash != EMPTY_MD5:
        return None
    return meta


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


def stored_record(key: RecordKey, data: bytes, metadata: Mapping[str, str] | None,
                  md5_hash: str | None, kind: DatasetKind, schema: KeySchema) -> Record:
    """The canonical record for a downloaded object; ``meta`` is ``None`` unless valid."""
    meta = trusted_meta(metadata, md5_hash)
    if meta is not None and meta.tombstone:
        return Record(key, tombstone_body(key, kind, schema), meta)
    body = decode_body(data, kind)
    if meta is not None:
        return Record(key, body, meta)
    claimed = decode_metadata(metadata)
    if claimed is None or claimed.tombstone:
        return Record(key, body, None)
    return Record(key, body, meta_if_valid(Record(key, body, claimed)))
