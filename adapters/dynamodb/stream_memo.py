"""What a DynamoDB stream reader remembers between polls: shard lists and shard iterators.

A follower polls the same stream several times a second. Listing the shards and asking for
an iterator before every ``GetRecords`` would triple its requests, so, as the KCL does, the
reader keeps the iterator each read ends with and lists the shards again only now and then
(or at once when a shard ends, since that is when children appear). Lives beside the
clients (one memo per target), never in a cursor: it is an optimisation a restart loses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SHARD_LIST_TTL_S = 10.0
"""How long a remembered shard list is used; a shard read to its end (new children) or a
cursor naming a shard the list lacks makes it be listed again at once."""
ITERATOR_TTL_S = 300.0
"""How long a remembered shard iterator is used (DynamoDB expires them after 15 minutes)."""


@dataclass(frozen=True)
class Shard:
    """One stream shard: its id, its parent's id and whether it is closed (has an end)."""

    id: str
    parent: str | None
    closed: bool


class StreamMemo:
    """Shard lists and shard iterators one reader keeps between polls (thread-safe).

    An iterator is remembered with the position it stands at — after a sequence number, or
    at the shard's start — and handed out once, only for that same position; so whatever
    the cursor says (a commit that failed, a restart, another reader's page) a poll reads
    from exactly there.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._shards: dict[str, tuple[float, list[Shard]]] = {}
        self._iterators: dict[tuple[str, str], tuple[str | None, str, float]] = {}

    def shards(self, arn: str) -> list[Shard] | None:
        """The stream's shards as last listed, unless that was more than :data:`SHARD_LIST_TTL_S` ago."""
        with self._lock:
            kept = self._shards.get(arn)
        return kept[1] if kept is not None and self._clock() - kept[0] < SHARD_LIST_TTL_S else None

    def keep_shards(self, arn: str, shards: list[Shard]) -> None:
        with self._lock:
            self._shards[arn] = (self._clock(), shards)

    def forget_shards(self, arn: str) -> None:
        with self._lock:
            self._shards.pop(arn, None)

    def take_iterator(self, arn: str, shard: str, after: str | None) -> str | None:
        """The iterator remembered for ``shard`` at ``after`` (used once), or ``None``."""
        with self._lock:
            kept = self._iterators.pop((arn, shard), None)
        if kept is None or kept[0] != after or self._clock() - kept[2] >= ITERATOR_TTL_S:
            return None
        return kept[1]

    def keep_iterator(self, arn: str, shard: str, after: str | None, iterator: str) -> None:
        with self._lock:
            self._iterators[(arn, shard)] = (after, iterator, self._clock())
