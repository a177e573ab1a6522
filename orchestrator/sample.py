"""Deterministic sample data: about 1 KB documents (or blobs) shaped like a customer table.

Used by ``mcrepl local seed``, the benchmarks and the drills, so every figure they print
is measured on the same shape of data. The same ``(schema, n, seed, start)`` always
gives the same records; keys depend only on the index, so seeding twice with different
``seed`` values rewrites the same keys with new bodies (an update workload).

Values stay inside what every store holds losslessly: decimals have at most 15
significant digits (Cosmos DB numbers are doubles), timestamps are UTC with millisecond
precision, and there are no sets or binaries (JSON stores can't hold them natively).
"""

from __future__ import annotations

import json
import random
import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from mcrepl.adapters.base import KeyAttribute, KeySchema, Record, blob, document

#: countries the residency policies and routing tests expect to find (EU and non-EU)
COUNTRIES = ("DE", "FR", "US", "GB", "IE", "NL", "JP", "BR")
_PLANS = ("free", "team", "business", "enterprise")
_TAGS = ("vip", "newsletter", "beta", "churn-risk", "partner", "reseller", "edu", "gov")
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_BODY_BYTES = 1000  # target size of one document as JSON
_BLOB_BODY_SCHEMA = KeySchema(KeyAttribute("customer_id"))  # the document inside each blob


def _key_value(attr: KeyAttribute, index: int, role: str) -> str | int | bytes:
    if attr.type == "N":
        return index + 1
    if attr.type == "B":
        return f"{role}-{index:08d}".encode()
    return f"{role}-{index:08d}"


def _text(rng: random.Random, length: int, spaces: bool = True) -> str:
    alphabet = string.ascii_lowercase + ("     " if spaces else "")
    return "".join(rng.choice(alphabet) for _ in range(length)).strip() or "x"


def sample_body(schema: KeySchema, index: int, seed: int = 0) -> dict[str, Any]:
    """One ~1 KB document with the key fields of ``schema`` for record number ``index``."""
    rng = random.Random(f"{seed}:{index}")
    first, last = _text(rng, 7, False).title(), _text(rng, 9, False).title()
    created = _EPOCH + timedelta(milliseconds=rng.randrange(0, 300 * 86_400_000))
    body: dict[str, Any] = {
        "name": f"{first} {last}",
        "email": f"user{index}@example.com",
        "phone": f"+{rng.randrange(10, 99)} {rng.randrange(10**8, 10**9)}",
        "country": rng.choice(COUNTRIES),
        "plan": rng.choice(_PLANS),
        "age": rng.randrange(18, 90),
        "active": rng.random() < 0.8,
        "balance": Decimal(rng.randrange(-10**6, 10**8)) / 100,
        "score": Decimal(str(round(rng.random(), 6))),
        "created_at": created,
        "address": {"street": f"{rng.randrange(1, 300)} {_text(rng, 10, False).title()} Street",
                    "city": _text(rng, 8, False).title(), "postcode": f"{rng.randrange(10000, 99999)}",
                    "geo": {"lat": Decimal(str(round(rng.uniform(-80, 80), 5))),
                            "lon": Decimal(str(round(rng.uniform(-170, 170), 5)))}},
        "tags": rng.sample(_TAGS, rng.randrange(0, 4)),
        "orders": [{"sku": f"SKU-{rng.randrange(1000, 9999)}", "qty": rng.randrange(1, 5),
                    "price": Decimal(rng.randrange(100, 100_000)) / 100} for _ in range(3)],
    }
    # key fields last, so a key named like a generated field ("email") still holds the key
    body[schema.partition.name] = _key_value(schema.partition, index, "c")
    if schema.sort is not None:
        body[schema.sort.name] = _key_value(schema.sort, index % 7, "s")
    used = len(json.dumps(body, default=str))
    body["notes"] = _text(rng, max(16, _BODY_BYTES - used - 12))
    return body


def sample_records(schema: KeySchema, n: int, seed: int = 0, *, start: int = 0,
                   kind: Literal["document", "blob"] = "document") -> list[Record]:
    """``n`` unstamped records numbered ``start`` … ``start + n - 1``.

    Document datasets get canonical documents keyed by ``schema``; blob datasets get
    objects named ``customers/c-00000042.json`` holding the same document as JSON.
    """
    records = []
    body_schema = _BLOB_BODY_SCHEMA if kind == "blob" else schema
    for index in range(start, start + n):
        body = sample_body(body_schema, index, seed)
        if kind == "blob":
            data = json.dumps(body, default=str, sort_keys=True).encode()
            records.append(blob(f"customers/c-{index:08d}.json", data))
        else:
            records.append(document(schema, body))
    return records
