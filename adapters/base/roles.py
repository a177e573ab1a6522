"""The roles an adapter plays, each a small protocol: change source, replica, maintenance.

The engine never needs "a store" as a whole; it needs one of these roles at a time,
and each is a handful of methods (Litestream's replica client is the model: narrow, every
method documented with what it guarantees). :class:`~.interface.ReplicaAdapter` is the
convenient base class that plays all of them; an adapter may equally implement the
protocols directly — they are checked structurally (``isinstance(x, ChangeSource)``).

Every method below says how long it may take and whether repeating it is harmless:

* **Timeout**: each call to the store runs under :func:`~.retry.call_with_retry`, whose
  deadline (``sync.retry_deadline``, ``options['retry_deadline_s']``, 60 s by default)
  bounds retries of throttling and outages, on top of per-request socket timeouts set by
  the adapter's SDK client. A method that makes several requests (a page of capture, a
  batch of writes) is bounded per request, not as a whole.
* **Idempotence**: whether the engine may call again after a crash or a timeout
  without changing the outcome. Every method here is, by design; the ones that write
  are so because their writes are conditional.

Seeding stores as an application would (``write_native``/``delete_native``) is not a
production role: it lives with the tests, in :mod:`mcrepl.testing.seeding`. Writing the
heartbeat (:class:`Heartbeats`) is one: the orchestrator measures lag with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from .interface import ApplyResult, Capabilities, ChangePage, Cursor, Digest, ReplicaTarget
    from .record import Record, RecordKey


@dataclass(frozen=True)
class Partition:
    """One independently captured part of a dataset (a stream shard, a feed range, a name range).

    ``id`` is stable across calls and processes (it names the checkpoint the engine keeps
    for it). Today every adapter reports one partition, :data:`WHOLE`; the scale-out
    work gives capture a partition argument and per-partition positions, and adapters
    that can split (DynamoDB shards, Cosmos feed ranges, object-name ranges) report more.
    """

    id: str = "all"
    #: a human-readable description (``"shard-00012"``, ``"names [a, m)"``)
    describes: str = "the whole dataset"


WHOLE = Partition()


@runtime_checkable
class Lifecycle(Protocol):
    """Open, provision and release one dataset in one location."""

    target: "ReplicaTarget"
    capabilities: "Capabilities"

    def ensure_ready(self) -> None:
        """Make sure the table/container/bucket exists and fits; create it where allowed.

        Timeout: the creation wait is the adapter's own (DynamoDB: 300 s for ``ACTIVE``).
        Idempotent: a store that exists and fits is left as it is.
        """

    def close(self) -> None:
        """Release clients and connections. Idempotent; never raises for a closed adapter."""


@runtime_checkable
class ChangeSource(Protocol):
    """Where changes come from: partitions, positions (cursors) and pages read from a position."""

    def partitions(self) -> "list[Partition]":
        """The partitions capture reads, each with its own position (today: ``[WHOLE]``).

        No request on adapters with one partition. Idempotent.
        """

    def capture_changes(self, cursor: "Cursor | None", limit: int = 500) -> "ChangePage":
        """Every change after ``cursor``, at least once, in per-key order; at most ``limit``.

        ``None`` starts with a full read of what exists (``page.scanned``). The returned
        cursor is JSON and opaque: save it only after the page is applied everywhere.
        Timeout: per request; one page makes a bounded number of requests (one listing
        page, one stream batch) plus the reads of the records it returns.
        Idempotent: reading again from the same cursor returns the same changes or later
        states of the same keys, never fewer.
        """

    def current_cursor(self) -> "Cursor":
        """A position at "now": capture from it returns only later changes.

        Timeout: per request; may walk the whole change log or listing (DynamoDB reads
        every shard to its end, object stores list the bucket). Idempotent.
        """


@runtime_checkable
class Replica(Protocol):
    """Where changes go: read versions, apply conditionally, digest ranges for verify."""

    def apply_batch(self, records: "Sequence[Record]") -> "list[ApplyResult]":
        """Apply stamped records conditionally; one result per record, in order.

        A record lands only as the successor of the stored version; replays and stale
        versions are no-ops; a concurrent stored version is reported, never overwritten;
        a record the store cannot hold is rejected alone. Timeout: per request.
        Idempotent: a replayed batch reports ``REPLAYED``/``STALE`` and writes nothing.
        """

    def read(self, key: "RecordKey") -> "Record | None":
        """The stored record (tombstones included, metadata as stored), or ``None``.

        Timeout: one or two requests. Idempotent.
        """

    def list_digests(self) -> "Iterator[Digest]":
        """Every stored record's key, version and content hash (metadata, not bodies, where possible).

        Timeout: per listing/scan page; the iterator is lazy. Idempotent.
        """


@runtime_checkable
class Heartbeats(Protocol):
    """Writes the dataset's heartbeat at a primary, so lag can be timed end to end."""

    def write_heartbeat(self, written_ms: int) -> None:
        """Write :func:`~.reserved.heartbeat_record` for ``written_ms`` as a plain write.

        The write carries no mcrepl metadata, exactly as an application's write, so
        capture reports it like any other change and it travels to every replica the way
        user data does. Raises :class:`~.errors.ConfigError` when the dataset's key cannot
        hold the reserved key (a partition key that is not a string). Timeout: one request.
        Idempotent: the record holds the latest write time; writing it again replaces it.
        """


@runtime_checkable
class Maintenance(Protocol):
    """Optional upkeep the engine runs after retention periods."""

    def purge_tombstones(self, older_than_ms: int) -> int:
        """Physically remove tombstones older than ``older_than_ms``, each only if unchanged.

        Timeout: per request (a scan plus one conditional delete each). Idempotent: a
        second call finds nothing more to remove; a key rewritten meanwhile is kept.
        """

    def drop(self) -> None:
        """Delete the table/container/bucket (tests and ``local down`` only). Idempotent."""


def roles_of(adapter: object) -> list[str]:
    """The role protocols ``adapter`` implements, by name (``mcrepl adapters`` shows them)."""
    return [proto.__name__ for proto in (Lifecycle, ChangeSource, Replica, Heartbeats, Maintenance)
            if isinstance(adapter, proto)]


__all__ = ["ChangeSource", "Heartbeats", "Lifecycle", "Maintenance", "Partition", "Replica", "WHOLE", "roles_of"]
