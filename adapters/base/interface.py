"""The replica interface every provider implements, defined once.

Like Litestream's ``ReplicaClient`` it is deliberately narrow. The roles it plays —
change source, replica, maintenance — are small protocols in :mod:`.roles`;
:class:`ReplicaAdapter` is the base class that plays all of them. Helpers that work over
any replica (tombstoning, batching, retries) are free functions beside it, not methods
every backend must repeat.
"""

from __future__ import annotations

import enum
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping, Sequence

from .errors import RecordError
from .values import content_hash
from .record import KeySchema, Record, RecordKey, ReplicationMeta, vector_dominates, vectors_concurrent
from .roles import WHOLE, Partition

DatasetKind = Literal["document", "blob"]
Cursor = dict[str, Any]
"""An opaque, JSON-serialisable capture position. Only the adapter that made it reads it."""


@dataclass(frozen=True)
class ReplicaTarget:
    """Everything an adapter needs to reach one dataset in one replica.

    A plain, picklable description (no clients, no sockets) so work units built from it
    can run in another process or on another machine.

    ``resource`` is the provider's own container name (table, container, bucket);
    ``options`` carries provider-specific connection settings (endpoint, database,
    credential mode, prefix …) that only that adapter reads.
    """

    replica: str                      # "provider:region", the replica's name everywhere
    provider: str
    region: str
    dataset: str
    kind: DatasetKind
    key_schema: KeySchema
    resource: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the engine, ``validate`` and the contract suite act on these
    flags, never on provider names.

    The first four are required: every adapter states them. The rest default to what a
    store that passes the contract suite can do, so an adapter declares only where it
    falls short.
    """

    incremental_capture: bool          # a change log with old versions (streams, change feed)
    transactional_batch: bool          # several conditional writes in one atomic call
    max_record_bytes: int              # largest encoded record the store accepts
    capture_sees_deletes: bool         # a native delete shows up in capture (else only tombstones)
    conditional_writes: bool = True
    """Writes can be conditioned on the stored version (etag, generation, condition
    expression). Without them a replica can lose a newer write to a concurrent older one:
    ``validate`` refuses such a store as a replica or a primary."""
    holds_sets: bool = True
    """Sets (string, number, binary) round-trip as sets. ``validate`` warns when a dataset
    replicates from a store that holds them into one that does not."""
    orders_writes_across_keys: bool = True
    """Capture reports writes to different keys in the order the store made them (a log or
    feed). A listing-based capture reports them in name order within a pass."""


@dataclass(frozen=True)
class Change:
    """One captured change: the record as it now is (or its tombstone).

    ``record.meta`` is ``None`` for native writes (not made by mcrepl); ``previous`` is
    the metadata the item carried before the change when the store's change log has
    it (a DynamoDB stream's old image), so the engine can extend its version vector.
    ``observed_ms`` is the store's own time for the change when it has one.
    """

    record: Record
    observed_ms: int | None = None
    previous: ReplicationMeta | None = None
    native_delete: bool = False


@dataclass
class ChangePage:
    """A page of changes and the cursor to resume after them.

    Saving ``cursor`` only after every change in the page is applied everywhere gives
    at-least-once delivery; conditional apply turns that into exactly-once in effect.
    """

    changes: list[Change]
    cursor: Cursor
    more: bool
    scanned: bool = False             # produced by a full scan (no usable change log cursor)
    overlap: bool = False
    """These changes were made while the preceding full scan ran, so the scan may already
    have read a later state of their keys. The engine holds such pages back until the
    window closes (the first page without ``overlap``, or one with ``more=False``) and then
    keeps, per key, only the changes after the one the scan read: no key ever goes back
    to an older body, and nothing is decided by comparing timestamps. A page is all
    overlap or none."""
    rejected: list[RecordError] = field(default_factory=list)
    """Items read but not decodable into records (named by key, rule and field, never value).

    They are passed over — the cursor moves past them — and the engine quarantines them,
    so one bad document never stalls a dataset's capture.
    """
    mid_pass: bool = False
    """The page goes on with a listing pass begun before its cursor (GCS, S3 capture). A
    change made behind that cursor shows only in the next pass, so this pass's end is not
    the end of what the location took before the read began: a reader that must see
    everything (a sync pass that says *caught up*) reads on to the end of a pass it began."""


class ApplyOutcome(str, enum.Enum):
    """What one conditional write did."""

    APPLIED = "applied"     # the replica now holds this version
    REPLAYED = "replayed"   # the replica already held exactly this version: a no-op
    STALE = "stale"         # the replica holds a newer version that has seen this one: a no-op
    REJECTED = "rejected"   # the target cannot hold this record (see ``error``)
    CONFLICT = "conflict"   # the replica holds a concurrent version (``conflict_with``): nothing written


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of applying one record to one replica.

    ``conflict_with`` is set with outcome ``CONFLICT``: the replica's stored version vector
    was concurrent with the incoming one (neither had seen the other). Nothing was
    written, so the decision is the caller's — and stays the caller's when the batch is
    replayed after a crash: the engine resolves it once, logs it once, and sends a record
    that has seen both. ``existing`` is the stored record when the adapter saw it.
    """

    key: RecordKey
    outcome: ApplyOutcome
    conflict_with: ReplicationMeta | None = None
    existing: Record | None = None
    error: RecordError | None = None


@dataclass(frozen=True)
class Digest:
    """Key, version and content hash of a stored record: what ``verify`` compares.

    ``version`` is ``None`` for a native record the store holds without valid mcrepl
    metadata (its hash is then computed from the body).
    """

    key_id: str
    version: str | None
    content_hash: str
    tombstone: bool

    @classmethod
    def of_undecodable(cls, key_id: str, raw: bytes | Mapping[str, Any]) -> "Digest":
        """The digest of something stored under a key that is not a record of the dataset.

        Capture quarantines such an item; a comparison must still see it as a difference
        (and never fail on it), so its raw bytes or fields are hashed as they are.
        """
        data = raw if isinstance(raw, bytes) else json.dumps(raw, sort_keys=True, default=repr).encode()
        return cls(key_id, None, content_hash(key_id, data, False), False)


class ReplicaAdapter(ABC):
    """One dataset in one store, behind the common replication interface.

    Implementations translate every SDK exception into :mod:`adapters.base.errors`
    (no SDK type escapes their package) and honour these guarantees:

    * :meth:`apply_batch` is idempotent and conditional: a record lands only if its
      vector has seen the stored version's (it is that version's successor);
      replays and stale writes are reported as no-ops; a stored version concurrent with
      the incoming one is reported as ``CONFLICT`` and left in place; a record the target
      can't hold is ``REJECTED`` with a :class:`RecordError` and the rest of the batch
      still lands. Vector entries with an empty token name origins the writer knows of
      but has seen nothing from: a stored version from such an origin is a conflict.
    * :meth:`capture_changes` returns every change after ``cursor`` at least once, in
      per-key order; re-reading from a saved cursor never skips a change.

    Seeding as an application would (``write_native``/``delete_native``) is not part of
    this interface: adapters that support it implement
    :class:`mcrepl.testing.seeding.NativeWriter` beside it, for tests, demos and drills.
    """

    #: class default; an adapter may set a narrower value per instance (e.g. Cosmos DB
    #: on an emulator without an incremental change feed). It must equal what the
    #: adapter's :class:`~.spec.AdapterSpec` declares for the same target (the contract
    #: suite checks), so ``validate`` can act on capabilities without opening a store.
    capabilities: Capabilities

    def __init__(self, target: ReplicaTarget) -> None:
        self.target = target

    def partitions(self) -> list[Partition]:
        """The partitions capture reads (see :class:`~.roles.ChangeSource`); one by default."""
        return [WHOLE]

    @abstractmethod
    def ensure_ready(self) -> None:
        """Make sure the table/container/bucket exists and is usable; create it if missing.

        On real clouds the Pulumi program is the intended way to provision (keys, IAM,
        PITR); an adapter creates what it can where the credentials allow (DynamoDB, GCS)
        or only checks (Cosmos DB outside the emulator, whose account needs provisioning).
        """

    @abstractmethod
    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        """Changes after ``cursor`` (``None``: everything, by a full scan first)."""

    @abstractmethod
    def current_cursor(self) -> Cursor:
        """A cursor at 'now': capture from it returns only changes made after this call."""

    @abstractmethod
    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        """Apply stamped records conditionally; one result per record, in order."""

    @abstractmethod
    def read(self, key: RecordKey) -> Record | None:
        """The stored record (tombstones included), or ``None``."""

    def read_many(self, keys: Sequence[RecordKey]) -> list[Record | None]:
        """:meth:`read` of every key, in order (a key may repeat).

        A store with a multi-key read (DynamoDB ``BatchGetItem``) overrides this to save a
        round trip per key where the engine reads many keys at once (the primary's lane);
        each answer must be as fresh as :meth:`read`'s.
        """
        return [self.read(key) for key in keys]

    @abstractmethod
    def list_digests(self) -> Iterator[Digest]:
        """Every stored record's digest, reading metadata rather than bodies where possible."""

    @abstractmethod
    def purge_tombstones(self, older_than_ms: int) -> int:
        """Physically remove tombstones whose version wall time is before ``older_than_ms``.

        Called only after the configured retention (longer than any tolerated replica
        outage) so a delete can never be resurrected. Returns how many were removed.
        """

    @abstractmethod
    def drop(self) -> None:
        """Delete the table/container/bucket (tests and ``local down`` clean-up only)."""

    def close(self) -> None:
        """Release clients and connections."""

    def __enter__(self) -> "ReplicaAdapter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def apply_one(adapter: ReplicaAdapter, record: Record) -> ApplyResult:
    """Apply a single record (convenience over :meth:`ReplicaAdapter.apply_batch`)."""
    return adapter.apply_batch([record])[0]


def rejected(record: Record, error: RecordError, target: ReplicaTarget) -> ApplyResult:
    """The ``REJECTED`` result for ``record``, its error located at ``target``."""
    return ApplyResult(record.key, ApplyOutcome.REJECTED,
                       error=error.located(dataset=target.dataset, key=record.key.id,
                                           target=target.replica))


def decide(incoming: ReplicationMeta, stored: ReplicationMeta | None) -> ApplyOutcome:
    """The apply decision shared by every adapter that reads before it writes.

    Causality decides, not clocks: the same version is a replay; a version whose vector
    has seen the stored one's is its successor and is written; one the stored version has
    seen is stale; neither having seen the other is a conflict, never silently overwritten.
    (Hybrid-logical-clock order breaks ties only between concurrent versions, in the
    resolver.)
    """
    if stored is None:
        return ApplyOutcome.APPLIED
    if incoming.version == stored.version:
        return ApplyOutcome.REPLAYED
    if vector_dominates(incoming.vector, stored.vector):
        return ApplyOutcome.APPLIED
    if vector_dominates(stored.vector, incoming.vector):
        return ApplyOutcome.STALE
    return ApplyOutcome.CONFLICT


def conflict_between(incoming: ReplicationMeta, stored: ReplicationMeta | None) -> ReplicationMeta | None:
    """``stored`` when its vector is concurrent with ``incoming``'s, else ``None``."""
    if stored is None or incoming.version == stored.version:
        return None
    return stored if vectors_concurrent(incoming.vector, stored.vector) else None


def result_of(record: Record, stored: ReplicationMeta | None, existing: Record | None = None) -> ApplyResult:
    """The result of a decision made without writing (replay, stale or conflict)."""
    outcome = decide(record.meta, stored)  # type: ignore[arg-type]
    return ApplyResult(record.key, outcome, stored if outcome is ApplyOutcome.CONFLICT else None,
                       existing=existing)
