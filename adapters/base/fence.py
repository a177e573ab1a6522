"""Epoch records: the fencing token kept *in each store*, and writes the store refuses under a stale one.

The orchestrator's primary pointer lives in its state file, which an application in a
lost region cannot read. So every location of a dataset also holds a small **epoch
record** — ``{epoch, primary}`` — that promotion publishes (:meth:`EpochFence.publish`,
never lowering it), and an application's writes are conditioned on it
(:meth:`EpochFence.write`): a writer still pinned to an older epoch, or writing to a
location that is no longer the primary, is refused.

How strong that refusal is depends on what the store can condition on:

* **DynamoDB** (``transactional_batch``): one ``TransactWriteItems`` holds a
  ``ConditionCheck`` on the epoch item and the conditional ``Put`` of the data item; the
  store itself refuses a stale write atomically (:mod:`mcrepl.adapters.dynamodb.fence`).
* **Cosmos DB and Cloud Storage** have no condition across two documents/objects (and
  the Cosmos emulator no transactional batch), so :func:`checked_write` reads the epoch
  record, writes, and reads it again. A writer pinned to a stale epoch is refused before
  anything is sent; a write racing the publication itself (milliseconds) is reported as
  :class:`StaleEpoch` with ``landed=True`` — it is on the demoted location and is
  reconciled through the resolver when that location rejoins, never silently kept or lost.

The record lives beside the dataset, never in it (a ``-mcrepl-epoch`` table, container
or bucket), so capture, verify and digests never see it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Callable, Generic, TypeVar

from .errors import AdapterError
from .interface import ApplyOutcome, ApplyResult, ReplicaAdapter, ReplicaTarget
from .record import Record

Token = TypeVar("Token")

#: suffix of the table, container or bucket that holds a location's epoch record
EPOCH_SUFFIX = "-mcrepl-epoch"


@dataclass(frozen=True)
class EpochRecord:
    """What one location says about its dataset's primary: under ``epoch``, ``primary`` takes writes."""

    dataset: str
    epoch: int
    primary: str
    published_at: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, Any]) -> "EpochRecord":
        raw = json.loads(data) if isinstance(data, (bytes, str)) else data
        return cls(str(raw["dataset"]), int(raw["epoch"]), str(raw["primary"]), float(raw.get("published_at", 0)))


class StaleEpoch(AdapterError):
    """The store refused a write (or its epoch record says it must not take one).

    ``landed`` is true only for :func:`checked_write` losing a race with a publication:
    the write reached a location that was being demoted, and rejoin reconciles it.
    ``current`` is the epoch record the location holds, when it holds one.
    """

    def __init__(self, message: str, *, landed: bool = False, current: EpochRecord | None = None,
                 **kw: Any) -> None:
        kw.setdefault("retryable", False)
        super().__init__(message, **kw)
        self.landed = landed
        self.current = current


class EpochConflict(AdapterError):
    """Two different primaries were published under one epoch: state files disagree."""


class EpochFence(ABC):
    """The epoch record of one dataset at one location (``target``), and writes conditioned on it."""

    def __init__(self, target: ReplicaTarget) -> None:
        self.target = target

    @property
    def resource(self) -> str:
        """The table, container or bucket holding the record (shown by ``doctor`` and errors)."""
        return epoch_resource(self.target.resource)

    @abstractmethod
    def ensure(self) -> None:
        """Create the epoch table/container/bucket if missing (where the credentials allow)."""

    @abstractmethod
    def read(self) -> EpochRecord | None:
        """The record the location holds now (strongly consistent), or ``None`` before fencing is armed."""

    @abstractmethod
    def publish(self, epoch: int, primary: str, at: float) -> EpochRecord:
        """Store ``(epoch, primary)`` unless a higher epoch is stored; return what is stored afterwards.

        Idempotent: publishing the stored record again changes nothing. Raises
        :class:`EpochConflict` when the same epoch is stored with another primary.
        """

    @abstractmethod
    def write(self, adapter: ReplicaAdapter, record: Record, epoch: int) -> ApplyResult:
        """Apply ``record`` through ``adapter`` only while this location is the primary of ``epoch``.

        Raises :class:`StaleEpoch` when it is not. Otherwise the result is the adapter's
        conditional apply (newer-wins): ``APPLIED``, or ``STALE``/``CONFLICT`` when a
        concurrent writer got there first.
        """

    def require(self, epoch: int) -> EpochRecord:
        """The stored record if it names this location as the primary of ``epoch``; else :class:`StaleEpoch`."""
        current = self.read()
        problem = refusal(current, epoch, self.target.replica)
        if problem is not None:
            raise StaleEpoch(problem, current=current, replica=self.target.replica, dataset=self.target.dataset,
                             provider=self.target.provider, operation="fenced_write")
        assert current is not None
        return current

    def close(self) -> None:
        """Release clients."""


def refusal(current: EpochRecord | None, epoch: int, location: str) -> str | None:
    """Why a writer of ``epoch`` may not write at ``location`` holding ``current`` (``None``: it may)."""
    if current is None:
        return (f"{location} holds no epoch record, so fencing is not armed there "
                "(fix: mcrepl failover fence --dataset DATASET)")
    if current.epoch != epoch:
        return (f"{location} is at epoch {current.epoch} (primary {current.primary}); this writer is pinned to "
                f"epoch {epoch}: refused (fix: reconnect the writer, it then follows the current primary)")
    if current.primary != location:
        return f"{location} is not the primary under epoch {epoch} ({current.primary} is): refused"
    return None


def epoch_resource(resource: str, limit: int = 63) -> str:
    """The name of the resource holding ``resource``'s epoch record (bucket names stop at 63)."""
    name = f"{resource}{EPOCH_SUFFIX}"
    if len(name) <= limit:
        return name
    import hashlib
    digest = hashlib.sha256(resource.encode()).hexdigest()[:8]
    return f"{resource[:limit - len(EPOCH_SUFFIX) - 9]}-{digest}{EPOCH_SUFFIX}"


class DocumentFence(EpochFence, Generic[Token]):
    """An epoch record kept as one small document with a compare-and-swap token (etag, generation).

    Subclasses provide :meth:`load` and :meth:`store`; publishing and checked writes are shared.
    """

    @abstractmethod
    def load(self) -> tuple[EpochRecord | None, Token | None]:
        """The stored record and its token (``None, None`` when absent)."""

    @abstractmethod
    def store(self, record: EpochRecord, token: Token | None) -> None:
        """Write ``record`` if the token still matches (``None``: must not exist); else raise
        :class:`~mcrepl.adapters.base.conditional.PreconditionFailed`."""

    def read(self) -> EpochRecord | None:
        return self.load()[0]

    def publish(self, epoch: int, primary: str, at: float) -> EpochRecord:
        from .conditional import PreconditionFailed
        for _ in range(16):
            current, token = self.load()
            settled = _settled(current, epoch, primary, self.target)
            if settled is not None:
                return settled
            try:
                record = EpochRecord(self.target.dataset, epoch, primary, at)
                self.store(record, token)
                return record
            except PreconditionFailed:
                continue                      # another publisher moved it: look again
        raise AdapterError("the epoch record kept changing while it was published", retryable=True,
                           replica=self.target.replica, dataset=self.target.dataset, operation="publish_epoch")

    def write(self, adapter: ReplicaAdapter, record: Record, epoch: int) -> ApplyResult:
        return checked_write(self, adapter, record, epoch)


def _settled(current: EpochRecord | None, epoch: int, primary: str, target: ReplicaTarget) -> EpochRecord | None:
    """What is already stored when publishing ``(epoch, primary)`` has nothing to do; raises on a conflict."""
    if current is None or current.epoch < epoch:
        return None
    if current.epoch == epoch and current.primary != primary:
        raise EpochConflict(f"{target.replica} already holds epoch {epoch} with primary {current.primary}, not "
                            f"{primary}: two state files promoted independently (fix: keep one state file; "
                            "promote again from it, which publishes a higher epoch)",
                            replica=target.replica, dataset=target.dataset, operation="publish_epoch")
    return current


def checked_write(fence: EpochFence, adapter: ReplicaAdapter, record: Record, epoch: int,
                  apply: Callable[[Record], ApplyResult] | None = None) -> ApplyResult:
    """Check the epoch record, apply, check again (stores with no cross-document condition)."""
    fence.require(epoch)
    result = (apply or (lambda r: adapter.apply_batch([r])[0]))(record)
    if result.outcome is ApplyOutcome.APPLIED:
        try:
            fence.require(epoch)
        except StaleEpoch as exc:
            raise StaleEpoch(f"{exc.message}; the write landed while the location was being demoted and is "
                             "reconciled when it rejoins", landed=True, current=exc.current,
                             replica=fence.target.replica, dataset=fence.target.dataset,
                             operation="fenced_write", key=record.key.id) from None
    return result


__all__ = ["DocumentFence", "EPOCH_SUFFIX", "EpochConflict", "EpochFence", "EpochRecord", "StaleEpoch",
           "checked_write", "epoch_resource", "refusal"]
