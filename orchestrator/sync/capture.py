"""Capture: read one page of the primary's changes, stamp native writes, log them durably.

Rules (each change is stamped exactly once, here, and nowhere else):

* a native write (no valid mcrepl metadata) gets a new HLC version from the primary's
  origin, with the key's previous version vector extended by it; a native delete
  becomes a tombstone so it replicates and can never be resurrected;
* a record carrying valid metadata from another origin is an echo of a replicated write
  and is never sent back; one from the primary's own origin that the log does not hold
  yet (a merge result written to the primary before a crash) is logged unchanged;
* a native change whose content equals the key's last logged version (a change log
  re-delivering a change, a scan overlapping a stream) is dropped as ``unchanged``;
* a change-log entry older than a full-scan read of its key (by more than
  :data:`SCAN_OVERLAP_MARGIN_MS`, which covers timestamps rounded down to the second and
  clock skew) is already reflected in what the scan captured, and is dropped too, so a
  stream replayed from its horizon after a scan never regresses a key to an old body;
* an own-origin write stamped with an epoch older than the current one *after* that
  epoch was demoted (a writer still believing in the old primary: split-brain) is
  refused and counted as ``fenced`` (:meth:`StateStore.written_after_demotion`).

The stamped page, the new cursor and the clock reading commit in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mcrepl.adapters.base import (Change, Record, ReplicaAdapter, ReplicaTarget,
                                  meta_if_valid, tombstone_of)
from mcrepl.orchestrator.hlc import HybridLogicalClock, wall_clock_ms
from mcrepl.orchestrator.observability.sync_spans import CAPTURE_PAGE_SPAN, traced
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.state.log import Head

log = logging.getLogger("mcrepl.sync.capture")

#: a change-log entry this much older than a scan's read of its key is covered by the scan
SCAN_OVERLAP_MARGIN_MS = 2_000


@dataclass
class CaptureResult:
    """What one captured page produced."""

    stamped: int = 0
    echoes: int = 0
    unchanged: int = 0
    fenced: int = 0                             # stale-epoch writes made after their epoch ended
    more: bool = False
    scanned: bool = False
    deposed: bool = False                       # the location stopped being the primary: nothing logged


class PageCapturer:
    """Captures a dataset from its current primary, one page per call."""

    def __init__(self, target: ReplicaTarget, adapter: ReplicaAdapter, state: StateStore,
                 clock: HybridLogicalClock, epoch: int, batch_size: int) -> None:
        self.target = target
        self.adapter = adapter
        self.state = state
        self.clock = clock
        self.epoch = epoch
        self.batch_size = batch_size

    def still_primary(self) -> bool:
        """Whether the durable pointer still names this location under this capturer's epoch.

        A pass takes the pointer when it starts; a promotion may happen while it runs (or while
        a capture call hangs on a cut-off primary). From then on this location is a replica:
        capturing from it would replicate whatever a zombie writer puts there.
        """
        pointer = self.state.primary(self.target.dataset, self.target.replica)
        return pointer.location == self.target.replica and pointer.epoch == self.epoch

    @traced(*CAPTURE_PAGE_SPAN)
    def capture_page(self) -> CaptureResult:
        """Capture, stamp and durably log the next page; safe to call after any crash.

        Nothing is captured or logged once the location has been deposed (see
        :meth:`still_primary`); the result says so and the pass stops capturing.
        """
        ds, location = self.target.dataset, self.target.replica
        if not self.still_primary():
            return self._deposed()
        cursor = self.state.log.cursor(ds, location)
        called_ms = wall_clock_ms()
        page = self.adapter.capture_changes(cursor, limit=self.batch_size)
        if not self.still_primary():           # promoted away while the call was out
            return self._deposed()
        heads = self.state.log.heads(ds, (c.record.key.id for c in page.changes))
        result = CaptureResult(more=page.more, scanned=page.scanned)
        records: list[Record] = []
        for change in page.changes:
            stamped = self._stamp(change, heads, result, page.scanned)
            if stamped is not None:
                heads[stamped.key.id] = Head(stamped.meta, heads[stamped.key.id].covered_ms  # type: ignore[arg-type]
                                             if stamped.key.id in heads else None)
                records.append(stamped)
        covered = called_ms if page.scanned else None
        with self.state.transaction():
            self.state.log.commit_page(ds, location, records, page.cursor, echoes=result.echoes,
                                       covered_ms=covered, covered_keys=[c.record.key.id for c in page.changes])
            self.state.save_clock(self.clock.state)
        result.stamped = len(records)
        return result

    def _deposed(self) -> CaptureResult:
        log.warning("%s is no longer the primary of %s (epoch %d ended): capture from it stopped",
                    self.target.replica, self.target.dataset, self.epoch)
        return CaptureResult(deposed=True)

    def _stamp(self, change: Change, heads: dict[str, Head], result: CaptureResult,
               scanned: bool) -> Record | None:
        record = change.record
        known = heads.get(record.key.id)
        head = known.meta if known is not None else None
        valid = meta_if_valid(record) if record.body is not None or record.tombstone else None
        if valid is not None:
            self.clock.observe(valid.version)
            if valid.version.origin != self.target.replica or (head is not None and head.version >= valid.version):
                result.echoes += 1
                return None
            if self.state.written_after_demotion(self.target.dataset, valid, self.epoch):
                result.fenced += 1              # split-brain write under a demoted epoch: never replicate
                log.warning("refused %s in %s: stamped under demoted epoch %d after its demotion",
                            record.key.id, self.target.dataset, valid.epoch)
                return None
            return record                       # our own write the log does not hold yet
        if (not scanned and known is not None and known.covered_ms is not None and change.observed_ms is not None
                and change.observed_ms < known.covered_ms - SCAN_OVERLAP_MARGIN_MS):
            result.unchanged += 1               # a full scan already read this key after the change
            return None
        previous = head or change.previous or record.meta
        if change.previous is not None:
            self.clock.observe(change.previous.version)
        deleted = change.native_delete or record.body is None
        if head is not None and head.tombstone == deleted and \
                (deleted or head.content_hash == record.digest_hash(False)):
            result.unchanged += 1
            return None
        if deleted and head is None and previous is None:
            # created and deleted before it was ever captured: nothing to replicate
            result.unchanged += 1
            return None
        version = self.clock.tick()
        vector = dict(previous.vector) if previous is not None else {}
        if deleted:
            return tombstone_of(self.target.key_schema, record.key, version, vector,
                                blob_dataset=self.target.kind == "blob", epoch=self.epoch)
        return Record(record.key, record.body).stamped(version, vector, epoch=self.epoch)
