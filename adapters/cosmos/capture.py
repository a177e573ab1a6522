"""Change capture from a Cosmos DB container: the change feed, or a ``_ts`` window query.

Two strategies behind one shape — ``read(cursor, limit) -> (documents, cursor, more)``
and ``now() -> cursor`` — chosen per adapter instance by the ``change_feed`` option:

* :class:`TsWindowCapture` (``_ts`` mode) queries ``c._ts >= T ORDER BY c._ts``. ``_ts``
  has one-second resolution, so the cursor also remembers the etag of every document it
  already returned *at* the boundary second ``T``: a document is returned again exactly
  when its etag changed, so nothing is returned twice, nothing is skipped, and two
  writes to one document inside one second are both captured if a capture ran between
  them. Native deletes leave nothing to query (``capture_sees_deletes`` is false);
  mcrepl tombstones are documents and are captured. Meant for emulators without a
  change feed and as an explicit fallback: on a real multi-partition account a write
  can become visible after a later-stamped one, which only the change feed orders.
* :class:`ChangeFeedCapture` (feed mode) reads ``query_items_change_feed`` in
  LatestVersion mode with the SDK's continuation token. It cannot be exercised on
  ``@vercel/cosmosdb-server`` (its feed returns one page, then answers 304 forever), so
  it is kept small; LatestVersion shows no deletes either.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from azure.cosmos import ContainerProxy

from ..base.errors import UnavailableError
from ..base.interface import Cursor

T = TypeVar("T")
Doc = dict[str, Any]
Call = Callable[[Callable[[], T], str], T]
"""Runs one SDK interaction under error translation and retry: ``call(fn, operation)``."""

log = logging.getLogger("mcrepl.adapters.cosmos")

_TS_WINDOW = "SELECT * FROM c WHERE c._ts >= @ts ORDER BY c._ts"
_NEWEST_FIRST = "SELECT c.id, c._etag, c._ts FROM c ORDER BY c._ts DESC"
_MAX_PAGE = 1000


@dataclass(frozen=True)
class TsCursor:
    """Position in ``_ts`` order: second ``ts`` plus ``{id: etag}`` already returned at it."""

    ts: int = 0
    seen: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Cursor:
        return {"mode": "ts", "ts": self.ts, "seen": dict(self.seen)}

    @classmethod
    def from_dict(cls, cursor: Cursor) -> TsCursor:
        return cls(int(cursor.get("ts", 0)), {str(k): str(v) for k, v in
                                              dict(cursor.get("seen") or {}).items()})

    def already_returned(self, doc: Doc) -> bool:
        return doc["_ts"] == self.ts and self.seen.get(doc["id"]) == doc["_etag"]

    def after(self, docs: Iterable[Doc]) -> TsCursor:
        """The cursor once ``docs`` (in ``_ts`` order) have been returned."""
        ts, seen = self.ts, dict(self.seen)
        for doc in docs:
            if doc["_ts"] > ts:
                ts, seen = doc["_ts"], {}
            seen[doc["id"]] = doc["_etag"]
        return TsCursor(ts, seen)


def _mode_of(cursor: Cursor | None, mode: str) -> Cursor | None:
    """``cursor`` if it was made in ``mode``; else ``None`` (re-read from the start)."""
    if cursor is not None and cursor.get("mode") != mode:
        log.warning("capture cursor was made in %r mode, this adapter captures in %r mode: "
                    "re-reading from the start (conditional apply makes the repeats no-ops)",
                    cursor.get("mode"), mode)
        return None
    return cursor


class TsWindowCapture:
    """Capture by ``_ts`` window queries (see the module docstring for the guarantees)."""

    mode = "ts"

    def __init__(self, container: ContainerProxy, call: Call) -> None:
        self._container = container
        self._call = call

    def read(self, cursor: Cursor | None, limit: int) -> tuple[list[Doc], Cursor, bool]:
        """Up to ``limit`` documents changed at or after the cursor, oldest ``_ts`` first."""
        pos = TsCursor.from_dict(_mode_of(cursor, self.mode) or {})

        def window() -> tuple[list[Doc], bool]:
            out: list[Doc] = []
            pages = self._container.query_items(
                _TS_WINDOW, parameters=[{"name": "@ts", "value": pos.ts}],
                enable_cross_partition_query=True,
                max_item_count=min(limit + len(pos.seen), _MAX_PAGE)).by_page()
            for page in pages:
                for doc in page:
                    if pos.already_returned(doc):
                        continue
                    out.append(doc)
                    if len(out) >= limit:
                        return out, True
            return out, False

        docs, full = self._call(window, "capture")
        # ORDER BY _ts is served by the store; sorting again is free and guards the cursor
        docs.sort(key=lambda d: d["_ts"])
        return docs, pos.after(docs).to_dict(), full

    def now(self) -> Cursor:
        """The newest second holding a document, with every document at it marked seen."""
        def newest() -> TsCursor:
            top: int | None = None
            seen: dict[str, str] = {}
            for page in self._container.query_items(_NEWEST_FIRST, enable_cross_partition_query=True,
                                                    max_item_count=_MAX_PAGE).by_page():
                for doc in page:
                    top = doc["_ts"] if top is None else top
                    if doc["_ts"] != top:
                        return TsCursor(top, seen)
                    seen[doc["id"]] = doc["_etag"]
            return TsCursor(top or 0, seen)

        return self._call(newest, "current_cursor").to_dict()


class ChangeFeedCapture:
    """Capture from the LatestVersion change feed (real Cosmos DB and the official emulator).

    The Python SDK exposes the feed continuation only as the ``etag`` of the client's
    last response headers (the documented pattern); a v2 continuation is base64 JSON,
    so a token overwritten by a concurrent call on the same client is detected and the
    read retried rather than saved.
    """

    mode = "feed"

    def __init__(self, container: ContainerProxy, call: Call) -> None:
        self._container = container
        self._call = call

    def _continuation(self) -> str:
        token = self._container.client_connection.last_response_headers.get("etag")
        try:
            if isinstance(json.loads(base64.b64decode(token or "", validate=True)), dict):
                return str(token)
        except (binascii.Error, ValueError):
            pass
        raise UnavailableError("the change feed continuation was not in the last response "
                               "(a concurrent call on the same client); reading again",
                               provider="cosmos", operation="capture")

    def read(self, cursor: Cursor | None, limit: int) -> tuple[list[Doc], Cursor, bool]:
        """One feed page after the cursor's continuation (from the beginning without one)."""
        token = (_mode_of(cursor, self.mode) or {}).get("continuation")
        start: dict[str, Any] = {"continuation": token} if token else {"start_time": "Beginning"}

        def page() -> tuple[list[Doc], str]:
            pages = self._container.query_items_change_feed(max_item_count=limit, **start).by_page()
            docs = list(next(pages, []))
            return docs, self._continuation()

        docs, new_token = self._call(page, "capture")
        return docs, {"mode": self.mode, "continuation": new_token}, len(docs) >= limit

    def now(self) -> Cursor:
        """The feed's continuation at this moment (start time ``Now``)."""
        def now_token() -> str:
            list(self._container.query_items_change_feed(start_time="Now"))
            return self._continuation()

        return {"mode": self.mode, "continuation": self._call(now_token, "current_cursor")}
