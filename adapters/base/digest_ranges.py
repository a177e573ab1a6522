"""Ranged digests: the optional part of the Replica role that lets verify list a store in pieces.

A store that can be read in independent pieces — DynamoDB scan segments, GCS name ranges,
the in-memory adapter's hash slices — says so by implementing :class:`RangedDigests`:
``digest_ranges()`` cuts its keyspace into :class:`DigestRange` descriptions (plain,
picklable: they travel inside work units to other processes and Dask workers), and
``list_range_digests(part)`` lists one. Verify then runs one unit per (range, location)
and loads each range's digests as it arrives, so its memory is bounded by the ranges in
flight rather than by the dataset, and the pieces of one store are read in parallel.

The ranges of one store must **partition** its listing exactly: every digest
``list_digests()`` yields appears in exactly one range (the contract suite checks it on
every adapter against its emulator). Ranges of different stores need not line up: the
comparison hashes keys into its own buckets (:mod:`mcrepl.orchestrator.verify.merkle`).

An adapter without ranges (third-party ones written before this role) keeps working:
:func:`ranges_of` gives ``[None]`` and :func:`list_part` calls its ``list_digests()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .interface import Digest

#: how many digests one range should hold at most when an adapter can size its ranges:
#: a range is listed into one unit's result, so this bounds what one unit holds in memory
RANGE_TARGET_KEYS = 10_000


@dataclass(frozen=True)
class DigestRange:
    """One piece of a store's keyspace, in the adapter's own terms.

    ``index``/``of`` say which piece of how many (for messages and progress);
    ``spec`` is whatever the adapter needs to list it again in another process — a scan
    segment number, a pair of name bounds — and must be picklable and hashable.
    """

    index: int
    of: int
    spec: Any = None
    #: a human-readable description (``"segment 3 of 8"``, ``"names [k, n)"``)
    describes: str = ""

    def __str__(self) -> str:
        return self.describes or f"range {self.index + 1} of {self.of}"


@runtime_checkable
class RangedDigests(Protocol):
    """A replica whose digests can be listed range by range."""

    def digest_ranges(self) -> "list[DigestRange]":
        """The ranges that together hold every digest, each exactly once.

        Timeout: at most one request (a table description); idempotent. The split may
        change between calls (it follows the store's size), never within one verify.
        """

    def list_range_digests(self, part: DigestRange) -> "Iterator[Digest]":
        """The digests of one range, as :meth:`~.roles.Replica.list_digests` would yield them.

        Timeout: per listing/scan page; the iterator is lazy. Idempotent.
        """


def ranges_of(adapter: object) -> "list[DigestRange | None]":
    """``adapter``'s ranges, or ``[None]`` (one whole listing) when it has none."""
    if isinstance(adapter, RangedDigests):
        found: list[DigestRange | None] = list(adapter.digest_ranges())
        return found or [None]
    return [None]


def list_part(adapter: Any, part: DigestRange | None) -> "Iterator[Digest]":
    """The digests of ``part`` at ``adapter`` (``None``: its whole listing)."""
    if part is None:
        return iter(adapter.list_digests())
    return iter(adapter.list_range_digests(part))


def ranges_for(count: int | None, *, minimum: int, maximum: int) -> int:
    """How many ranges to cut a store of about ``count`` keys into (``None``: unknown size)."""
    if count is None:
        return minimum
    return max(minimum, min(maximum, -(-count // RANGE_TARGET_KEYS)))


__all__ = ["DigestRange", "RANGE_TARGET_KEYS", "RangedDigests", "list_part", "ranges_for", "ranges_of"]
