"""Canonical values: the one type system every store is mapped onto.

A canonical body holds only: ``None``, ``bool``, ``str``, ``int`` (any size),
``Decimal`` (finite, non-integral, normalised), ``bytes``, timezone-aware ``datetime``
(stored in UTC), ``list``, ``dict`` with ``str`` keys, and ``frozenset`` of one scalar
kind (``str``, numbers or ``bytes``).

Normalising first (``1.50`` → ``Decimal('1.5')``, ``2.0`` → ``2``, any timezone → UTC)
is what makes a round trip through DynamoDB (38-digit decimals), Cosmos DB (IEEE
doubles) and GCS (bytes) compare equal, and what makes content hashes agree across
stores without reading bodies twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from datetime import datetime, timezone
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Union

from .errors import RecordError

Scalar = Union[None, bool, str, int, Decimal, bytes, datetime]
Value = Union[Scalar, list, dict, frozenset]

#: Enough precision that normalising never rounds; numbers beyond what a target holds
#: are rejected by that target's encoder, not silently rounded here.
WIDE = Context(prec=400, Emax=999999, Emin=-999999)


def normalize_number(value: int | float | Decimal, field: str = "") -> int | Decimal:
    """Return the canonical form of a number: ``int`` when integral, else a normalised ``Decimal``.

    NaN and infinities are refused: no store round-trips them and JSON cannot carry them.
    Floats are read through their shortest ``repr`` so ``0.1`` stays ``0.1``.
    """
    if isinstance(value, bool):
        raise TypeError("bool is not a number here")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError("non-finite-number", f"{value!r} cannot be replicated: no store "
                              "round-trips NaN or Infinity; store null or a sentinel instead", field=field)
        value = Decimal(repr(value))
    if not value.is_finite():
        raise RecordError("non-finite-number", f"{value} cannot be replicated: no store round-trips "
                          "NaN or Infinity; store null or a sentinel instead", field=field)
    if value == value.to_integral_value(context=WIDE):
        return int(value)
    return value.normalize(WIDE)


def normalize(value: Any, field: str = "") -> Value:
    """Return ``value`` in canonical form, or raise :class:`RecordError` naming ``field``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, Decimal)):
        return normalize_number(value, field)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise RecordError("naive-datetime", "datetime has no timezone; mcrepl stores UTC and "
                              "cannot guess the zone: attach one (e.g. tzinfo=timezone.utc)", field=field)
        return value.astimezone(timezone.utc)
    if isinstance(value, dict):
        out: dict[str, Value] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise RecordError("non-string-field-name", f"field name {k!r} is not a string",
                                  field=field)
            out[k] = normalize(v, f"{field}.{k}" if field else k)
        return out
    if isinstance(value, (list, tuple)):
        return [normalize(v, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = frozenset(normalize(v, f"{field}{{}}") for v in value)
        kinds = {set_kind(v) for v in items}
        if len(kinds) > 1 or (kinds and None in kinds):
            raise RecordError("mixed-set", "a set must hold only strings, only numbers or only "
                              "bytes (as DynamoDB string/number/binary sets do)", field=field)
        return items
    raise RecordError("unsupported-type", f"values of type {type(value).__name__} cannot be "
                      "replicated", field=field)


def copy_value(v: Any) -> Any:
    """A copy of a canonical value sharing nothing mutable with ``v``.

    Only dicts and lists are mutable in canonical form (scalars, ``bytes``, ``Decimal``,
    ``datetime`` and ``frozenset`` are not), so copying just those is a deep copy at a
    fraction of ``copy.deepcopy``'s cost; anything else mutable (a ``bytearray`` or ``set``
    in an item a foreign writer stored) is copied by ``copy.deepcopy``.
    """
    kind = type(v)
    if kind is dict:
        return {k: copy_value(x) for k, x in v.items()}
    if kind is list:
        return [copy_value(x) for x in v]
    if kind in (bytearray, set) or isinstance(v, (dict, list)):
        return copy.deepcopy(v)
    return v


def set_kind(v: Value) -> str | None:
    """The DynamoDB set family a scalar belongs to (``S``, ``N``, ``B``) or ``None``."""
    if isinstance(v, str):
        return "S"
    if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
        return "N"
    if isinstance(v, bytes):
        return "B"
    return None


def number_text(n: int | Decimal) -> str:
    """Exact decimal text of a canonical number (no exponent surprises for ints)."""
    return str(n) if isinstance(n, int) else format(n, "f") if abs(n.adjusted()) < 40 else str(n)


# --- the hash form: one byte string per value, identical whichever store it came from ---

def _hash_form(v: Value) -> Any:
    kind = type(v)
    if kind is str or v is None or kind is bool:
        return v
    if kind is dict:
        # strings are most field values: kept inline, they skip a call each
        return {"m": {k: x if type(x) is str else _hash_form(x) for k, x in v.items()}}   # type: ignore[union-attr]
    if kind is list:
        return [x if type(x) is str else _hash_form(x) for x in v]                          # type: ignore[union-attr]
    if isinstance(v, (int, Decimal)):
        return {"n": number_text(v)}
    if isinstance(v, bytes):
        return {"b": v.hex()}
    if isinstance(v, datetime):
        return {"t": v.isoformat()}
    if isinstance(v, list):
        return [_hash_form(x) for x in v]
    if isinstance(v, dict):
        return {"m": {k: _hash_form(x) for k, x in v.items()}}
    if isinstance(v, frozenset):
        return {"s": sorted(json.dumps(_hash_form(x), sort_keys=True) for x in v)}
    raise TypeError(type(v))


def content_hash(key_id: str, body: dict | bytes | None, tombstone: bool) -> str:
    """SHA-256 over key, canonical body and tombstone flag, hex-encoded.

    Equal canonical records hash equal on every store, so ``verify`` compares hashes
    instead of bodies.
    """
    form = {"k": key_id, "t": tombstone,
            "b": None if body is None else ({"raw": body.hex()} if isinstance(body, bytes)
                                            else _hash_form(body))}
    data = json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def nesting_depth(v: Value) -> int:
    """How many container levels ``v`` has (a scalar is 0, ``{"a": 1}`` is 1)."""
    if isinstance(v, dict):
        return 1 + max((nesting_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((nesting_depth(x) for x in v), default=0)
    return 0


def parse_decimal(text: str, field: str = "") -> int | Decimal:
    """Read a decimal string written by any store back into a canonical number."""
    try:
        return normalize_number(Decimal(text), field)
    except InvalidOperation as exc:
        raise RecordError("bad-number", f"{text[:40]!r} is not a number", field=field) from exc
