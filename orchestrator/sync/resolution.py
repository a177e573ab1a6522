"""Settling a conflict once: a record that has seen both sides, logged with the conflict row.

A conflict is a version found at some location that is concurrent with the version the
log holds for the key (neither vector has seen the other): an old primary's write that
was never captured, a writer that read a stale copy. Stores never overwrite such a
version (they answer ``CONFLICT``); the engine settles it here:

* the dataset's resolver picks the body — last-writer-wins by version order, or the
  configured merge function over both bodies (deletes always go by version order);
  a merge function that raises falls back to last-writer-wins, and the row says so;
* the body is stamped with a **new** version whose vector is the union of both plus the
  new token, so it dominates both sides and every location accepts it;
* the conflict row and the settling record are committed by the caller in the same
  transaction as its checkpoint. A conflict is identified by its key and the concurrent
  version found, so replaying a batch after a crash, or meeting the same version at a
  second replica, never logs or merges it twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from mcrepl.adapters.base import Record, ReplicaTarget, Version, tombstone_of
from mcrepl.orchestrator.state import ConflictRow

from .merge import MergeFunction, merged_record, union_vector

log = logging.getLogger("mcrepl.sync.conflicts")


@dataclass(frozen=True)
class Settlement:
    """The row to log and the record to append to the log (``None`` when logged before)."""

    row: ConflictRow
    record: Record


def settle(target: ReplicaTarget, location: str, stored: Record, incoming: Record, *,
           merge: MergeFunction | None, tick: Callable[[], Version], epoch: int,
           decrypt: Callable[[Record], Record] | None = None) -> Settlement:
    """Resolve ``stored`` (found at ``location``) against ``incoming`` (the log's head for the key).

    ``decrypt`` turns a record read from a replica that holds encrypted fields back into
    plaintext, so merges and the log only ever see plaintext.
    """
    assert stored.meta is not None and incoming.meta is not None
    if decrypt is not None:
        stored = decrypt(stored)
    winner = stored if stored.meta.version > incoming.meta.version else incoming
    resolver, note = "lww", None
    version = tick()
    vector = union_vector(stored.meta.vector, incoming.meta.vector)
    if merge is not None and not stored.tombstone and not incoming.tombstone:
        try:
            record = merged_record(merge, target, stored, incoming, version, epoch)
            resolver = "merge"
        except Exception as exc:  # noqa: BLE001 - a user function may raise anything; LWW stands
            note = f"merge function raised {type(exc).__name__}; last-writer-wins applied"
            log.warning("merge of %s in %s failed (%s): last-writer-wins applied", incoming.key.id,
                        target.dataset, type(exc).__name__)
            record = _restamped(target, winner, version, vector, epoch)
    else:
        record = _restamped(target, winner, version, vector, epoch)
    assert record.meta is not None and winner.meta is not None
    row = ConflictRow(target.dataset, incoming.key.id, location, incoming.meta, stored.meta,
                      winner.meta.version.token if resolver == "lww" else record.meta.version.token,
                      resolver, record.meta.version.token, note)
    return Settlement(row, record)


def _restamped(target: ReplicaTarget, winner: Record, version: Version, vector: dict[str, str],
               epoch: int) -> Record:
    if winner.tombstone:
        return tombstone_of(target.key_schema, winner.key, version, vector,
                            blob_dataset=target.kind == "blob", epoch=epoch)
    return Record(winner.key, winner.body).stamped(version, vector, epoch=epoch)

