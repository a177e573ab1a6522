"""S3 objects as records: S3's naming rules and limits over the shared object layout (pure).

The content digest S3 reports for an object written by one PutObject (without SSE-KMS)
is its ETag: the hex MD5 of the bytes, in quotes. mcrepl writes every object in one
PutObject, so ``mcrepl-md5`` holds that hex MD5 and metadata is proven without a
download (see :mod:`mcrepl.adapters.base.objects`). A multipart upload's ETag is not an
MD5, so such an object (written by an application) is read as native and checked against
its body.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from mcrepl.adapters.base import RecordKey
from mcrepl.adapters.base.interface import DatasetKind
from mcrepl.adapters.base.objects import ObjectLayout, check_name, name_of_key

from .settings import MAX_OBJECT_BYTES

MAX_NAME_BYTES = 1024
#: S3 limits user-defined metadata to 2 KB: the sum of the UTF-8 bytes of every key and value
MAX_METADATA_BYTES = 2 * 1024
#: characters a name may not hold: the capture manifest separates names by line feeds, and
#: XML 1.0 (S3's listing format) cannot carry NUL or most control characters
_FORBIDDEN = {"\r": "carriage return", "\n": "line feed", "\x00": "NUL"}


def md5_hex(data: bytes) -> str:
    """The ETag S3 gives an object written by one PutObject: hex MD5, without the quotes."""
    return hashlib.md5(data).hexdigest()


LAYOUT = ObjectLayout("S3", MAX_OBJECT_BYTES, MAX_METADATA_BYTES, md5_hex)


def etag(raw: str | None) -> str | None:
    """An ETag as S3 returns it (``"…"``) without the quotes."""
    return raw.strip('"') if raw else None


def version_of(etag_value: str | None, last_modified: datetime | None) -> int:
    """A positive 60-bit fingerprint of ETag and LastModified: the manifest's version of an object.

    The ETag alone misses a rewrite of identical bytes with other metadata (a newer
    mcrepl version of the same body); LastModified has one-second resolution, so two
    writes of identical bytes in the same second remain indistinguishable to a listing.
    """
    stamp = last_modified.isoformat() if last_modified is not None else ""
    digest = hashlib.sha256(f"{etag_value}|{stamp}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 4 | 1


def object_name(key: RecordKey, kind: DatasetKind) -> str:
    """The object name of ``key``; :class:`RecordError` for a name S3 (or the manifest) cannot hold."""
    name = name_of_key(key, kind)
    check_name(name, "S3", MAX_NAME_BYTES, _FORBIDDEN)
    return name


__all__ = ["LAYOUT", "MAX_METADATA_BYTES", "etag", "md5_hex", "object_name", "version_of"]
