"""Settling a conflict once: a record that has seen both sides, logged with the conflict row.

A conflict is a version found at some location that is concurrent with the version the
log holds for the key (neither vector has seen the other): an old primary's write that
was never captured, a writer that read a stale copy. Stores never overwrite such a
version (they answer ``CONFLICT``); the engine settles it here:

* the dataset's resolver picks the body — last-writer-wins by the order of the writes
  that made each body (:attr:`ReplicationMeta.content_version`), or the
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

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from mcrepl.adapters.base import Record, ReplicaTarget, Version, tombstone_of, vector_dominates
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
           decrypt: Callable[[Record], Record] | None = None, also: Sequence[Record] = (),
           foreign: bool = False) -> Settlement:
    """Resolve ``stored`` (found at ``location``) against ``incoming`` (the log entry that met it).

    ``also`` are more versions the settlement must supersede — the log's latest version of
    the key, which may not have seen ``incoming`` either. Versions one of the others has
    seen drop out; the rest are resolved together (the newest body, or the merge of all),
    under a vector that has seen every one of them. ``decrypt`` turns a record read from a
    replica that holds encrypted fields back into plaintext, so merges and the log only
    ever see plaintext. ``foreign``: the stored version is one the log never held, at a
    location that holds copies (left there by an earlier state file, a restore): it is
    superseded, never a candidate body, and the row says so.
    """
    assert stored.meta is not None and incoming.meta is not None
    if decrypt is not None:
        stored = decrypt(stored)
    parties = _frontier([incoming, *also] if foreign else [stored, incoming, *also])
    winner = _last_writer(parties)
    resolver, note = "lww", None
    if foreign:
        resolver, note = "replica-copy", (f"the version at {location} was never logged (a copy mcrepl did not "
                                          "make, at a location that holds copies): the log's version replaced it")
    version = tick()
    vector: dict[str, str] = {}
    for party in (stored, incoming, *also):
        vector = union_vector(vector, party.meta.vector)  # type: ignore[union-attr]
    live = [p for p in parties if not p.tombstone]
    if merge is not None and len(live) == len(parties) and len(parties) > 1:
        try:
            record = _merged(merge, target, parties, version, vector, epoch)
            resolver = "merge"
        except Exception as exc:  # noqa: BLE001 - a user function may raise anything; LWW stands
            note = f"merge function raised {type(exc).__name__}; last-writer-wins applied"
            log.warning("merge of %s in %s failed (%s): last-writer-wins applied", incoming.key.id,
                        target.dataset, type(exc).__name__)
            record = _restamped(target, winner, version, vector, epoch)
    else:
        record = _restamped(target, winner, version, vector, epoch)
    assert record.meta is not None and winner.meta is not None and stored.meta is not None
    others = tuple(p.meta for p in parties if p is not stored and p is not incoming and p.meta is not None)
    row = ConflictRow(target.dataset, incoming.key.id, location, incoming.meta, stored.meta,
                      winner.meta.version.token if resolver == "lww" else record.meta.version.token,
                      resolver, record.meta.version.token, note, others)
    return Settlement(row, record)


def _last_writer(parties: Sequence[Record]) -> Record:
    """The party whose body was written last, among bodies no other party has already seen.

    A settlement carries an older write's body under a version of its own; when another
    party has seen that write (its vector covers the body's version), the body is stale
    and cannot win, whatever the clocks say.
    """
    def stale(party: Record) -> bool:
        written = party.meta.content_version  # type: ignore[union-attr]
        return any(o is not party and o.meta.vector.get(written.origin, "") >= written.token  # type: ignore[union-attr]
                   for o in parties)
    eligible = [p for p in parties if not stale(p)] or list(parties)
    return max(eligible, key=lambda r: (r.meta.written_at_ms, r.meta.content_version))  # type: ignore[union-attr]


def _frontier(records: Sequence[Record]) -> list[Record]:
    """The versions no other one has seen (duplicates once), oldest first."""
    unique = {r.meta.version.token: r for r in records}  # type: ignore[union-attr]
    out = [r for r in unique.values()
           if not any(o is not r and o.meta.version != r.meta.version  # type: ignore[union-attr]
                      and vector_dominates(o.meta.vector, r.meta.vector) for o in unique.values())]  # type: ignore[union-attr]
    return sorted(out, key=lambda r: r.meta.version)  # type: ignore[union-attr]


def _merged(merge: MergeFunction, target: ReplicaTarget, parties: Sequence[Record], version: Version,
            vector: dict[str, str], epoch: int) -> Record:
    """The merge function folded over ``parties`` (oldest first), stamped with ``version``."""
    acc = parties[0]
    for other in parties[1:]:
        acc = merged_record(merge, target, acc, other, version, epoch)
    return Record(acc.key, acc.body).stamped(version, vector, epoch=epoch)


def _restamped(target: ReplicaTarget, winner: Record, version: Version, vector: dict[str, str],
               epoch: int) -> Record:
    """The winner's body under the settlement's version, remembering whose write it is."""
    assert winner.meta is not None
    if winner.tombstone:
        record = tombstone_of(target.key_schema, winner.key, version, vector,
                              blob_dataset=target.kind == "blob", epoch=epoch)
    else:
        record = Record(winner.key, winner.body).stamped(version, vector, epoch=epoch)
    assert record.meta is not None
    return dataclasses.replace(record, meta=dataclasses.replace(
        record.meta, written=winner.meta.content_version, written_ms=winner.meta.written_ms))

