"""Capture: read one page of the primary's changes, stamp native writes, log them durably.

Rules (each change is stamped exactly once, here, and nowhere else):

* a native write (no valid mcrepl metadata) gets a new HLC version under the primary's
  origin, with the vector of the version it overwrote *at the primary* extended by it (the
  store's old image, stale metadata on the item, or what mcrepl last read or delivered
  there — never simply the log's latest version, which the writer may not have seen: a
  write that did not see a version mcrepl logged is concurrent with it, and the lanes
  settle the conflict); a native delete becomes a tombstone so it replicates and can
  never be resurrected;
* a record carrying valid metadata — from any origin — is logged unchanged unless the log
  already holds that version or a later one that has seen it (an echo of our own write);
  a version concurrent with the log's is logged too, and the lanes settle the conflict. A
  replica promoted to primary, or a fresh state pointed at an old replica, therefore logs
  every record it holds for the replicas that lack them; whether a replica already holds
  one is for its conditional apply to say, never for capture to guess;
* a native change whose content equals the key's last logged version (a change log
  re-delivering a change) is dropped as ``unchanged``;
* the scan-to-change-log handoff is decided by position, never by timestamps: the change
  log is read from a position taken before the scan, and the changes made while the scan
  ran (the *overlap*, which the adapter marks) are held back until the window closes; then
  each key keeps only what follows the state the scan read. No key ever goes back to an
  older body, and neither this host's clock nor the store's decides what is logged;
* an item the adapter could not decode is quarantined at the primary and passed over.

The stamped page, the new cursor, quarantine rows and the clock reading commit in one
transaction. The clock is the engine's one hybrid logical clock, restored from the state
file on start, so a wall clock stepped back never issues a version below one issued before.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

from mcrepl.adapters.base import (Change, ChangePage, Record, ReplicaAdapter, ReplicaTarget, ReplicationMeta,
                                  meta_if_valid, vector_dominates)
from mcrepl.orchestrator.hlc import HybridLogicalClock
from mcrepl.orchestrator.observability.sync_spans import CAPTURE_PAGE_SPAN, traced
from mcrepl.orchestrator.state import StateStore
from mcrepl.policies.routing import PassThroughRouter, RecordRouter, allowed_at

from .merge import union_vector
from .recovery import repeats_logged_delete, stamp_native
from .resolution import settle
from .settling import Settling

log = logging.getLogger("mcrepl.sync.capture")


@dataclass
class CaptureResult:
    """What one captured page produced."""

    stamped: int = 0
    echoes: int = 0
    unchanged: int = 0
    quarantined: int = 0                        # items the adapter could not decode
    staged: int = 0                             # held back while a scan's overlap window is open
    more: bool = False
    scanned: bool = False
    mid_pass: bool = False                      # a listing pass begun before this page (ChangePage.mid_pass)
    deposed: bool = False                       # the location stopped being the primary: nothing logged


class PageCapturer:
    """Captures a dataset from its current primary: ``read`` runs anywhere, ``commit`` owns the state.

    The split lets a worker perform the store call (:meth:`ReplicaAdapter.capture_changes`)
    while stamping and logging stay with the state store's owner.
    """

    def __init__(self, target: ReplicaTarget, state: StateStore, clock: HybridLogicalClock, epoch: int,
                 router: RecordRouter | None = None, replicas: Sequence[str] = (),
                 settling: Settling | None = None, ordered: bool = True) -> None:
        self.target = target
        self.state = state
        self.clock = clock
        self.epoch = epoch
        self.router = router
        self.replicas = list(replicas)
        self.settling = settling          # settles a delivery read back over an unread change
        #: capture reads a change log in the store's order, deletes and mcrepl's deliveries included
        #: (a DynamoDB stream); a listing or a latest-version feed does not (see CaptureLog.held_at).
        #: :meth:`capture_page` takes it from the adapter it reads
        self.ordered = ordered

    def still_primary(self) -> bool:
        """Whether the durable pointer still names this location under this capturer's epoch.

        A pass takes the pointer when it starts; a promotion may happen while it runs (or while
        a capture call hangs on a cut-off primary). From then on this location is a replica:
        capturing from it would replicate whatever a zombie writer puts there.
        """
        pointer = self.state.primary(self.target.dataset, self.target.replica)
        return pointer.location == self.target.replica and pointer.epoch == self.epoch

    def cursor(self) -> dict | None:  # type: ignore[type-arg]
        """Where the next page starts."""
        return self.state.log.cursor(self.target.dataset, self.target.replica)

    @traced(*CAPTURE_PAGE_SPAN)
    def capture_page(self, adapter: ReplicaAdapter, limit: int = 500) -> CaptureResult:
        """Read the next page from ``adapter`` (the primary) and :meth:`commit` it."""
        if not self.still_primary():
            return self.deposed()
        page = adapter.capture_changes(self.cursor(), limit=limit)
        self.ordered = adapter.capabilities.incremental_capture and adapter.capabilities.capture_sees_deletes
        return self.commit(page)

    def commit(self, page: ChangePage) -> CaptureResult:
        """Stamp ``page`` and log it with its cursor, atomically; safe after any crash.

        Nothing is logged once the location has been deposed (see :meth:`still_primary`);
        the result says so and the pass stops capturing.
        """
        ds, location = self.target.dataset, self.target.replica
        if not self.still_primary():
            return self.deposed()
        result = CaptureResult(more=page.more, scanned=page.scanned, mid_pass=page.mid_pass)
        with self.state.transaction():
            changes = self._past_overlap(page, result)
            heads = self.state.log.heads(ds, (c.record.key.id for c in changes))
            held = self.state.log.held_at(ds, (c.record.key for c in changes), location,
                                          delivered=not self.ordered)
            logged = self.state.log.logged_versions(ds, [c.record for c in changes if meta_if_valid(c.record)])
            records: list[Record] = []
            read_back: dict[str, Record] = {}      # keys whose last change here logged nothing
            overwritten: list[tuple[Record, ReplicationMeta]] = []
            for change in changes:
                stamped = self._stamp(change, heads, held, logged, result, read_back, overwritten)
                if stamped is not None:
                    assert stamped.meta is not None
                    heads[stamped.key.id] = held[stamped.key.id] = stamped.meta
                    read_back.pop(stamped.key.id, None)
                    records.append(stamped)
            for error in page.rejected:
                self.state.journal.add_quarantine(ds, location, "capture", error.located(
                    dataset=ds, target=location))
            result.quarantined = len(page.rejected)
            allowed, retract = self._residency(records)
            self.state.log.commit_page(ds, location, self.epoch, records, page.cursor, echoes=result.echoes,
                                       allowed=allowed, retract=retract)
            self.state.log.note_read(ds, location, list(read_back.values()))
            self._settle_overwritten(overwritten, records)
            if not page.more:
                self.state.log.note_drained(ds)
            self.state.save_clock(self.clock.state)
            if records or page.rejected:
                self.state.audit.add("capture", {"dataset": ds, "location": location, "epoch": self.epoch,
                                                 "logged": len(records), "quarantined": len(page.rejected),
                                                 "head": self.state.log.head(ds)})
        result.stamped = len(records)
        self.state.audit.flush()
        return result

    def _settle_overwritten(self, overwritten: list[tuple[Record, ReplicationMeta]], page: list[Record]) -> None:
        """Settle each delivery the primary took over a change capture had not read when its lane
        decided it, against that change; the settlement and its conflict row are logged.

        The lane reads a key at the primary before writing; an application's delete there that
        capture has not read leaves nothing, and with nothing recorded for the key the write
        goes through. The store then holds the delivery *after* the delete, which it never saw:
        taken for an echo, the delete was silently undone — and every later write there, stamped
        under the primary's origin, claimed to have seen it (log-capture seed 302170). It is the
        conflict the lane would have settled had capture been ahead, settled here instead.
        """
        if self.settling is None or not overwritten:
            return
        ds, location = self.target.dataset, self.target.replica
        in_page = {r.meta.version: r for r in page if r.meta is not None}
        settlements = []
        for delivered, known in overwritten:
            stored = in_page.get(known.version)
            if stored is None:
                entry = self.state.log.latest(ds, delivered.key)
                stored = entry.record if entry is not None and entry.record.meta is not None \
                    and entry.record.meta.version == known.version else None
            if stored is None or self.state.journal.pair_logged(ds, delivered.key.id, known.version.token,
                                                                  delivered.meta.version.token):  # type: ignore[union-attr]
                continue
            s = settle(self.target, location, stored, delivered, merge=self.settling.merge_fn,
                       tick=self.settling.tick, epoch=self.settling.epoch, decrypt=self.settling.decrypt)
            if self.state.journal.add_conflict(s.row):
                settlements.append(s.record)
        if settlements:
            self.state.log.append(ds, settlements, location=self.settling.primary, epoch=self.settling.epoch)

    def _past_overlap(self, page: ChangePage, result: CaptureResult) -> list[Change]:
        """The changes to stamp now: an open overlap window is staged; a closing one is settled.

        When the window closes, each key keeps only the changes after the last one whose state
        equals what the scan read (the key's head): earlier ones are older than that read.
        A key the scan never read keeps all of its changes.
        """
        ds, location = self.target.dataset, self.target.replica
        if page.overlap and page.more:
            self.state.staging.add(ds, location, page.changes)
            result.staged = len(page.changes)
            return []
        if not page.overlap and not self.state.staging.pending(ds, location):
            return list(page.changes)
        window = self.state.staging.take(ds, location) + (list(page.changes) if page.overlap else [])
        heads = self.state.log.heads(ds, (c.record.key.id for c in window))
        last_read: dict[str, int] = {}
        for i, change in enumerate(window):
            if _is_state(change, heads.get(change.record.key.id)):
                last_read[change.record.key.id] = i
        kept = [c for i, c in enumerate(window) if i > last_read.get(c.record.key.id, -1)]
        result.unchanged += len(window) - len(kept)
        return kept + ([] if page.overlap else list(page.changes))

    def _residency(self, records: list[Record]) -> tuple[dict[str, set[str]] | None, dict[str, set[str]]]:
        """Where each record may live, and the locations its key's previous version must leave."""
        if self.router is None or isinstance(self.router, PassThroughRouter) or not records:
            return None, {}
        ds = self.target.dataset
        before = self.state.log.allowed(ds, (r.key.id for r in records))
        allowed: dict[str, set[str]] = {}
        retract: dict[str, set[str]] = {}
        for record in records:
            now = set(self.replicas) if record.tombstone else allowed_at(self.router, ds, record, self.replicas)
            gone = before.get(record.key.id, set()) - now
            if gone:
                retract[record.key.id] = gone
            allowed[record.key.id] = before[record.key.id] = now
        return allowed, retract

    def deposed(self) -> CaptureResult:
        """The result of a capture step that found its location demoted (nothing read, nothing logged)."""
        log.warning("%s is no longer the primary of %s (epoch %d ended): capture from it stopped",
                    self.target.replica, self.target.dataset, self.epoch)
        return CaptureResult(deposed=True)

    def _stamp(self, change: Change, heads: dict, held: dict, logged: set[tuple[str, str]],  # type: ignore[type-arg]
               result: CaptureResult, read_back: dict[str, Record],
               overwritten: list[tuple[Record, ReplicationMeta]]) -> Record | None:
        """The change as a version to log, or ``None`` (then ``read_back`` records the state read).

        ``overwritten`` collects mcrepl's deliveries read back over a state they never saw (see
        :meth:`_settle_overwritten`), with that state.
        """
        record = change.record
        head = heads.get(record.key.id)
        valid = meta_if_valid(record) if record.body is not None or record.tombstone else None
        if valid is not None:
            self.clock.observe(valid.version)
            known = held.get(record.key.id)
            if (record.key.id, valid.version.token) in logged and known is not None and not _seen(valid, known):
                overwritten.append((record, known))
            if (record.key.id, valid.version.token) in logged or \
                    (head is not None and vector_dominates(head.vector, valid.vector)):
                result.echoes += 1              # the log already holds this version or one that saw it
                held[record.key.id] = valid     # and the primary held it from here on
                read_back[record.key.id] = record
                return None
            if known is not None and not vector_dominates(valid.vector, known.vector):
                # it replaced what the primary held (the store serialised the two), though its
                # writer could not tell which version that was (a native item has none): log it
                # as the successor it is
                meta = dataclasses.replace(valid, vector=union_vector(valid.vector, known.vector))
                return dataclasses.replace(record, meta=meta)
            return record                       # an mcrepl-stamped version the log does not hold yet
        # the version this write overwrote at the primary: its vector is what the writer saw
        previous = change.previous or record.meta or held.get(record.key.id)
        if change.previous is not None:
            self.clock.observe(change.previous.version)
        deleted = change.native_delete or record.body is None
        if _already_logged(deleted, record, head, previous):
            # the logged state again: a change read twice, or the same content written again
            # (which is not the head's history, so what the primary is known to hold stays)
            result.unchanged += 1
            return None
        version = self.clock.tick(self.target.replica)
        return stamp_native(self.target, change, version, previous.vector if previous is not None else {},
                            self.epoch)


def _seen(record: ReplicationMeta, held: ReplicationMeta) -> bool:
    """Whether the version ``record`` is ``held`` or has seen it (or ``held`` has seen it: an older
    delivery coming back)."""
    return record.version == held.version or vector_dominates(record.vector, held.vector) \
        or vector_dominates(held.vector, record.vector)


def _already_logged(deleted: bool, record: Record, head: ReplicationMeta | None,
                    previous: ReplicationMeta | None) -> bool:
    """Whether a native change leaves its key in the state the log's head records, as nothing new.

    A write of the head's content is; a delete is when it repeats the log's delete
    (:func:`.recovery.repeats_logged_delete`).
    """
    if deleted:
        return repeats_logged_delete(head, previous)
    return head is not None and not head.tombstone and head.content_hash == record.digest_hash(False)


def _is_state(change: Change, head: ReplicationMeta | None) -> bool:
    """Whether ``change`` left its key in exactly the state the log's head records."""
    if head is None:
        return False
    record = change.record
    valid = meta_if_valid(record) if record.body is not None or record.tombstone else None
    if valid is not None:
        return valid.version == head.version
    if change.native_delete or record.body is None:
        return head.tombstone
    return not head.tombstone and head.content_hash == record.digest_hash(False)
