"""Attaching a lane: make sure a location holds what the log assumes before it replays the log.

A lane's offset is only meaningful if the location holds everything logged before it.
That is not so for:

* a **new** replica when the log no longer starts at entry 1, and any replica whose offset
  lies behind the log's horizon (it was out of the config while entries it needed were
  truncated): it is **backfilled** — the primary's current contents, every record whatever
  origin its metadata names, written with the versions the log gave them, plus the
  tombstones the log still holds — and its lane starts at the log head noted before the
  scan. Records the scan sees in a state the log has not caught up with yet are left to
  capture, which logs them after that head;
* a location that was **primary** since the lane was last attached (a demoted primary
  rejoining): it may hold writes it acknowledged that were never captured. Every version
  it holds that the log has not seen is appended to the log (a native one stamped now),
  so the lanes deliver it everywhere — or meet the concurrent version and settle the
  conflict through the resolver (logged). Whether such a write was made before or after
  the demotion cannot be told without trusting two hosts' clocks, so none is refused
  here: stale writers are stopped by fencing (the epoch check), and whatever landed is
  reconciled, never silently dropped. The location is then backfilled, because a key it
  lacks may be a delete it never reported or data it lost: absence is never taken for a
  delete, and such keys are listed.

Every write goes through the lane's :class:`~.writer.LocationWriter`; conflicts found on
the way are settled exactly like a lane's. The attachment commits with its audit entry.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Iterator

from mcrepl.adapters.base import (ApplyOutcome, Change, ChangePage, Record, ReplicaAdapter, ReplicationMeta,
                                  meta_if_valid, tombstone_of, vector_dominates)
from mcrepl.orchestrator.state import StateStore

from .lane import LaneApplier
from .writer import Written, counts_of

log = logging.getLogger("mcrepl.sync.attach")
MAX_LISTED_KEYS = 1000


@dataclass
class AttachResult:
    """What attaching a lane did, as lane counters, and where its lane starts."""

    kind: str                                   # "backfill" | "rejoin"
    start_offset: int
    counts: dict[str, int] = field(default_factory=lambda: counts_of([]))
    recovered: int = 0                          # rejoin: unlogged versions appended to the log
    missing: list[str] = field(default_factory=list)   # rejoin: keys the log says it held, absent now
    missing_total: int = 0


def full_read(adapter: ReplicaAdapter, batch_size: int, state: StateStore | None = None) -> Iterator[ChangePage]:
    """Every record a location holds, page by page (its capture from scratch, up to the scan's end).

    Items that cannot be decoded are quarantined at that location (with ``state``), as
    capture does, and passed over.
    """
    cursor, scanning = None, False
    target = adapter.target
    while True:
        page = adapter.capture_changes(cursor, limit=batch_size)
        if scanning and not page.scanned:
            return                                 # the scan is over; a change log follows
        scanning = scanning or page.scanned
        if state is not None and page.rejected:
            with state.transaction():
                for error in page.rejected:
                    state.journal.add_quarantine(target.dataset, target.replica, "capture",
                                                 error.located(dataset=target.dataset, target=target.replica))
        yield page
        if not page.more:
            return
        cursor = page.cursor


def backfill(lane: LaneApplier, primary: ReplicaAdapter, epoch: int, *, kind: str = "backfill",
             result: AttachResult | None = None) -> AttachResult:
    """Copy the primary's current, already-logged records to the lane's location; then attach it."""
    state, ds = lane.state, lane.target.dataset
    result = result or AttachResult(kind, state.log.head(ds))
    for page in full_read(primary, lane.batch_size, state):
        heads = state.log.heads(ds, (c.record.key.id for c in page.changes))
        batch: list[Record] = []
        for change in page.changes:
            record, head = change.record, heads.get(change.record.key.id)
            if head is None or head.tombstone or record.body is None:
                continue                            # not logged yet, or deleted: the log brings it
            own = meta_if_valid(record)
            if own is not None and own.version == head.version:
                batch.append(record)
            elif own is None and record.digest_hash(False) == head.content_hash:
                batch.append(Record(record.key, record.body, head))
        _write(lane, batch, result)
    schema, blob = lane.target.key_schema, lane.target.kind == "blob"
    tombstones: list[Record] = []
    for key_id, meta in state.log.tombstone_heads(ds):
        key = schema.parse_id(key_id)
        tombstones.append(Record(key, None if blob else schema.key_body(key), meta))
        if len(tombstones) >= lane.batch_size:
            _write(lane, tombstones, result)
            tombstones = []
    _write(lane, tombstones, result)
    _attach(lane, result, epoch)
    return result


def rejoin(lane: LaneApplier, primary: ReplicaAdapter, epoch: int, former_epochs: set[int]) -> AttachResult:
    """Reconcile a demoted primary's unlogged changes into the log (see the module docstring).

    When its change log can still be read from where capture left it (and shows deletes),
    that is what is read: exactly the writes and deletes it took that were never captured.
    Otherwise its contents are scanned — a scan cannot see deletes, so keys it lacks are
    listed, not deleted — and it is then backfilled.
    """
    state, ds, location = lane.state, lane.target.dataset, lane.target.replica
    result = AttachResult("rejoin", state.log.head(ds))
    cursor = state.log.cursor(ds, location)
    if lane.adapter.capabilities.capture_sees_deletes and _drain_change_log(lane, cursor, result):
        log.info("rejoin of %s at %s from its change log: %d unlogged changes recovered", ds, location,
                 result.recovered)
        row = state.lanes.get(ds, location)
        result.start_offset = row.offset         # it received everything logged up to there
        _attach(lane, result, epoch)
        return result
    seen: set[str] = set()
    upto = state.lanes.get(ds, location).offset
    for page in full_read(lane.adapter, lane.batch_size, state):
        seen.update(c.record.key.id for c in page.changes)
        _recover(lane, page.changes, upto, result)
    _list_missing(state, ds, seen, former_epochs, result)
    log.info("rejoin of %s at %s: %d unlogged versions recovered, %d keys missing",
             ds, location, result.recovered, result.missing_total)
    return backfill(lane, primary, epoch, kind="rejoin", result=result)


def _drain_change_log(lane: LaneApplier, cursor: dict | None, result: AttachResult) -> bool:  # type: ignore[type-arg]
    """Read the location's change log from its capture cursor to the end; ``False`` if it can't be read.

    Without a cursor (it was never captured from) the log is read from its beginning, which
    a change feed can do (each key's latest change, deletes included); a store whose capture
    starts with a table scan answers with scanned pages, and the caller scans instead.
    """
    state, ds, location = lane.state, lane.target.dataset, lane.target.replica
    upto = state.lanes.get(ds, location).offset
    while True:
        page = lane.adapter.capture_changes(cursor, limit=lane.batch_size)
        if page.scanned:
            return False                         # the position is gone: the adapter fell back to a scan
        with state.transaction():
            for error in page.rejected:
                state.journal.add_quarantine(ds, location, "capture", error.located(dataset=ds, target=location))
        _recover(lane, page.changes, upto, result)
        cursor = page.cursor
        with state.transaction():
            state.log.save_cursor(ds, location, cursor)
        if not page.more:
            return True


def _recover(lane: LaneApplier, changes: list, upto: int, result: AttachResult) -> None:  # type: ignore[type-arg]
    """Append every change the log has not seen, in order (a key changed twice extends its own version)."""
    state, ds, location = lane.state, lane.target.dataset, lane.target.replica
    keys = [c.record.key for c in changes]
    heads = state.log.heads(ds, (k.id for k in keys))
    held = state.log.held_at(ds, keys, location, upto)
    appended: list[Record] = []
    for change in changes:
        key_id = change.record.key.id
        found = _unlogged_version(lane, change, heads.get(key_id), change.previous or held.get(key_id))
        if found is not None and found.meta is not None:
            appended.append(found)
            heads[key_id] = held[key_id] = found.meta
            result.recovered += 1
    if appended:
        with state.transaction():
            state.check_epoch(ds, lane.settling.epoch)
            state.save_clock(lane.settling.clock.state)
            state.log.append_recovered(ds, appended, location=location, epoch=lane.settling.epoch)


def _unlogged_version(lane: LaneApplier, change: Change, head: ReplicationMeta | None,
                      previous: ReplicationMeta | None) -> Record | None:
    """The change as a version to log, when the location holds something the log has not seen."""
    record = change.record
    deleted = change.native_delete or record.body is None
    valid = meta_if_valid(record) if not deleted or record.tombstone else None
    if valid is not None:
        if head is not None and (head.version == valid.version or vector_dominates(head.vector, valid.vector)):
            return None
        lane.settling.clock.observe(valid.version)
        return record
    if deleted:
        if head is None or head.tombstone:
            return None
    elif head is not None and not head.tombstone and head.content_hash == record.digest_hash(False):
        return None
    base = record.meta or previous
    vector = dict(base.vector) if base else {}
    version = lane.settling.clock.tick(lane.target.replica)      # stamped now: it was never captured
    if deleted:
        return tombstone_of(lane.target.key_schema, record.key, version, vector,
                            blob_dataset=lane.target.kind == "blob", epoch=base.epoch if base else 0)
    return Record(record.key, record.body).stamped(version, vector, epoch=base.epoch if base else 0)


def _list_missing(state: StateStore, ds: str, seen: set[str], former_epochs: set[int],
                  result: AttachResult) -> None:
    """Keys whose live head was logged while the location was primary, but that it no longer holds."""
    for row in state.db.rows("SELECT key_id, meta FROM heads WHERE dataset=? AND tombstone=0", (ds,)):
        if row["key_id"] in seen:
            continue
        meta = ReplicationMeta.from_dict(json.loads(row["meta"]))
        if meta.epoch in former_epochs:
            result.missing_total += 1
            if len(result.missing) < MAX_LISTED_KEYS:
                result.missing.append(row["key_id"])


def _write(lane: LaneApplier, records: list[Record], result: AttachResult) -> None:
    if not records:
        return
    written = lane.writer.write(records)
    for w in written:
        result.counts[w.outcome] += 1
    conflicts = [(w.record, w) for w in written
                 if w.result is not None and w.result.outcome is ApplyOutcome.CONFLICT]
    if conflicts:
        lane.settle_found(conflicts, result.counts)


def _attach(lane: LaneApplier, result: AttachResult, epoch: int) -> None:
    state, ds, location = lane.state, lane.target.dataset, lane.target.replica
    with state.transaction():
        state.check_epoch(ds, epoch)
        state.lanes.attach(ds, location, result.start_offset, epoch, result.counts)
        state.audit.add(result.kind, {"dataset": ds, "replica": location, "start_offset": result.start_offset,
                                      "recovered": result.recovered,
                                      "missing": result.missing_total, "missing_keys": result.missing,
                                      **{k: v for k, v in result.counts.items() if v}})
    log.info("%s of %s at %s: %s; lane starts at log entry %d", result.kind, ds, location,
             {k: v for k, v in result.counts.items() if v}, result.start_offset)


__all__ = ["AttachResult", "Written", "backfill", "full_read", "rejoin"]
