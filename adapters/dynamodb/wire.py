"""Pure conversion between canonical values and DynamoDB attribute values (no I/O).

Most canonical types have a native DynamoDB type (str→S, bool→BOOL, None→NULL,
int/Decimal→N, bytes→B, list→L, dict→M, frozenset→SS/NS/BS). Timestamps have none, so
they are written as a tagged map ``{"$mcrepl": "datetime", "v": ISO}`` — the same tag
scheme as :mod:`adapters.base.tagged_json` — and a user map that itself has a
``$mcrepl`` key is escaped as ``{"$mcrepl": "map", "v": {...}}``, so decoding is
unambiguous and the round trip is lossless.

What DynamoDB cannot hold is refused here with a :class:`RecordError` naming the field,
before any request is made: more than 38 significant digits, magnitudes outside
1E-130..9.99E+125, empty sets, nesting deeper than 32 levels and items over 400 KB
(measured with DynamoDB's own size rules, metadata attribute included).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, cast

from ..base.errors import RecordError
from ..base.inband import META_FIELD, WRAPPED_FIELDS, split_reserved, user_fields
from ..base.interface import DatasetKind
from ..base.record import KeyPart, KeySchema, Record, RecordKey, ReplicationMeta
from ..base.tagged_json import TAG
from ..base.values import WIDE, Value, parse_decimal, set_kind

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

META_ATTR = META_FIELD          # the reserved attribute holding ReplicationMeta
BLOB_DATA_ATTR = "data"          # blob datasets: the object bytes
MAX_ITEM_BYTES = 400 * 1024
MAX_LEVELS = 32                  # the item itself is level 1 (checked against DynamoDB Local)
MAX_NAME_BYTES = 65535
MAX_KEY_BYTES = {"partition": 2048, "sort": 1024}   # string/binary key values
MAX_DIGITS = 38
MAX_ADJUSTED_EXPONENT = 125      # 9.9999999999999999999999999999999999999E+125
MIN_ADJUSTED_EXPONENT = -130     # 1E-130


# --- numbers -------------------------------------------------------------------------------

def encode_number(n: int | Decimal, field: str) -> str:
    """DynamoDB number text for a canonical number, or a RecordError if N can't hold it exactly."""
    d = Decimal(n)
    if d == 0:
        return "0"
    digits = len(d.normalize(WIDE).as_tuple().digits)
    if digits > MAX_DIGITS:
        raise RecordError("number-precision", f"the number has {digits} significant digits; DynamoDB "
                          f"holds {MAX_DIGITS} (store it as a string to keep it exact)", field=field)
    exponent = d.adjusted()
    if not MIN_ADJUSTED_EXPONENT <= exponent <= MAX_ADJUSTED_EXPONENT:
        raise RecordError("number-range", f"the number's magnitude (1E{exponent:+d}) is outside "
                          "DynamoDB's range 1E-130..9.99E+125 (store it as a string)", field=field)
    if isinstance(n, int) and len(str(abs(n))) <= MAX_DIGITS + 2:
        return str(n)
    return str(d.normalize(WIDE))


# --- values --------------------------------------------------------------------------------

def encode_value(v: Value, field: str, level: int = 2) -> AttributeValue:
    """Encode one canonical value found at ``field``; ``level`` counts the item as level 1."""
    if v is None:
        return {"NULL": True}
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, (int, Decimal)):
        return {"N": encode_number(v, field)}
    if isinstance(v, bytes):
        return {"B": v}
    if isinstance(v, datetime):
        _check_level(level, field)
        return {"M": {TAG: {"S": "datetime"}, "v": {"S": v.isoformat()}}}
    if isinstance(v, list):
        _check_level(level, field)
        return {"L": [encode_value(x, f"{field}[{i}]", level + 1) for i, x in enumerate(v)]}
    if isinstance(v, dict):
        _check_level(level, field)
        if TAG in v:
            _check_level(level + 1, field)
            return {"M": {TAG: {"S": "map"}, "v": {"M": _encode_map(v, field, level + 2)}}}
        return {"M": _encode_map(v, field, level + 1)}
    if isinstance(v, frozenset):
        return _encode_set(v, field)
    raise RecordError("unsupported-type", f"values of type {type(v).__name__} cannot be stored in "
                      "DynamoDB", field=field)


def _encode_map(v: Mapping[str, Value], field: str, level: int) -> dict[str, AttributeValue]:
    return {_name(k, field): encode_value(x, f"{field}.{k}" if field else k, level) for k, x in v.items()}


def _name(name: str, parent: str) -> str:
    """An attribute or map-key name DynamoDB accepts (1 byte to 64 KB of UTF-8)."""
    size = len(name.encode("utf-8"))
    if size == 0:
        raise RecordError("empty-field-name", "DynamoDB refuses empty attribute and map-key names "
                          "(rename the field)", field=f"{parent}." if parent else ".")
    if size > MAX_NAME_BYTES:
        raise RecordError("field-name-too-long", f"a field name of {size:,} bytes exceeds DynamoDB's "
                          f"{MAX_NAME_BYTES:,}", field=parent or None)
    return name


def _check_level(level: int, field: str) -> None:
    if level > MAX_LEVELS:
        raise RecordError("nesting-depth", f"the value nests deeper than DynamoDB's {MAX_LEVELS} "
                          "levels (flatten it, or store it as a JSON string)", field=field)


def _encode_set(v: frozenset, field: str) -> AttributeValue:
    if not v:
        raise RecordError("empty-set", "DynamoDB cannot store an empty set (store null or omit "
                          "the field)", field=field)
    kinds = {set_kind(x) for x in v}
    if len(kinds) != 1 or None in kinds:
        raise RecordError("mixed-set", "a set must hold only strings, only numbers or only bytes",
                          field=field)
    kind = kinds.pop()
    if kind == "S":
        return {"SS": sorted(v)}
    if kind == "N":
        return {"NS": [encode_number(x, f"{field}{{}}") for x in sorted(v)]}
    return {"BS": sorted(v)}


def decode_value(av: Mapping[str, Any], field: str = "") -> Value:
    """Decode one attribute value into its canonical value (numbers via ``normalize_number``)."""
    (kind, payload), = av.items()
    if kind == "S":
        return str(payload)
    if kind == "N":
        return parse_decimal(str(payload), field)
    if kind == "B":
        return bytes(payload)
    if kind == "BOOL":
        return bool(payload)
    if kind == "NULL":
        return None
    if kind == "L":
        return [decode_value(x, f"{field}[{i}]") for i, x in enumerate(payload)]
    if kind == "M":
        return _decode_map(payload, field)
    if kind == "SS":
        return frozenset(str(x) for x in payload)
    if kind == "NS":
        return frozenset(parse_decimal(str(x), field) for x in payload)
    if kind == "BS":
        return frozenset(bytes(x) for x in payload)
    raise RecordError("unsupported-type", f"unknown DynamoDB attribute type {kind!r}", field=field)


def _decode_map(payload: Mapping[str, Any], field: str) -> Value:
    if set(payload) == {TAG, "v"} and set(payload[TAG]) == {"S"}:
        tag, inner = payload[TAG]["S"], payload["v"]
        if tag == "datetime" and set(inner) == {"S"}:
            try:
                stamp = datetime.fromisoformat(inner["S"])
            except ValueError:
                stamp = None
            if stamp is not None and stamp.utcoffset() is not None:
                return stamp.astimezone(timezone.utc)
            # otherwise a user's look-alike map written natively (we only write aware UTC): keep it
        elif tag == "map" and set(inner) == {"M"}:
            return {k: decode_value(x, f"{field}.{k}" if field else k) for k, x in inner["M"].items()}
    return {k: decode_value(x, f"{field}.{k}" if field else k) for k, x in payload.items()}


# --- replication metadata ----------------------------------------------------------------------

def encode_meta(meta: ReplicationMeta) -> AttributeValue:
    """``ReplicationMeta.to_dict()`` as a map: v/h/ph/w strings, t bool, vv map of strings, e/a numbers."""
    m: dict[str, AttributeValue] = {
        "v": {"S": meta.version.token}, "h": {"S": meta.content_hash}, "t": {"BOOL": meta.tombstone},
        "vv": {"M": {origin: {"S": tok} for origin, tok in meta.vector.items() if tok}},
        "e": {"N": str(meta.epoch)},
    }
    if meta.plain_hash:
        m["ph"] = {"S": meta.plain_hash}
    if meta.written is not None:
        m["w"] = {"S": meta.written.token}
    if meta.written_ms is not None:
        m["a"] = {"N": str(meta.written_ms)}
    return {"M": m}


def decode_meta(av: Mapping[str, Any] | None) -> ReplicationMeta | None:
    """The metadata an item carries, or ``None`` when it has none or it is malformed (native)."""
    if not av or set(av) != {"M"}:
        return None
    try:
        plain = {k: decode_value(x, k) for k, x in av["M"].items()}
        return ReplicationMeta.from_dict(plain)
    except (KeyError, ValueError, TypeError, AttributeError, RecordError):
        return None


# --- keys and items ----------------------------------------------------------------------------

def encode_key(key: RecordKey, schema: KeySchema) -> Item:
    """The primary-key attributes of ``key`` (what GetItem/DeleteItem take)."""
    return {a.name: encode_value(p, a.name) for a, p in zip(schema.attributes, key.parts)}


def encode_item(record: Record, schema: KeySchema, kind: DatasetKind, *,
                with_meta: bool = True) -> Item:
    """The DynamoDB item for ``record``: body attributes (or name + data for blobs) and ``_mcrepl``.

    Raises :class:`RecordError` for anything DynamoDB would refuse or could not return exactly.
    """
    if kind == "blob":
        item = _blob_attributes(record, schema)
    else:
        item = _document_attributes(record, schema, wrap=with_meta)
    if with_meta and record.meta is not None:
        item[META_ATTR] = encode_meta(record.meta)
    check_item_size(item)
    return item


def _blob_attributes(record: Record, schema: KeySchema) -> Item:
    _check_key_sizes(record.key, schema)
    item = encode_key(record.key, schema)
    if record.body is not None and not record.tombstone:
        if not isinstance(record.body, bytes):
            raise RecordError("bad-body", "a blob record's body must be bytes", field=BLOB_DATA_ATTR)
        item[BLOB_DATA_ATTR] = {"B": record.body}
    return item


def _document_attributes(record: Record, schema: KeySchema, wrap: bool = True) -> Item:
    if not isinstance(record.body, dict):
        raise RecordError("bad-body", "a document record's body must be a map")
    if schema.key_of(record.body) != record.key:
        raise RecordError("key-mismatch", "the body's key fields do not match the record key",
                          field=schema.partition.name)
    _check_key_sizes(record.key, schema)
    # a user field named like our metadata travels inside the wrapper map (see base.inband);
    # an application's own write (no metadata) keeps every field as it is
    top, wrapped = split_reserved(record.body) if wrap else (record.body, {})
    item = {_name(k, ""): encode_value(v, k) for k, v in top.items()}
    if wrapped:
        item[WRAPPED_FIELDS] = encode_value(wrapped, WRAPPED_FIELDS)
    return item


def _check_key_sizes(key: RecordKey, schema: KeySchema) -> None:
    for (role, limit), attr, part in zip(MAX_KEY_BYTES.items(), schema.attributes, key.parts):
        size = len(part.encode("utf-8")) if isinstance(part, str) else len(part) if isinstance(part, bytes) else 0
        if size > limit:
            raise RecordError("key-too-long", f"the {role} key is {size:,} bytes; DynamoDB holds "
                              f"{limit:,}", field=attr.name)


def decode_item(item: Mapping[str, AttributeValue], schema: KeySchema, kind: DatasetKind) -> Record:
    """The record an item holds, with its metadata as stored (``None`` when it has none).

    A RecordError names the item's key: DynamoDB keeps the key attributes apart from the
    rest, so an item whose other fields cannot be decoded is still quarantined by its key.
    """
    try:
        return _decode_item(item, schema, kind)
    except RecordError as err:
        try:
            key_id: str | None = decode_key(item, schema).id
        except (RecordError, KeyError):
            key_id = None
        raise err.located(key=key_id) from None


def _decode_item(item: Mapping[str, AttributeValue], schema: KeySchema, kind: DatasetKind) -> Record:
    meta = decode_meta(item.get(META_ATTR))
    if kind == "blob":
        key = RecordKey(tuple(_decode_key_part(item[a.name], a.name) for a in schema.attributes))
        data = item.get(BLOB_DATA_ATTR)
        body = decode_value(data, BLOB_DATA_ATTR) if data is not None else None
        return Record(key, body if isinstance(body, bytes) else None, meta)
    stored = user_fields(item, meta, lambda av: av.get("M") if isinstance(av, Mapping) else None)
    body = {k: decode_value(v, k) for k, v in stored.items()}
    return Record(schema.key_of(body), body, meta)


def key_body(key: RecordKey, schema: KeySchema, kind: DatasetKind) -> dict[str, Value] | None:
    """What a deleted record's body is: the key fields for documents, nothing for blobs."""
    return None if kind == "blob" else schema.key_body(key)


def decode_key(keys: Mapping[str, AttributeValue], schema: KeySchema) -> RecordKey:
    """The record key from a stream record's ``Keys`` (or a scan's ``LastEvaluatedKey``)."""
    return RecordKey(tuple(_decode_key_part(keys[a.name], a.name) for a in schema.attributes))


def _decode_key_part(av: Mapping[str, AttributeValue], field: str) -> KeyPart:
    """A key attribute's value; DynamoDB only allows S, N and B key attributes, so it is a key part."""
    return cast(KeyPart, decode_value(av, field))


# --- item size (DynamoDB's rules) ----------------------------------------------------------------

def attribute_size(av: Mapping[str, Any]) -> int:
    """Bytes an attribute value counts for, per DynamoDB's item-size rules.

    Strings: UTF-8 length; binary: length; numbers: 1 byte per two significant digits
    plus 1; null/bool: 1; lists and maps: 3 bytes plus 1 per element plus the elements
    (map keys counted as UTF-8); sets: the sum of their members.
    """
    (kind, payload), = av.items()
    if kind == "S":
        return len(payload.encode("utf-8"))
    if kind == "B":
        return len(payload)
    if kind == "N":
        return _number_size(payload)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(x.encode("utf-8")) for x in payload)
    if kind == "NS":
        return sum(_number_size(x) for x in payload)
    if kind == "BS":
        return sum(len(x) for x in payload)
    if kind == "L":
        return 3 + sum(1 + attribute_size(x) for x in payload)
    return 3 + sum(1 + len(k.encode("utf-8")) + attribute_size(x) for k, x in payload.items())


def _number_size(text: str) -> int:
    digits = len(Decimal(text).normalize(WIDE).as_tuple().digits)
    return (digits + 1) // 2 + 1


def item_size(item: Mapping[str, AttributeValue]) -> int:
    """Total item size: every attribute's name (UTF-8) plus its value."""
    return sum(len(name.encode("utf-8")) + attribute_size(av) for name, av in item.items())


def check_item_size(item: Mapping[str, AttributeValue]) -> None:
    """Refuse an item over 400 KB, naming its largest attribute (the one to move or shrink)."""
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        largest = max(item, key=lambda n: len(n.encode("utf-8")) + attribute_size(item[n]))
        raise RecordError("item-too-large", f"the item is {size:,} bytes encoded; DynamoDB holds "
                          f"{MAX_ITEM_BYTES:,} (move large content to a blob dataset)", field=largest)


# --- cursor-safe keys ----------------------------------------------------------------------------

def key_to_json(key: Mapping[str, AttributeValue]) -> dict[str, dict[str, str]]:
    """A scan position (``LastEvaluatedKey``) as JSON-safe data (binary parts base64-encoded)."""
    out: dict[str, dict[str, str]] = {}
    for name, av in key.items():
        (kind, payload), = av.items()
        out[name] = {"B64": base64.b64encode(payload).decode("ascii")} if kind == "B" else {kind: payload}
    return out


def key_from_json(data: Mapping[str, Mapping[str, str]]) -> Item:
    """Inverse of :func:`key_to_json` (an ``ExclusiveStartKey``)."""
    out: Item = {}
    for name, av in data.items():
        (kind, payload), = av.items()
        out[name] = {"B": base64.b64decode(payload)} if kind == "B64" else {kind: payload}
    return out
