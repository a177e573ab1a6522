"""Logging what a former primary took that capture never read.

A primary that is demoted keeps whatever writes reached it after capture's last read,
and an application that has not yet heard of the promotion may go on writing to it. A
rejoin reads those from its change log (or a scan) and a promotion of it does the same
first (see :mod:`.attach`). Writes that land *after* its rejoin are late writes: the
lane and anti-entropy find them when they meet a key there whose item mcrepl did not
write (:func:`is_late`), and log them here instead of overwriting them.

Each change becomes a version in the log, under the location's origin, as the successor
of what the location held (:meth:`CaptureLog.held_at`); the log then delivers it to
every other location, where it settles against whatever happened there meanwhile.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

from mcrepl.adapters.base import (Change, Cursor, Record, ReplicaAdapter, ReplicaTarget, ReplicationMeta, Version,
                                  meta_if_valid, tombstone_of, vector_dominates)
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.state.log import Captured

from .merge import union_vector
from .settling import Settling

#: keys named in a late-write audit entry (its count covers them all)
MAX_AUDITED_KEYS = 100


def recover(state: StateStore, target: ReplicaTarget, settling: Settling, changes: Sequence[Change],
            upto: int | None, recovered_heads: dict[str, ReplicationMeta], *,
            audit: str | None = None) -> list[Record]:
    """Append every change the log has not seen, in order; returns the versions appended.

    ``recovered_heads`` carries what earlier calls of the same reconciliation recovered
    (a key changed twice extends its own version) and is updated. With ``audit``, an
    audit entry of that kind naming the keys commits with the versions appended.
    """
    ds, location = target.dataset, target.replica
    keys = [c.record.key for c in changes]
    heads = state.log.heads(ds, (k.id for k in keys))
    held = state.log.held_at(ds, keys, location, upto) | {
        k.id: recovered_heads[k.id] for k in keys if k.id in recovered_heads}
    appended: list[Record] = []
    for change in changes:
        key_id = change.record.key.id
        valid = meta_if_valid(change.record)
        found = unlogged_version(target, settling, change, heads.get(key_id), change.previous or held.get(key_id))
        if found is not None and valid is not None and not change.native_delete \
                and state.log.holds_version(ds, change.record):
            # a version the log holds is one of mcrepl's own deliveries (or captures) coming back:
            # never new, even where the key's head has moved to a version that has not seen it (a
            # late write recovered just before, from the same change log, is not its history)
            found = None
        if found is not None and found.meta is not None:
            appended.append(found)
            heads[key_id] = held[key_id] = recovered_heads[key_id] = found.meta
            continue
        # nothing new: one of mcrepl's own deliveries is what the next change of the key replaced
        # (a native state equal to the head's is not the head's history: what was held stays)
        if valid is not None:
            held[key_id] = recovered_heads[key_id] = valid
    if appended:
        with state.transaction():
            state.check_epoch(ds, settling.epoch)
            state.save_clock(settling.clock.state)
            state.log.append_recovered(ds, appended, location=location, epoch=settling.epoch)
            state.log.note_held(ds, location, appended)
            if audit is not None:
                state.audit.add(audit, {"dataset": ds, "replica": location, "recovered": len(appended),
                                        "keys": sorted({r.key.id for r in appended})[:MAX_AUDITED_KEYS]})
    return appended


def drain_change_log(state: StateStore, target: ReplicaTarget, adapter: ReplicaAdapter, settling: Settling,
                     cursor: Cursor | None, upto: int, recovered_heads: dict[str, ReplicationMeta], batch_size: int,
                     *, audit: str | None = None) -> list[Record] | None:
    """Read a location's change log from ``cursor`` to its end, logging every change the log has not seen.

    The cursor is saved after each page (a page read again after a crash finds its changes
    logged). Returns the versions logged; ``None`` when the position is gone (the adapter
    answered with a scan), with nothing logged from that answer.

    A capture that compares listings (GCS, S3) reports a change behind its pass position in
    its next pass; the end of the pass under way is not the end of what the location took.
    So there the read goes on to the end of a second pass, one begun after this read did.
    """
    ds, location = target.dataset, target.replica
    logged: list[Record] = []
    ends = 1 if adapter.capabilities.incremental_capture else 2
    while True:
        page = adapter.capture_changes(cursor, limit=batch_size)
        if page.scanned:
            return None
        with state.transaction():
            for error in page.rejected:
                state.journal.add_quarantine(ds, location, "capture", error.located(dataset=ds, target=location))
        logged += recover(state, target, settling, page.changes, upto, recovered_heads, audit=audit)
        cursor = page.cursor
        with state.transaction():
            state.log.save_cursor(ds, location, cursor)
        if not page.more:
            ends -= 1
            if not ends:
                return logged


def unlogged_version(target: ReplicaTarget, settling: Settling, change: Change, head: ReplicationMeta | None,
                     previous: ReplicationMeta | None) -> Record | None:
    """The change as a version to log, when the location holds something the log has not seen."""
    record = change.record
    deleted = change.native_delete or record.body is None
    valid = meta_if_valid(record) if not deleted or record.tombstone else None
    if valid is not None:
        if head is not None and (head.version == valid.version or vector_dominates(head.vector, valid.vector)):
            return None
        settling.clock.observe(valid.version)
        if previous is not None and not vector_dominates(valid.vector, previous.vector):
            # it replaced what the location held (the store serialised them): log it as the successor it is
            return dataclasses.replace(record, meta=dataclasses.replace(
                valid, vector=union_vector(valid.vector, previous.vector)))
        return record
    if deleted:
        if head is None or repeats_logged_delete(head, previous):
            return None                 # nothing the log knows of, or the log's delete again
    elif any(m is not None and not m.tombstone and m.content_hash == record.digest_hash(False)
             for m in (head, previous)):
        # the log's content, or the state the location is known to hold (a change feed reporting
        # an item again that nothing changed since capture read it there): no change
        return None
    base = record.meta or previous
    version = settling.clock.tick(target.replica)      # stamped now: it was never captured
    return stamp_native(target, change, version, base.vector if base else {}, base.epoch if base else 0)


def stamp_native(target: ReplicaTarget, change: Change, version: Version, vector: Mapping[str, str],
                 epoch: int) -> Record:
    """A native change (a write or delete without mcrepl's metadata) as the version ``version``.

    ``vector`` is what the write replaced (its predecessor's vector). The store's own time
    for the change, when its change log gives one, is kept as the time of the write, which
    last-writer-wins goes by (see :attr:`ReplicationMeta.written_at_ms`).
    """
    record = change.record
    if change.native_delete or record.body is None:
        stamped = tombstone_of(target.key_schema, record.key, version, dict(vector),
                               blob_dataset=target.kind == "blob", epoch=epoch)
    else:
        stamped = Record(record.key, record.body).stamped(version, dict(vector), epoch=epoch)
    if change.observed_ms is None or stamped.meta is None:
        return stamped
    return dataclasses.replace(stamped, meta=dataclasses.replace(stamped.meta, written_ms=change.observed_ms))


def repeats_logged_delete(head: ReplicationMeta | None, previous: ReplicationMeta | None) -> bool:
    """Whether a native delete leaves its key as the log's head has it: the head is a delete and
    the location is known to have held a delete too.

    A delete where the location held a live version, or something mcrepl knows nothing of (no
    old image, and a location promoted before it received the log, say), is a delete of its own,
    beside the logged one, to be logged and settled against what it never saw.
    """
    return head is not None and head.tombstone and previous is not None and previous.tombstone


def is_late(stored: Record | None, known: Captured | None, head: ReplicationMeta | None,
            logged: Callable[[Record], bool] = lambda record: False) -> bool:
    """Whether a former primary's item is a write it took after its rejoin (one mcrepl did not make).

    ``known`` is the state mcrepl recorded there that the item matches, if any (see
    :func:`.writer.state_of`); ``head`` is the log's version of the key; ``logged`` tells
    whether the log holds a record's version (asked only when the head cannot tell).
    """
    if known is not None:
        return False
    meta = meta_if_valid(stored) if stored is not None else None
    if meta is None:
        return True
    # a versioned item the log has (or has seen past) is one of mcrepl's deliveries — also one
    # the head has not seen: a settlement delivered there that a later entry is concurrent with
    if head is not None and (head.version == meta.version or vector_dominates(head.vector, meta.vector)):
        return False
    assert stored is not None
    return not logged(stored)


def late_change(key_record: Record, stored: Record | None) -> Change:
    """The change to recover for a late write found as ``stored`` (``None``: the key was deleted)."""
    if stored is None:
        return Change(Record(key_record.key, None), native_delete=True)
    return Change(stored)


__all__ = ["drain_change_log", "is_late", "late_change", "recover", "repeats_logged_delete", "stamp_native",
           "unlogged_version"]
