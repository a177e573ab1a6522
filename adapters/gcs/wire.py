"""GCS objects as records: GCS's naming rules and limits over the shared object layout.

The conversions themselves (content, custom metadata proven by the object's MD5,
tombstones) are :mod:`mcrepl.adapters.base.objects`, shared with every object store;
this module binds them to GCS's limits and its ``md5Hash`` (base64 MD5) digest.
"""

from __future__ import annotations

import base64
import hashlib

from ..base import objects
from ..base.errors import RecordError
from ..base.interface import DatasetKind
from ..base.objects import (MD5_KEY, META_PREFIX, ObjectLayout, decode_body, decode_metadata, key_of_name,
                            name_of_key, tombstone_body)
from ..base.record import RecordKey
from .settings import MAX_OBJECT_BYTES

MAX_NAME_BYTES = 1024
MAX_METADATA_BYTES = 8 * 1024          # GCS limit on custom metadata per object
_FORBIDDEN_CHARS = {"\r": "carriage return", "\n": "line feed", "\x00": "NUL"}
_ACME_PREFIX = ".well-known/acme-challenge/"


def md5_b64(data: bytes) -> str:
    """MD5 of ``data`` in the base64 form GCS reports as ``md5Hash``."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


EMPTY_MD5 = md5_b64(b"")
LAYOUT = ObjectLayout("GCS", MAX_OBJECT_BYTES, MAX_METADATA_BYTES, md5_b64)
encode_content = LAYOUT.encode_content
encode_metadata = LAYOUT.encode_metadata
trusted_meta = LAYOUT.trusted_meta
stored_record = LAYOUT.stored_record


def object_name(key: RecordKey, kind: DatasetKind) -> str:
    """The object name for ``key``: the key id for documents, the raw name for blobs.

    Raises :class:`RecordError` (``name-too-long`` or ``bad-object-name``) for names GCS
    refuses, naming the rule so the quarantine entry says what to change.
    """
    name = name_of_key(key, kind)
    check_name(name)
    return name


def check_name(name: str) -> None:
    """Reject names GCS forbids (https://cloud.google.com/storage/docs/objects#naming)."""
    objects.check_name(name, "GCS", MAX_NAME_BYTES, _FORBIDDEN_CHARS)
    if name in (".", ".."):
        raise RecordError("bad-object-name", "GCS forbids the object names '.' and '..'",
                          field="name")
    if name.startswith(_ACME_PREFIX):
        raise RecordError("bad-object-name", f"GCS forbids names starting with {_ACME_PREFIX!r}",
                          field="name")


__all__ = ["EMPTY_MD5", "LAYOUT", "MD5_KEY", "META_PREFIX", "check_name", "decode_body", "decode_metadata",
           "encode_content", "encode_metadata", "key_of_name", "md5_b64", "object_name", "stored_record",
           "tombstone_body", "trusted_meta"]
