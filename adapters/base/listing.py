"""Listing-vs-manifest capture: which objects changed or vanished since the last listing.

Pure logic over listed ``(name, generation)`` entries in listing order (names in UTF-8
byte order, as GCS and S3 list); the adapter supplies the listing and turns the events
into records. ``generation`` is any positive integer that changes whenever the object
does (GCS's generation; a fingerprint of S3's ETag and LastModified).

One *pass* walks the whole bucket in name order. A page stops after ``limit`` events
and records the last name it handled, so the next page lists from there
(``start_offset``) rather than from the start. Every object is compared with the
manifest as it is reached, so each change is reported exactly once per pass:

* listed and its generation differs from the manifest (or is new): *changed*;
* in the manifest but skipped over by the listing (names between two listed names, or
  after the last one): *gone* — a delete.

A change made behind the pass position is seen by the next pass; one ahead of it is
seen by this pass. Resuming from a saved cursor re-walks from the saved position with
the saved manifest, so a page that was not acknowledged is reported again (at least
once) and one that was is never reported twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import RecordError
from .interface import Change
from .manifest import Manifest
from .record import Record, RecordKey


@dataclass(frozen=True)
class Listed:
    """One object as the listing reported it; ``blob`` is the SDK object, opaque here."""

    name: str
    generation: int
    blob: Any = None


@dataclass(frozen=True)
class Event:
    """A changed object (``listed`` set) or a vanished one (``listed`` is ``None``)."""

    name: str
    listed: Listed | None


@dataclass
class ScanPage:
    """Events of one page, where the pass stands after them, and whether it went on."""

    events: list[Event]
    at: str | None          # last name handled; ``None`` when the pass finished
    more: bool


def scan(manifest: Manifest, listing: Iterable[Listed], after: str | None, limit: int) -> ScanPage:
    """Compare ``listing`` (names ≥ ``after``, in order) with ``manifest``; at most ``limit`` events.

    Does not change ``manifest``: the caller records each event's outcome, because an
    object can change again between the listing and the download.
    """
    limit = max(1, limit)
    events: list[Event] = []
    known = _Peekable(manifest.names_after(after))
    at = after
    for obj in listing:
        if after is not None and obj.name <= after:
            continue                       # start_offset is inclusive
        for gone in known.take_before(obj.name):
            events.append(Event(gone, None))
            at = gone
            if len(events) >= limit:
                return ScanPage(events, at, True)
        known.skip(obj.name)
        if manifest.generation(obj.name) != obj.generation:
            events.append(Event(obj.name, obj))
        at = obj.name
        if len(events) >= limit:
            return ScanPage(events, at, True)
    for gone in known.take_before(None):
        events.append(Event(gone, None))
        if len(events) >= limit:
            return ScanPage(events, gone, True)
    return ScanPage(events, None, False)


class _Peekable:
    """Sorted manifest names, consumed in step with the listing."""

    def __init__(self, names: Iterator[str]) -> None:
        self._names = names
        self._head: str | None = next(names, None)

    def take_before(self, bound: str | None) -> Iterator[str]:
        """Yield (and consume) names strictly before ``bound`` (all names when ``None``)."""
        while self._head is not None and (bound is None or self._head < bound):
            name, self._head = self._head, next(self._names, None)
            yield name

    def skip(self, name: str) -> None:
        if self._head == name:
            self._head = next(self._names, None)


@dataclass(frozen=True)
class Fetched:
    """A changed object read back: its record, the manifest version read, the store's time of it."""

    record: Record
    version: int
    observed_ms: int | None = None


def record_outcome(manifest: Manifest, event: Event, outcome: Fetched | RecordError | None,
                   key_of: Callable[[str], RecordKey]) -> Change | None:
    """Update ``manifest`` for one event and build its :class:`Change` (call in page order).

    ``outcome`` is what reading the event gave: the object (``Fetched``), an object that
    cannot be decoded (passed over; the caller quarantines it, and a new version is looked
    at again), or ``None`` for a vanished one. A vanished name the manifest never held, or
    held as an mcrepl tombstone (a purge), is no delete; neither is one ``key_of`` refuses
    (a foreign object that was skipped when it appeared).
    """
    name = event.name
    if isinstance(outcome, RecordError):
        manifest.set(name, event.listed.generation if event.listed else 0)
        return None
    if outcome is None:
        known, purged = name in manifest, manifest.is_tombstone(name)
        manifest.remove(name)
        if not known or purged:
            return None                # created and deleted in between, or a tombstone purge
        try:
            key = key_of(name)
        except RecordError:
            return None
        return Change(Record(key, None), native_delete=True)
    manifest.set(name, outcome.version, tombstone=outcome.record.tombstone)
    return Change(outcome.record, observed_ms=outcome.observed_ms)
