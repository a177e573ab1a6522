"""Reversible JSON for stores that hold JSON (Cosmos DB documents, GCS objects).

JSON has one number type (IEEE doubles in Cosmos) and no bytes, sets or datetimes, so
values it cannot hold exactly are written as a tagged object
``{"$mcrepl": TYPE, "v": TEXT}``:

=============  =================================================================
``num``        an ``int`` beyond ±2**53, or a ``Decimal`` a double cannot hold
               exactly (``v`` is its exact decimal text)
``bytes``      ``v`` is standard base64
``datetime``   ``v`` is ISO-8601 in UTC
``set``        ``v`` is the sorted list of the encoded members
``map``        a user map that itself has a ``$mcrepl`` key (escaped, so user data
               can never be mistaken for a tag)
=============  =================================================================

Everything else is plain JSON, so documents stay readable and queryable by users.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from .errors import RecordError
from .values import Value, normalize, normalize_number, number_text, parse_decimal

TAG = "$mcrepl"
MAX_SAFE_INT = 2**53


def _double_exact(n: int | Decimal) -> bool:
    if isinstance(n, int):
        return -MAX_SAFE_INT <= n <= MAX_SAFE_INT
    try:
        f = float(n)
    except OverflowError:
        return False
    return f == f and abs(f) != float("inf") and Decimal(repr(f)) == n


def to_json(v: Value) -> Any:
    """Encode a canonical value into JSON-compatible data, tagging what JSON can't hold."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, Decimal)):
        if _double_exact(v):
            return v if isinstance(v, int) else float(v)
        return {TAG: "num", "v": number_text(v)}
    if isinstance(v, bytes):
        return {TAG: "bytes", "v": base64.b64encode(v).decode("ascii")}
    if isinstance(v, datetime):
        return {TAG: "datetime", "v": v.isoformat()}
    if isinstance(v, frozenset):
        members = [to_json(x) for x in v]
        return {TAG: "set", "v": sorted(members, key=lambda m: json.dumps(m, sort_keys=True))}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        encoded = {k: to_json(x) for k, x in v.items()}
        return {TAG: "map", "v": encoded} if TAG in v else encoded
    raise TypeError(type(v))


def from_json(v: Any, field: str = "") -> Value:
    """Decode what :func:`to_json` wrote (and plain JSON written by users) into canonical values."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, float, Decimal)):
        return normalize_number(v, field)
    if isinstance(v, list):
        return [from_json(x, f"{field}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, dict):
        tag = v.get(TAG)
        if isinstance(tag, str) and set(v) == {TAG, "v"}:
            return _untag(tag, v["v"], field)
        return {k: from_json(x, f"{field}.{k}" if field else k) for k, x in v.items()}
    raise RecordError("unsupported-type", f"JSON value of type {type(v).__name__}", field=field)


def _untag(tag: str, payload: Any, field: str) -> Value:
    if tag == "num":
        return parse_decimal(payload, field)
    if tag == "bytes":
        return base64.b64decode(payload)
    if tag == "datetime":
        return normalize(datetime.fromisoformat(payload), field)   # refuses a naive datetime
    if tag == "set":
        return frozenset(from_json(x, field) for x in payload)
    if tag == "map":
        return {k: from_json(x, f"{field}.{k}" if field else k) for k, x in payload.items()}
    raise RecordError("unknown-tag", f"unknown {TAG} tag {tag!r}", field=field)


def dumps(v: Value) -> bytes:
    """Compact UTF-8 JSON bytes of a canonical value (the GCS object body for documents)."""
    return json.dumps(to_json(v), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def loads(data: bytes, field: str = "") -> Value:
    """Inverse of :func:`dumps`; numbers are parsed as decimals so no precision is lost."""
    try:
        raw = json.loads(data, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError("bad-json", f"object body is not JSON: {exc.__class__.__name__}",
                          field=field) from exc
    return from_json(raw, field)


def _reject_constant(name: str) -> Any:
    raise RecordError("non-finite-number", f"{name} cannot be replicated")
