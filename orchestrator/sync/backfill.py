"""Backfill: a replica added to a dataset after capture began gets what the log no longer holds.

The capture log is truncated once every existing lane has applied an entry, so a lane
that starts later cannot replay history from it. Before such a lane's first pass, the
primary is scanned once and every record whose content matches the version the log last
stamped for its key (the ``heads`` index) is written to the new replica *with that same
version* — so the new replica holds exactly what the others hold, version for version.
Records the scan sees in any other state (changed since, not captured yet, deleted) are
left to the log: the lane starts at the log head noted before the scan, and capture brings
those changes in after it. Conditional apply makes a crash mid-backfill harmless: the lane
row is created only at the end, so the next pass simply backfills again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mcrepl.adapters.base import Record, ReplicaAdapter, meta_if_valid
from mcrepl.orchestrator.state import StateStore
from mcrepl.policies.routing import RecordRouter

log = logging.getLogger("mcrepl.sync.backfill")


@dataclass
class BackfillResult:
    """What a backfill wrote, as lane counters, and where the lane starts."""

    start_offset: int
    counts: dict[str, int] = field(default_factory=lambda: {"applied": 0, "replayed": 0, "stale": 0,
                                                            "rejected": 0, "withheld": 0})


def needs_backfill(state: StateStore, dataset: str, replica: str) -> bool:
    """A lane never seen before, for a dataset whose log has already dropped history.

    While the log still holds every entry (say, a first pass killed before any lane
    committed), a new lane replays it from the start instead: same result, exact counts.
    """
    return not state.lanes.exists(dataset, replica) and state.log.truncated(dataset)


def backfill(dataset: str, primary: ReplicaAdapter, replica: ReplicaAdapter, state: StateStore,
             router: RecordRouter, batch_size: int) -> BackfillResult:
    """Copy the primary's current, already-logged records to ``replica``; then open its lane."""
    name = replica.target.replica
    result = BackfillResult(state.log.head(dataset))
    cursor, scanning = None, False
    while True:
        page = primary.capture_changes(cursor, limit=batch_size)
        if scanning and not page.scanned:
            break                                   # the full scan is over (a change log follows)
        scanning = scanning or page.scanned
        heads = state.log.heads(dataset, (c.record.key.id for c in page.changes))
        batch: list[Record] = []
        for change in page.changes:
            record, head = change.record, heads.get(change.record.key.id)
            if head is None or head.meta.tombstone or record.body is None:
                continue                            # not logged yet, or deleted: the log brings it
            own = meta_if_valid(record)
            if own is not None and own.version == head.meta.version:
                batch.append(record)
            elif own is None and record.digest_hash(False) == head.meta.content_hash:
                batch.append(Record(record.key, record.body, head.meta))
        _apply(dataset, name, batch, replica, router, result)
        cursor = page.cursor
        if not page.more:
            break
    state.lanes.commit_batch(dataset, name, result.start_offset, result.counts)
    log.info("backfilled %s at %s: %s; lane starts at log entry %d", dataset, name, result.counts,
             result.start_offset)
    return result


def _apply(dataset: str, name: str, batch: list[Record], replica: ReplicaAdapter, router: RecordRouter,
           result: BackfillResult) -> None:
    sending = []
    for record in batch:
        routed = router.route(dataset, record, [name]).send.get(name)
        if routed is None:
            result.counts["withheld"] += 1
        else:
            sending.append(routed)
    for outcome in replica.apply_batch(sending) if sending else []:
        result.counts[outcome.outcome.value] += 1
