"""Each fix of the sync-correctness issue, reverted on purpose: the simulation must notice.

A simulation that passes proves little unless it fails when the engine is wrong. Every
entry of :data:`MUTANTS` puts one of the defects users reported (or one the simulation
itself found) back into the running code with ``unittest.mock.patch``, as a context
manager; :func:`first_failure` runs seeds until the checker reports a violation.
``test_mutants.py`` asserts each mutant is caught within a bounded number of seeds, and
prints the seed that caught it, so the notes can name it and anyone can replay it.

The numbers are the items of the issue ("Sync that never hides a change"); the ``sim-``
ones are holes the simulation found while the fixes were being made.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator
from unittest import mock

from mcrepl.adapters.base import ApplyOutcome, ReplicationMeta, meta_if_valid
from mcrepl.orchestrator.hlc import ClockState

from .sim import Simulation


@dataclass(frozen=True)
class Mutant:
    """One defect put back: what it is, and the patch that reintroduces it."""

    name: str
    defect: str
    patch: Callable[[], ContextManager[Any]]
    steps: int = 40
    #: the seeds to search (``None``: the test's default range); a defect the default range
    #: does not reach names the range where the simulation found it
    seeds: range | None = None
    follow: bool = False                  # draw follow-mode rounds too
    listing: bool = False                 # capture the GCS locations by listing
    feed: bool = False                    # capture the Cosmos DB location as a latest-version feed


def _patches(*patches: ContextManager[Any]) -> ContextManager[Any]:
    stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def run() -> Iterator[None]:
        with stack:
            for p in patches:
                stack.enter_context(p)
            yield
    return run()


# -- 1: another origin's metadata taken for an echo ------------------------------------------

def _echo_by_origin() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync import capture
    original = capture.PageCapturer._stamp

    def stamp(self, change, heads, held, logged, result, read_back):  # type: ignore[no-untyped-def]
        if meta_if_valid(change.record) is not None:
            result.echoes += 1                      # "it carries metadata: someone replicated it"
            return None
        return original(self, change, heads, held, logged, result, read_back)
    return mock.patch.object(capture.PageCapturer, "_stamp", stamp)


# -- 2: a lane whose entries were truncated is not backfilled ---------------------------------

def _no_backfill() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync import engine

    def attach_at_head(lane, primary, epoch, *, kind="backfill", result=None):  # type: ignore[no-untyped-def]
        from mcrepl.orchestrator.sync.attach import AttachResult
        head = lane.state.log.head(lane.target.dataset)
        lane.state.lanes.attach(lane.target.dataset, lane.target.replica, head, epoch)
        return AttachResult(kind, head)
    return mock.patch.object(engine, "backfill", attach_at_head)


# -- 3: the clock is not restored after a restart ---------------------------------------------

def _clock_not_restored() -> ContextManager[Any]:
    from mcrepl.orchestrator.state import StateStore
    return mock.patch.object(StateStore, "load_clock", lambda self: ClockState())


# -- 4: the scan-to-log handoff decided by comparing clocks -----------------------------------

def _handoff_by_clock() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync import capture
    original = capture.PageCapturer._past_overlap

    def past_overlap(self, page, result):  # type: ignore[no-untyped-def]
        kept = original(self, page, result)
        heads = self.state.log.heads(self.target.dataset, (c.record.key.id for c in kept))
        # "older than the scan's read of the key, by more than a 2 s margin: already covered"
        return [c for c in kept if not (c.observed_ms is not None and c.record.key.id in heads
                                        and c.observed_ms < heads[c.record.key.id].version.wall_ms - 2000)]
    return mock.patch.object(capture.PageCapturer, "_past_overlap", past_overlap)


# -- 6: last-writer-wins by clock where the versions are concurrent ---------------------------

def _clock_decides() -> ContextManager[Any]:
    def decide(incoming: ReplicationMeta, stored: ReplicationMeta | None) -> ApplyOutcome:
        if stored is None:
            return ApplyOutcome.APPLIED
        if incoming.version == stored.version:
            return ApplyOutcome.REPLAYED
        return ApplyOutcome.APPLIED if incoming.version > stored.version else ApplyOutcome.STALE
    return _patches(mock.patch("mcrepl.adapters.base.interface.decide", decide),
                    mock.patch("mcrepl.adapters.memory.adapter.decide", decide))


# -- 7: a user field named like the metadata attribute is dropped -----------------------------

def _reserved_names_dropped() -> ContextManager[Any]:
    # in every adapter that keeps metadata in-band (the emulator scenarios use DynamoDB and Cosmos)
    from mcrepl.adapters.base import inband
    original = inband.split_reserved

    def split_reserved(body, reserved=inband.is_mcrepl_name):  # type: ignore[no-untyped-def]
        return original({k: v for k, v in body.items() if k not in inband.MCREPL_NAMES}, reserved)
    return _patches(*(mock.patch(f"mcrepl.adapters.{module}.split_reserved", split_reserved)
                      for module in ("memory.adapter", "dynamodb.wire", "cosmos.wire")))


# -- 8: the audit line written after the checkpoint commits -----------------------------------

def _audit_after_commit() -> ContextManager[Any]:
    from mcrepl.orchestrator.state.outbox import AuditOutbox
    held: dict[int, list[tuple[str, dict[str, Any]]]] = {}

    def add(self, kind, payload):  # type: ignore[no-untyped-def]
        held.setdefault(id(self), []).append((kind, payload))      # in memory until the flush

    def flush(self):  # type: ignore[no-untyped-def]
        entries = held.pop(id(self), [])
        for kind, payload in entries:
            if self.sink is not None:
                self.sink.append(kind, payload)
        return len(entries)
    return _patches(mock.patch.object(AuditOutbox, "add", add), mock.patch.object(AuditOutbox, "flush", flush))


# -- 9: a primary changed in the config is followed silently ----------------------------------

def _config_primary_ignored() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync.engine import SyncEngine
    original = SyncEngine.pointer

    def pointer(self, name, check_config=True):  # type: ignore[no-untyped-def]
        return original(self, name, check_config=False)
    return mock.patch.object(SyncEngine, "pointer", pointer)


# -- 10: an undecodable item is passed over silently ------------------------------------------

def _rejected_dropped() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync import capture
    original = capture.PageCapturer.commit

    def commit(self, page):  # type: ignore[no-untyped-def]
        page.rejected = []
        return original(self, page)
    return mock.patch.object(capture.PageCapturer, "commit", commit)


# -- 11: "converged" without comparing the copies ---------------------------------------------

def _verify_trusts_the_lanes() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync.antientropy import AntiEntropy, RepairPlan
    from mcrepl.orchestrator.sync.report import VerifySummary

    def run(self, *, repair, deliver, repair_max=None, dry_run=False, record=True):  # type: ignore[no-untyped-def]
        return VerifySummary(True, 0, 0, 0, 0, "lanes caught up"), RepairPlan(self.dataset)
    return mock.patch.object(AntiEntropy, "run", run)


# -- found by the simulation ------------------------------------------------------------------

def _late_writes_overwritten() -> ContextManager[Any]:
    return _patches(mock.patch("mcrepl.orchestrator.sync.writer.is_late", lambda *args: False),
                    _late_write_watch_off())


def _late_write_watch_off() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync.late_writes import LateWriteWatch
    return mock.patch.object(LateWriteWatch, "_within", lambda self, window_s: False)


def _content_age_ignored() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync import resolution

    def last_writer(parties):  # type: ignore[no-untyped-def]
        return max(parties, key=lambda r: r.meta.version)       # a re-stamped body beats what saw it
    return mock.patch.object(resolution, "_last_writer", last_writer)


def _log_truncated_past_silent_lanes() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync.engine import SyncEngine

    def truncate(self, name):  # type: ignore[no-untyped-def]
        rows = [r for r in self.state.lanes.all(name) if r.attached_epoch == self.state.current_primary(name).epoch]
        if rows:
            self.state.log.truncate_below(name, min(r.offset for r in rows))
    return mock.patch.object(SyncEngine, "_truncate_log", truncate)


def _backfill_claims_what_it_skipped() -> ContextManager[Any]:
    from mcrepl.orchestrator.state.log import CaptureLog
    return mock.patch.object(CaptureLog, "mark_unheld", lambda self, dataset, location, upto_seq: None)


def _unknown_delete_taken_for_the_logged_one() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync import capture

    def already_logged(deleted, record, head, previous):  # type: ignore[no-untyped-def]
        if head is None or head.tombstone != deleted:
            return False
        if not deleted:
            return head.content_hash == record.digest_hash(False)
        return previous is None or previous.tombstone     # nothing known held there: taken for the logged delete
    return mock.patch.object(capture, "_already_logged", already_logged)


def _deferred_claimed_held() -> ContextManager[Any]:
    from mcrepl.orchestrator.state.log import CaptureLog
    return mock.patch.object(CaptureLog, "note_unheld", lambda self, dataset, location, entries: None)


def _unlisted_delete_refilled() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync.antientropy import AntiEntropy
    return mock.patch.object(AntiEntropy, "_deleted_unlisted", lambda self, key, head: False)


def _superseded_delete_matched() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync import antientropy, writer
    original = writer.state_of

    def state_of(stored, candidates):  # type: ignore[no-untyped-def]
        if stored is None and candidates:          # any recorded delete stands for an absence
            return next((c for c in candidates if c.content_hash == "-"), None)
        return original(stored, candidates)
    return _patches(mock.patch.object(writer, "state_of", state_of),
                    mock.patch.object(antientropy, "state_of", state_of))


def _pass_ends_mid_listing() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync.capture import PageCapturer
    original = PageCapturer.commit

    def commit(self, page):  # type: ignore[no-untyped-def]
        result = original(self, page)
        result.mid_pass = False                    # the end of a listing begun earlier ends the pass
        return result
    return mock.patch.object(PageCapturer, "commit", commit)


def _unreported_delete_waits_for_capture() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync.writer import LocationWriter
    return mock.patch.object(LocationWriter, "_deletes_unreported", lambda self: False)


def _unseen_delete_saw_everything() -> ContextManager[Any]:
    # the primary's lane finds most such deletes first now (see _unreported_delete_waits_for_capture):
    # with it leaving them to capture, the comparison is what finds them, as before
    from mcrepl.orchestrator.sync.antientropy import AntiEntropy
    return _patches(mock.patch.object(AntiEntropy, "_held_at_unseen_delete", lambda self, key, ref, head: None),
                    _unreported_delete_waits_for_capture())


def _backfill_forgets_what_it_left() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync import attach

    def write(lane, records, result):  # type: ignore[no-untyped-def]
        if not records:
            return
        written = lane.writer.write(records)
        for w in written:
            result.counts[w.outcome] += 1
        with lane.state.transaction():          # what it deferred: neither marked unheld nor logged
            lane.state.log.clear_unheld(lane.target.dataset, lane.target.replica,
                                        [w.record.key.id for w in written if w.outcome in ("applied", "replayed")])
        conflicts = [(w.record, w) for w in written
                     if w.result is not None and w.result.outcome is ApplyOutcome.CONFLICT]
        if conflicts:
            lane.settle_found(conflicts, result.counts)
    # with the primary's lane leaving an absence at a feed-captured primary to capture, as it once did
    # (it finds the late delete there itself now, when it is that location's next write of the key)
    return _patches(mock.patch.object(attach, "_write", write), _unreported_delete_waits_for_capture())


def _unknown_version_at_primary_written() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync import writer
    original = writer.state_of

    def state_of(stored, candidates):  # type: ignore[no-untyped-def]
        found = original(stored, candidates)
        if found is writer.ABSENT and stored is not None:     # "the store's condition decides", at the primary too
            return writer.Captured(found.location, found.content_hash, found.meta)
        return found
    return mock.patch.object(writer, "state_of", state_of)


def _redelivered_state_relogged() -> ContextManager[Any]:
    import dataclasses as dc

    from mcrepl.orchestrator.sync import recovery
    original = recovery.unlogged_version

    def unlogged_version(target, settling, change, head, previous):  # type: ignore[no-untyped-def]
        if previous is not None and not change.native_delete:  # only the log's content counts as no change
            previous = dc.replace(previous, content_hash="mutant")
        return original(target, settling, change, head, previous)
    return mock.patch.object(recovery, "unlogged_version", unlogged_version)


def _promotion_forgets_what_it_held() -> ContextManager[Any]:
    from mcrepl.orchestrator.state.log import CaptureLog
    return mock.patch.object(CaptureLog, "_held_as_primary", lambda self, dataset, new: None)


def _overwritten_delivery_taken_for_an_echo() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync.capture import PageCapturer
    return mock.patch.object(PageCapturer, "_settle_overwritten", lambda self, overwritten, page: None)


def _unseen_delete_saw_the_undelivered_head() -> ContextManager[Any]:
    from mcrepl.orchestrator.sync.antientropy import AntiEntropy

    def held(self, key, ref, head):  # type: ignore[no-untyped-def]
        if ref is not None or head is None or head.tombstone or \
                self.adapters[self.primary].capabilities.capture_sees_deletes:
            return None
        known = [c.meta for c in self.state.log.known_at(self.dataset, self.primary, [key.id]).get(key.id, [])
                 if c.content_hash != "-"]
        return max(known, key=lambda m: m.version, default=head)   # a recorded delete ignored
    return mock.patch.object(AntiEntropy, "_held_at_unseen_delete", held)


def _delivery_not_held() -> ContextManager[Any]:
    from mcrepl.orchestrator.state.log import CaptureLog
    return mock.patch.object(CaptureLog, "_delivered", lambda self, dataset, location, key_ids: {})


MUTANTS: dict[str, Mutant] = {m.name: m for m in [
    Mutant("1-echo-by-origin", "records carrying another origin's metadata are taken for echoes", _echo_by_origin),
    Mutant("2-no-backfill", "a lane behind the log's horizon starts at the head without a backfill", _no_backfill),
    Mutant("3-clock-not-restored", "the hybrid logical clock restarts from zero on every start",
           _clock_not_restored),
    Mutant("4-handoff-by-clock", "scan-to-log handoff drops changes older than the scan by the clocks",
           _handoff_by_clock),
    Mutant("6-clock-decides", "stores overwrite concurrent versions by clock instead of reporting a conflict",
           _clock_decides),
    Mutant("7-reserved-names-dropped", "a user field named _mcrepl or _mcrepl_fields is dropped",
           _reserved_names_dropped),
    Mutant("8-audit-after-commit", "the audit line is written after the checkpoint commits", _audit_after_commit),
    Mutant("9-config-primary-ignored", "a primary changed in the config is followed without a promotion",
           _config_primary_ignored),
    Mutant("10-rejected-dropped", "undecodable items are passed over without a quarantine row", _rejected_dropped),
    Mutant("11-verify-trusts-lanes", "anti-entropy says converged without comparing the copies",
           _verify_trusts_the_lanes),
    Mutant("sim-late-writes", "a demoted primary's writes after its rejoin are overwritten",
           _late_writes_overwritten, steps=60),
    # a late write the application deleted again leaves the old primary as mcrepl left it:
    # only its change log shows the pair (follow seed 50977 found it)
    Mutant("sim-late-write-watch-off", "a former primary's change log is not read after its rejoin, so a late "
           "write removed again by a late delete is overwritten unseen", _late_write_watch_off, steps=60,
           seeds=range(50977, 50978), follow=True),
    Mutant("sim-content-age", "a settlement's re-stamped body wins last-writer-wins over writes that saw it",
           _content_age_ignored, steps=60),
    # since anti-entropy repairs among the copies that answer, seeds 0-149 heal what this defect
    # breaks before the end; 250 (and follow seed 301) still see it
    Mutant("sim-truncate-past-silent", "the log is truncated past a lane that did not run this pass",
           _log_truncated_past_silent_lanes, steps=60, seeds=range(240, 260)),
    Mutant("sim-backfill-claims-skipped", "a backfilled lane is taken to hold every key logged before its start, "
           "including those the primary held in another state or not at all", _backfill_claims_what_it_skipped,
           steps=60, seeds=range(320, 335), follow=True),
    # a location promoted before it received the log holds versions mcrepl knows nothing of; a
    # native delete there (no old image) is a delete of its own (seed 4366 at 120 steps found it)
    Mutant("sim-unknown-delete-dropped", "a native delete at a primary that held something mcrepl knows nothing "
           "of is taken for the log's delete, and late writes come back over it unsettled",
           _unknown_delete_taken_for_the_logged_one, steps=120, seeds=range(4366, 4367)),
    Mutant("sim-deferred-claimed-held", "a lane that leaves a native write alone at the primary is taken, once "
           "that location is demoted, to hold the entry it passed over", _deferred_claimed_held, steps=120,
           seeds=range(4816, 4817)),
    Mutant("sim-unlisted-delete-refilled", "a record mcrepl delivered to a listing-captured primary and the "
           "application deleted there before a listing saw it is refilled", _unlisted_delete_refilled,
           steps=60, seeds=range(200028, 200029), listing=True),
    Mutant("sim-superseded-delete-matched", "an absence at a former primary is taken for a delete mcrepl recorded "
           "there, though a version it delivered there later had seen that delete: the application's late delete "
           "of that version is refilled", _superseded_delete_matched, steps=60, seeds=range(202762, 202763),
           listing=True),
    Mutant("sim-pass-ends-mid-listing", "a sync pass that goes on with a listing a follow round began ends with "
           "it and says caught up, though a change behind that listing's position is not logged yet",
           _pass_ends_mid_listing, steps=60, seeds=range(250421, 250422), follow=True, listing=True),
    Mutant("sim-unseen-delete-saw-everything", "a delete a comparison finds at a primary whose capture shows no "
           "deletes (a Cosmos DB feed) is taken to have seen every version the copies hold, and a concurrent "
           "late write recovered from the old primary is deleted unsettled (the primary's lane leaving such deletes to "
           "capture, so that a comparison is what finds them)", _unseen_delete_saw_everything,
           steps=60, seeds=range(300015, 300016), feed=True),
    Mutant("sim-backfill-forgets-deferred", "a rejoin's backfill counts what the writer left alone at a former "
           "primary (a late delete) and forgets it: taken for holding the log's delete, the location's next write "
           "passes for its successor (the primary's lane leaving an absence at a feed-captured primary to capture)",
           _backfill_forgets_what_it_left, steps=60, seeds=range(300221, 300222),
           feed=True),
    Mutant("sim-unknown-version-at-primary-written", "a lane writes over an application's own versioned write at the "
           "primary when nothing is recorded there for the key, before capture has read it",
           _unknown_version_at_primary_written, steps=120, seeds=range(300836, 300837), feed=True),
    Mutant("sim-redelivered-state-relogged", "a former primary's change feed reporting again an item in the state "
           "mcrepl knows it holds is logged as a new late write, which comes back over later writes",
           _redelivered_state_relogged, steps=120, seeds=range(300943, 300944), feed=True),
    Mutant("sim-promotion-forgets-what-it-held", "a location promoted while marked as not holding the log's entries "
           "(its rejoin's backfill stopped mid-way) is taken to hold nothing, not what it held as primary: an "
           "application's delete there no feed reports looks like a key it never had, and a delivery overwrites it",
           _promotion_forgets_what_it_held, steps=60, seeds=range(301762, 301763), feed=True),
    Mutant("sim-unreported-delete-waits", "the primary's lane leaves an absence at a primary whose capture shows "
           "no deletes for capture, which never reports it: the delete is never logged, and a concurrent late "
           "write is never settled against it", _unreported_delete_waits_for_capture, steps=120,
           seeds=range(300979, 300980), feed=True),
    Mutant("sim-overwriting-delivery-echoed", "a delivery the primary took over an application's delete capture had "
           "not read yet is read back as an echo of mcrepl's own write: the delete is silently undone",
           _overwritten_delivery_taken_for_an_echo, steps=60, seeds=range(302170, 302171), feed=True),
    Mutant("sim-unseen-delete-saw-undelivered", "a delete a comparison finds at a primary whose capture shows no "
           "deletes, where only a delete is recorded, is taken to have seen the log's live version, which never "
           "reached that primary: that late write is deleted unsettled", _unseen_delete_saw_the_undelivered_head,
           steps=60, seeds=range(302660, 302661), feed=True),
    Mutant("sim-delivery-not-held", "a native write at a listing-captured primary (no old image) is taken to "
           "succeed the state capture last read there, not the settlement mcrepl delivered since: the write "
           "loses to an older body it had seen", _delivery_not_held, steps=60, seeds=range(251159, 251160),
           follow=True, listing=True),
]}


def first_failure(mutant: Mutant, seeds: range) -> tuple[int, list[str]] | None:
    """The first seed whose schedule the checker fails with ``mutant`` in place, and what it said."""
    with mutant.patch():
        for seed in mutant.seeds or seeds:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    violations = Simulation(seed, Path(tmp), steps=mutant.steps, follow=mutant.follow,
                                            listing=mutant.listing, feed=mutant.feed).run()
                except Exception as exc:  # noqa: BLE001 - a defect may also crash the engine: caught too
                    violations = [f"the engine raised {type(exc).__name__}: {exc}"]
            if violations:
                return seed, violations
    return None


__all__ = ["MUTANTS", "Mutant", "first_failure"]
