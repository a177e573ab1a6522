"""Record builders and hypothesis strategies of the contract suite (usable in any adapter's own tests)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from itertools import count
from typing import Any

from hypothesis import strategies as st

from mcrepl.adapters.base import KeyAttribute, KeySchema, Record, Version, document

SCHEMA = KeySchema(KeyAttribute("pk"))
ORIGIN = "dynamodb:eu-west-1"
_clock = count(1)


def version(wall_ms: int | None = None, origin: str = ORIGIN) -> Version:
    """A fresh, strictly increasing version (unless ``wall_ms`` pins it)."""
    return Version(wall_ms if wall_ms is not None else 1_700_000_000_000 + next(_clock), 0, origin)


def doc(pk: str, /, **fields: Any) -> Record:
    """An unstamped document record with key ``pk``."""
    return document(SCHEMA, {"pk": pk, **fields})


def stamped(pk: str, at: Version | None = None, vector: dict[str, str] | None = None, /,
            **fields: Any) -> Record:
    """A stamped document record (positional-only parameters: any field name is free)."""
    return doc(pk, **fields).stamped(at or version(), vector)


# --- values every store can hold (the round-trip property) ---------------------------------

field_names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(lambda n: n not in ("pk", "id"))
numbers = st.one_of(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.decimals(allow_nan=False, allow_infinity=False, places=None, min_value=Decimal("-1e20"),
                max_value=Decimal("1e20")).filter(lambda d: len(d.as_tuple().digits) <= 38 and (d == 0 or d.adjusted() > -120)),
)
aware_datetimes = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                               timezones=st.just(timezone.utc))
scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=40), numbers,
                    st.binary(min_size=0, max_size=40), aware_datetimes)
string_sets = st.frozensets(st.text(min_size=1, max_size=10), min_size=1, max_size=5)
values = st.recursive(
    st.one_of(scalars, string_sets),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(field_names, inner, max_size=4)),
    max_leaves=12,
)
bodies = st.dictionaries(field_names, values, max_size=6)
