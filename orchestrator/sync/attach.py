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

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Iterator

from mcrepl.adapters.base import (ApplyOutcome, ChangePage, KeySchema, Record, ReplicaAdapter, ReplicationMeta,
                                  meta_if_valid)
from mcrepl.orchestrator.state import StateStore

from .lane import LaneApplier
from .merge import union_vector
from .late_writes import LATE_WRITES
from .recovery import drain_change_log, recover as recover_changes
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
    # rejoin: the version each key recovered so far holds at the location (a later page's
    # change of the same key replaced it there; these entries are not the primary's)
    recovered_heads: dict[str, ReplicationMeta] = field(default_factory=dict, repr=False)


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
    """Copy the primary's current, already-logged records to the lane's location; then attach it.

    The lane starts where the primary's own lane stands (never after the head noted before
    the scan): entries mcrepl made that the primary has not received yet are not in what
    the scan reads, so the new lane must apply them itself.
    """
    state, ds = lane.state, lane.target.dataset
    result = result or AttachResult(kind, _start(state, ds, primary.target.replica))
    with state.transaction():
        # up to the horizon too: a lane starting below it (the primary's own lane lags, as after
        # a forced promotion) cannot deliver the entries the log no longer holds
        state.log.mark_unheld(ds, lane.target.replica, max(result.start_offset, state.log.horizon(ds)))
    for page in full_read(primary, lane.batch_size, state):
        heads = state.log.heads(ds, (c.record.key.id for c in page.changes))
        batch: list[Record] = []
        for change in page.changes:
            record, head = change.record, heads.get(change.record.key.id)
            if head is None or head.tombstone or record.body is None:
                continue                            # not logged yet, or deleted: the log brings it
            own = meta_if_valid(record)
            if own is not None and own.version == head.version:
                # with the log's vector: an application that stamps its own writes stores its own,
                # which does not name what its write replaced (see CaptureLog.as_logged)
                batch.append(dataclasses.replace(record, meta=dataclasses.replace(
                    own, vector=union_vector(own.vector, head.vector))))
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
    """Reconcile a demoted primary's unlogged changes into the log, then attach its lane.

    After :func:`recover`, a location whose change log was read received everything
    logged up to its lane's offset, and its lane resumes there; a scanned one is
    backfilled from the primary.
    """
    state, ds, location = lane.state, lane.target.dataset, lane.target.replica
    result = AttachResult("rejoin", _start(state, ds, primary.target.replica))
    if recover(lane, former_epochs, result):
        result.start_offset = state.lanes.get(ds, location).offset
        _attach(lane, result, epoch)
        return result
    return backfill(lane, primary, epoch, kind="rejoin", result=result)


def recover(lane: LaneApplier, former_epochs: set[int], result: AttachResult) -> bool:
    """Log the writes and deletes a former primary took that capture never read (see the module docstring).

    When its change log can still be read from where capture left it (and shows deletes),
    that is what is read: exactly those changes; ``True``. Otherwise its contents are
    scanned — a scan cannot see deletes, so keys it lacks are listed in ``result``, not
    deleted — and the answer is ``False``. Promotion runs this too, for a former primary
    promoted again before it ever rejoined.
    """
    state, ds, location = lane.state, lane.target.dataset, lane.target.replica
    cursor = state.log.cursor(ds, location)
    if lane.adapter.capabilities.capture_sees_deletes and _drain_change_log(lane, cursor, result):
        log.info("%s at %s: %d unlogged changes recovered from its change log", ds, location, result.recovered)
        return True
    seen: set[str] = set()
    upto = state.lanes.get(ds, location).offset
    for page in full_read(lane.adapter, lane.batch_size, state):
        seen.update(c.record.key.id for c in page.changes)
        _recover(lane, page.changes, upto, result)
    _list_missing(state, ds, location, lane.target.key_schema, seen, former_epochs, upto, result)
    log.info("%s at %s (scanned): %d unlogged versions recovered, %d keys missing",
             ds, location, result.recovered, result.missing_total)
    return False


def unreconciled_epochs(state: StateStore, dataset: str, location: str, current_epoch: int) -> set[int]:
    """The epochs ``location`` was primary in whose writes were never reconciled (it has not rejoined since)."""
    if not state.lanes.exists(dataset, location):
        return set()
    attached = state.lanes.get(dataset, location).attached_epoch
    if attached is None:
        return set()
    return {e for e in state.epochs_of(dataset, location) if attached <= e < current_epoch}


def _drain_change_log(lane: LaneApplier, cursor: dict | None, result: AttachResult) -> bool:  # type: ignore[type-arg]
    """Read the location's change log from its capture cursor to the end; ``False`` if it can't be read.

    Without a cursor (it was never captured from) the log is read from its beginning, which
    a change feed can do (each key's latest change, deletes included); a store whose capture
    starts with a table scan answers with scanned pages, and the caller scans instead.
    """
    state, ds, location = lane.state, lane.target.dataset, lane.target.replica
    recovered = drain_change_log(state, lane.target, lane.adapter, lane.settling, cursor,
                                 state.lanes.get(ds, location).offset, result.recovered_heads, lane.batch_size)
    if recovered is None:
        return False                             # the position is gone: the adapter fell back to a scan
    result.recovered += len(recovered)
    return True


def _recover(lane: LaneApplier, changes: list, upto: int, result: AttachResult) -> None:  # type: ignore[type-arg]
    """Append every change the log has not seen, in order (see :func:`.recovery.recover`)."""
    result.recovered += len(recover_changes(lane.state, lane.target, lane.settling, changes, upto,
                                            result.recovered_heads))


def _start(state: StateStore, ds: str, primary: str) -> int:
    """Where a lane attached by scanning the primary starts: what the primary itself has received."""
    head = state.log.head(ds)
    if not state.lanes.exists(ds, primary):
        return head
    return min(head, state.lanes.get(ds, primary).offset)


def _list_missing(state: StateStore, ds: str, location: str, schema: KeySchema, seen: set[str],
                  former_epochs: set[int], upto: int, result: AttachResult) -> None:
    """Keys the location is known to have held live, that its scan did not find.

    Known held: logged while it was primary, or a live version it held as far as the
    log knows (:meth:`CaptureLog.held_at`). A scan cannot tell a delete it took from a
    loss, so these are listed, not deleted; the backfill that follows writes them back.
    """
    unseen: list[tuple[str, ReplicationMeta]] = []
    for row in state.db.rows("SELECT key_id, meta, allowed FROM heads WHERE dataset=? AND tombstone=0", (ds,)):
        if row["key_id"] in seen:
            continue
        if row["allowed"] is not None and location not in json.loads(row["allowed"]):
            continue                             # withheld there: its absence is the policy
        unseen.append((row["key_id"], ReplicationMeta.from_dict(json.loads(row["meta"]))))
    for start in range(0, len(unseen), 500):
        chunk = unseen[start:start + 500]
        held = state.log.held_at(ds, [schema.parse_id(key_id) for key_id, _ in chunk], location, upto)
        for key_id, meta in chunk:
            known = held.get(key_id)
            if meta.epoch in former_epochs or (known is not None and not known.tombstone):
                result.missing_total += 1
                if len(result.missing) < MAX_LISTED_KEYS:
                    result.missing.append(key_id)


def _write(lane: LaneApplier, records: list[Record], result: AttachResult) -> None:
    if not records:
        return
    written = lane.writer.write(records)
    for w in written:
        result.counts[w.outcome] += 1
    ds, location = lane.target.dataset, lane.target.replica
    with lane.state.transaction():
        lane.state.log.clear_unheld(ds, location, [w.record.key.id for w in written
                                                   if w.outcome in ("applied", "replayed")])
        # what the writer left alone there (a late write or delete at a former primary, a state
        # capture has not read at the primary) it does not hold, a delete no more than a write:
        # taken for held, a later write there would pass for a successor of a delete it never saw
        lane.state.log.note_unheld_heads(ds, location, [w.record.key.id for w in written if w.deferred])
    late = [w.late for w in written if w.late is not None]
    if late:
        # logged as the lane logs them: a late change left alone and forgotten would be lost
        result.recovered += len(recover_changes(lane.state, lane.target, lane.settling, late, result.start_offset,
                                                result.recovered_heads, audit=LATE_WRITES))
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


__all__ = ["AttachResult", "Written", "backfill", "full_read", "recover", "rejoin", "unreconciled_epochs"]
