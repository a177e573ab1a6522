"""The capture cursor of a listing-based store: a manifest of object versions, stored compactly.

Object stores without a change log (GCS, S3) capture by comparing a listing with the
manifest of the last one. Each object's version is a positive integer the store's
listing yields: GCS's generation, or a fingerprint of S3's ETag and LastModified.
The engine persists the cursor (JSON) in its state store after every page, so it is
kept small: names are sorted (so shared prefixes compress well), generations are written
as hex offsets from the smallest one, and the text is zlib-compressed and base64-encoded.
A tombstone mcrepl wrote is remembered with a negative generation, so when
:meth:`purge_tombstones` later removes it, capture
knows the disappearance is a purge, not an application's delete to replicate.

Cursor shape (all keys short on purpose)::

    {"v": 1, "m": "<base64 zlib manifest>", "at": "<last name handled>", "full": true}

``at`` is present while a listing pass is under way (the next page lists from there
instead of from the start); ``full`` marks the first pass from an empty manifest.
"""

from __future__ import annotations

import base64
import bisect
import zlib
from collections.abc import Iterator
from typing import Any

from .errors import AdapterError

FORMAT = 1


class Manifest:
    """Object name → generation (negative for an mcrepl tombstone), with sorted-name lookups."""

    __slots__ = ("_gens", "_sorted")

    def __init__(self, gens: dict[str, int] | None = None) -> None:
        self._gens: dict[str, int] = dict(gens or {})
        self._sorted: list[str] | None = None

    def __len__(self) -> int:
        return len(self._gens)

    def __contains__(self, name: str) -> bool:
        return name in self._gens

    def generation(self, name: str) -> int | None:
        """The generation last seen for ``name`` (always positive), or ``None``."""
        g = self._gens.get(name)
        return None if g is None else abs(g)

    def is_tombstone(self, name: str) -> bool:
        return self._gens.get(name, 0) < 0

    def set(self, name: str, generation: int, tombstone: bool = False) -> None:
        if name not in self._gens:
            self._sorted = None
        self._gens[name] = -generation if tombstone else generation

    def remove(self, name: str) -> None:
        if self._gens.pop(name, None) is not None:
            self._sorted = None

    def names_after(self, after: str | None) -> Iterator[str]:
        """Names in listing order (UTF-8 byte order = code point order) strictly after ``after``.

        Iterates a snapshot, so callers may add and remove entries while iterating.
        """
        if self._sorted is None:
            self._sorted = sorted(self._gens)
        names = self._sorted
        start = 0 if after is None else bisect.bisect_right(names, after)
        return iter(names[start:])

    def encode(self) -> str:
        if not self._gens:
            return ""
        base = min(abs(g) for g in self._gens.values())
        lines = [format(base, "x")]
        for name in sorted(self._gens):
            g = self._gens[name]
            lines.append(f"{'-' if g < 0 else ''}{abs(g) - base:x} {name}")
        # names holding "\n" are refused by the adapters (GCS forbids it; S3 adapters refuse it)
        raw = "\n".join(lines).encode("utf-8")
        return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Manifest:
        if not text:
            return cls()
        try:
            lines = zlib.decompress(base64.b64decode(text)).decode("utf-8").split("\n")
            base = int(lines[0], 16)
            gens: dict[str, int] = {}
            for line in lines[1:]:
                num, _, name = line.partition(" ")
                tomb = num.startswith("-")
                g = int(num.lstrip("-"), 16) + base
                gens[name] = -g if tomb else g
        except (ValueError, zlib.error, UnicodeDecodeError) as exc:
            raise AdapterError(f"listing capture cursor is corrupt ({type(exc).__name__}) (fix: "
                               "reset the checkpoint so capture starts from a full listing)") from exc
        m = cls(gens)
        m._sorted = list(gens)  # written in sorted order
        return m


def make_cursor(manifest: Manifest, at: str | None = None, full: bool = False) -> dict[str, Any]:
    """The JSON cursor for ``manifest`` with a pass under way at ``at`` (or finished)."""
    cursor: dict[str, Any] = {"v": FORMAT, "m": manifest.encode()}
    if at is not None:
        cursor["at"] = at
    if full:
        cursor["full"] = True
    return cursor


def read_cursor(cursor: dict[str, Any] | None,
                decoded: Manifest | None = None) -> tuple[Manifest, str | None, bool]:
    """``(manifest, at, full)`` from a cursor; ``None`` starts a full first pass.

    ``decoded`` is the caller's already-decoded manifest for this cursor's ``m`` (decoding
    a 100,000-name manifest takes a noticeable fraction of a second).
    """
    if cursor is None:
        return Manifest(), None, True
    if cursor.get("v") != FORMAT or "m" not in cursor:
        raise AdapterError("not a listing capture cursor (fix: reset the checkpoint; cursors are "
                           "not portable between providers)")
    manifest = decoded if decoded is not None else Manifest.decode(str(cursor["m"]))
    return manifest, cursor.get("at"), bool(cursor.get("full"))
