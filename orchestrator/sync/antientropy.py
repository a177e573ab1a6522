"""Anti-entropy: compare the copies themselves, repair what differs, and only then say *converged*.

Lanes know what they sent, not what a store holds: a replica restored from an old
backup, an emulator restarted empty or a write made behind mcrepl's back is invisible to
them. Anti-entropy is the check that can say otherwise (as Dynamo-style stores run it):

1. every location is compared with the primary by range digests (:mod:`..verify`), the
   residency policy applied (a record kept out of a location is not missing there);
2. each differing key is read everywhere and resolved the way sync resolves: the primary is
   the authority for what it holds, concurrent versions go to the dataset's resolver
   (logged as conflicts, once), and the result is a version that has seen every stored
   one, so every store's conditional write accepts it;
3. when at most ``repair_max`` keys differ, the resolved records are appended to the log
   (with retraction where a copy must leave a location) and the lanes deliver them — the
   same policy-routed, conditional, audited path as every other write — then the copies
   are compared again. *Converged* is that second comparison's verdict. Above the bound
   nothing is written: the verdict is *not converged*, with the count, for an operator.

Keys whose difference is still in flight (the lane has not reached the logged version
yet, or capture has not read the primary's change yet) are left to the lanes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Mapping

from mcrepl.adapters.base import (Record, RecordError, RecordKey, ReplicaAdapter, ReplicationMeta, meta_if_valid,
                                  tombstone_of, vector_dominates)
from mcrepl.orchestrator.clock import Clock
from mcrepl.orchestrator.state import StateStore
from mcrepl.policies.routing import RecordRouter, allowed_at

from .settling import Settling
from .writer import state_of
from .merge import union_vector
from .late_writes import LATE_WRITES, LateWriteWatch
from .recovery import is_late, late_change, recover
from .report import VerifySummary
from .resolution import settle

log = logging.getLogger("mcrepl.sync.antientropy")

#: the state-file name under which an absence at a listing-captured primary waits for its listings
_ABSENT_AT_PRIMARY = "absent-at-primary:{dataset}:{key}"


@dataclass(frozen=True)
class AntiEntropySettings:
    """``every``: how often the scheduled mode compares (``None``: never); ``repair_max``: the repair bound."""

    every: timedelta | None
    repair_max: int


def anti_entropy_settings(config: Any, dataset: str) -> AntiEntropySettings:
    """The dataset's own ``anti_entropy`` block, else ``sync.anti_entropy``."""
    own = getattr(config.datasets[dataset], "anti_entropy", None)
    spec = own or config.sync.anti_entropy
    return AntiEntropySettings(spec.every, spec.repair_max)


@dataclass(frozen=True)
class PlannedWrite:
    """One key's resolved record, and where it must be written or retracted."""

    record: Record
    reason: str
    writes: tuple[str, ...]
    retract: tuple[str, ...] = ()


@dataclass
class RepairPlan:
    """Every key anti-entropy (or ``mcrepl repair``) would fix, and the conflicts it met."""

    dataset: str
    writes: list[PlannedWrite] = field(default_factory=list)
    in_flight: int = 0
    late: int = 0                       # writes a former primary took after its rejoin, logged now
    unexamined: int = 0                 # differing keys not read before a stop was asked for
    #: "KEY at LOCATION" of items that are not records of the dataset (capture quarantines them):
    #: no record to repair from or to, so they stay differences for an operator to remove
    undecodable: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "keys": len(self.writes), "in_flight": self.in_flight, "late": self.late,
                "unexamined": self.unexamined,
                "undecodable": list(self.undecodable),
                "actions": [{"key": w.record.key.id, "reason": w.reason, "writes": list(w.writes),
                             "retract": list(w.retract), "tombstone": w.record.tombstone,
                             "version": w.record.meta.version.token if w.record.meta else None}
                            for w in self.writes]}


class AntiEntropy:
    """One comparison (and bounded repair) of one dataset; ``adapters`` lists the primary first."""

    def __init__(self, config: Any, dataset: str, state: StateStore, router: RecordRouter,
                 adapters: Mapping[str, ReplicaAdapter], settling: Settling, settings: AntiEntropySettings,
                 clock: Clock, listing: Any = None) -> None:
        self.config = config
        self.listing = listing          # lists every location at once (digest units on the executor)
        self.dataset = dataset
        self.state = state
        self.router = router
        self.adapters = dict(adapters)
        self.settling = settling
        self.settings = settings
        self.clock = clock
        self.primary = next(iter(self.adapters))
        self._pending_rows: list[Any] = []
        self._lost_at_primary: list[str] = []
        #: asked between keys while planning (a follower's SIGTERM): a stop leaves the rest
        #: unexamined and writes nothing, so a drain never waits on key-by-key reads
        self.should_stop: Callable[[], bool] = lambda: False
        #: whether planning may write to the state file (not for a dry run)
        self._writes_state = True

    def compare(self) -> Any:
        """The policy-aware verify report of every location against the primary."""
        from mcrepl.orchestrator.verify import compare_adapters
        from mcrepl.orchestrator.verify.policy import apply_policy
        report = compare_adapters(self.dataset, self.adapters, sample_size=self.config.verify.sample_size,
                                  listing=self.listing)
        apply_policy(report, self.adapters, self.router)
        return report

    def run(self, *, repair: bool, deliver: Callable[[], None], repair_max: int | None = None,
            dry_run: bool = False, record: bool = True) -> tuple[VerifySummary, RepairPlan]:
        """Compare, repair within the bound, compare again; record and audit the verdict.

        ``repair_max`` overrides the configured bound (``mcrepl repair`` is an operator's
        explicit request); ``dry_run`` plans and records nothing; ``record=False`` keeps a
        partial comparison (some locations only) out of the dataset's verify history.
        """
        started = self.clock.time()
        bound = self.settings.repair_max if repair_max is None else repair_max
        report = self.compare()
        repaired, detail = 0, ""
        plan = RepairPlan(self.dataset)
        if not report.clean:
            plan = self.plan(report, log_late=not dry_run)
            if dry_run:
                return VerifySummary(False, report.divergent, 0, report.divergent, report.withheld,
                                     "dry run: nothing written"), plan
            if not repair:
                detail = "repair not requested"
            elif plan.unexamined or self.should_stop():
                detail = f"stopped while planning ({plan.unexamined} differing keys not examined): nothing written"
            elif len(plan.writes) > bound:
                detail = f"{len(plan.writes)} keys differ, above repair_max {bound}: nothing written"
            elif plan.writes or plan.late:
                if plan.writes:
                    self.append(plan)
                deliver()
                repaired = len(plan.writes)
                report = self.compare()
            elif plan.in_flight:
                detail = f"{plan.in_flight} differences still in flight through the lanes"
            if plan.undecodable:
                shown = ", ".join(plan.undecodable[:5]) + (" …" if len(plan.undecodable) > 5 else "")
                detail = "; ".join(filter(None, [detail, f"{len(plan.undecodable)} items are not records of "
                                                         f"the dataset (see 'mcrepl quarantine list'): {shown}"]))
        elif dry_run:
            return VerifySummary(True, 0, 0, 0, report.withheld, "dry run"), plan
        summary = VerifySummary(report.clean, report.divergent if not repaired else repaired, repaired,
                                report.divergent, report.withheld, detail)
        if not record:
            return summary, plan
        with self.state.transaction():
            if summary.converged:
                # no key differs, so no absence at the primary is still waiting for its listings:
                # a marker left by a key whose delete capture since listed would stay forever
                self.state.clear_meta_prefix(_ABSENT_AT_PRIMARY.format(dataset=self.dataset, key=""))
            self.state.record_verify(self.dataset, started, summary.converged, summary.divergent, repaired,
                                     detail or ("converged" if summary.converged else f"{summary.remaining} keys differ"))
            self.state.audit.add("anti-entropy", {"dataset": self.dataset, "converged": summary.converged,
                                                  "divergent": summary.divergent, "repaired": repaired,
                                                  "remaining": summary.remaining, "withheld": summary.withheld})
        if not summary.converged:
            log.warning("anti-entropy of %s: %d keys differ after repair (%s)", self.dataset, summary.remaining,
                        detail or "see 'mcrepl verify'")
        return summary, plan

    # -- planning ----------------------------------------------------------------------------

    def plan(self, report: Any, *, log_late: bool = True) -> RepairPlan:
        """The resolved record of every differing key not still in flight.

        Late writes at former primaries are logged as they are found (``log_late=False``:
        only counted, for a dry run).
        """
        plan = RepairPlan(self.dataset)
        self._writes_state = log_late
        reasons: dict[str, str] = {}
        for pair in report.pairs:
            for d in pair.divergences:
                reasons.setdefault(d.key_id, f"{d.kind.value} on {d.other}")
        schema = self.adapters[self.primary].target.key_schema
        keys = sorted(reasons)
        former = {loc for loc in self.adapters if loc != self.primary and self.state.epochs_of(self.dataset, loc)}
        if log_late:
            for loc in sorted(former):
                self._catch_up(loc)              # late writes from change logs first, in order (.late_writes)
        heads = self.state.log.heads(self.dataset, keys)
        head_seq, horizon = self.state.log.head(self.dataset), self.state.log.horizon(self.dataset)
        # a lane behind the log's horizon delivers nothing more: the entries it lacks are gone
        # (a forced promotion's target, a replica silent past max_replica_outage)
        lagging = {loc for loc in self.adapters
                   if horizon <= self.state.lanes.get(self.dataset, loc).offset < head_seq}
        for n, key_id in enumerate(keys):
            if self.should_stop():
                plan.unexamined = len(keys) - n
                break
            key = schema.parse_id(key_id)
            stored = self._read_everywhere(key, plan)
            if stored is None:
                continue
            if self._recover_late(key, stored, heads.get(key_id), former, log_late):
                plan.late += 1                   # logged now: the lanes deliver it
                continue
            if self._in_flight(stored, heads.get(key_id), lagging):
                plan.in_flight += 1
                continue
            record = self._resolve(stored, heads.get(key_id))
            if record is None:
                continue
            record = self._not_behind_log(record, stored, heads.get(key_id))
            if record is None:
                plan.in_flight += 1
                continue
            writes = tuple(loc for loc, rec in stored.items() if not _holds(rec, record))
            allowed = allowed_at(self.router, self.dataset, record, list(self.adapters)) \
                if not record.tombstone else set(self.adapters)
            retract = tuple(loc for loc in writes if loc not in allowed and loc != self.primary
                            and stored[loc] is not None and not stored[loc].tombstone)  # type: ignore[union-attr]
            writes = tuple(loc for loc in writes if loc in allowed or loc == self.primary)
            if writes or retract:
                plan.writes.append(PlannedWrite(record, reasons[key_id], writes, retract))
        return plan

    def _read_everywhere(self, key: Any, plan: RepairPlan) -> dict[str, Record | None] | None:
        """``key`` at every location as the log knows it; ``None`` when one holds no record there."""
        stored: dict[str, Record | None] = {}
        for loc, adapter in self.adapters.items():
            try:
                stored[loc] = self._as_logged(loc, adapter.read(key))
            except RecordError:
                plan.undecodable.append(f"{key.id} at {loc}")
        return stored if len(stored) == len(self.adapters) else None

    def _recover_late(self, key: Any, stored: Mapping[str, Record | None], head: ReplicationMeta | None,
                      former: set[str], log_late: bool) -> bool:
        """Log a write a former primary took after its rejoin, instead of repairing it away."""
        found = False
        for loc in sorted(former):
            candidates = self.state.log.known_at(self.dataset, loc, [key.id]).get(key.id, [])
            if not candidates and stored[loc] is None:
                continue
            if is_late(stored[loc], state_of(stored[loc], candidates), head,
                       lambda record: self.state.log.holds_version(self.dataset, record)):
                if not log_late:
                    return True
                if key.id in (self._catch_up(loc) or ()):
                    found = True                 # read from its change log, in order (see .late_writes)
                    continue
                target = self.adapters[loc].target
                found |= bool(recover(self.state, target, self.settling, [late_change(Record(key, None),
                                                                                       stored[loc])], None, {},
                                      audit=LATE_WRITES))
        return found

    def _catch_up(self, location: str) -> set[str] | None:
        """The keys of late writes just logged from ``location``'s change log (``None``: it is not watched)."""
        adapter = self.adapters[location]
        watch = LateWriteWatch(self.state, adapter.target, adapter, self.settling, self.config.sync.batch_size,
                               self.config.sync.late_write_watch.total_seconds())
        return watch.catch_up(self.state.lanes.get(self.dataset, location).offset) if watch.active else None

    def _as_logged(self, location: str, record: Record | None) -> Record | None:
        if record is None or meta_if_valid(record) is None:
            return record
        return self.state.log.as_logged(self.dataset, location, [record])[0]

    def _in_flight(self, stored: Mapping[str, Record | None], head: ReplicationMeta | None,
                   lagging: set[str]) -> bool:
        """Whether the lanes (or capture) will close this difference on their own."""
        primary = stored[self.primary]
        if primary is not None and meta_if_valid(primary) is None and primary.body is not None:
            same = head is not None and not head.tombstone and head.content_hash == primary.digest_hash(False)
            if not same:
                return True                     # a native change capture has not logged yet
        if head is None:
            return False
        for loc, rec in stored.items():
            meta = meta_if_valid(rec) if rec is not None else None
            behind = meta is None or (meta.version != head.version and vector_dominates(head.vector, meta.vector))
            if behind and loc in lagging:
                return True
        return False

    @staticmethod
    def _not_behind_log(record: Record, stored: Mapping[str, Record | None],
                        head: ReplicationMeta | None) -> Record | None:
        """Never log a version older than the one the log already holds for the key.

        When the log's version has seen the resolved one, the location holding the log's
        version supplies it; when none does, the lanes are still delivering it.
        """
        meta = record.meta
        assert meta is not None
        if head is None or head.version <= meta.version or not vector_dominates(head.vector, meta.vector):
            return record
        return next((r for r in stored.values() if r is not None and r.meta is not None
                     and r.meta.version == head.version and meta_if_valid(r) is not None), None)

    def _primary_lost(self, head: ReplicationMeta | None) -> bool:
        """An absence at the primary that capture cannot have missed: lost data, not a delete."""
        return (head is not None and not head.tombstone
                and self.adapters[self.primary].capabilities.capture_sees_deletes)

    def _absence_confirmed(self, key_id: str, head: ReplicationMeta) -> bool:
        """Whether an absence at the primary, where the log says live, is a loss and not a delete.

        A store whose capture reads a change log reports a delete there later whatever is
        written meanwhile, and the delete wins over the refill. A capture that compares
        listings (GCS, S3) only sees a delete if the object is still gone when it lists it:
        refilled first, the delete would never be seen. So there the refill waits until two
        complete listings after the absence was first found have reported no delete (the
        first may have passed the key before the delete was made); the key stays a
        difference until then.
        """
        if self.adapters[self.primary].capabilities.incremental_capture:
            return True
        name = _ABSENT_AT_PRIMARY.format(dataset=self.dataset, key=key_id)
        drains = self.state.log.drains(self.dataset)
        token, _, since = (self.state.get_meta(name) or "").rpartition("@")
        if token == head.version.token:
            if drains < int(since) + 2:
                return False
            if self._writes_state:
                self.state.clear_meta(name)
            return True
        if self._writes_state:
            self.state.set_meta(name, f"{head.version.token}@{drains}")
        return False

    def _deleted_unlisted(self, key: RecordKey, head: ReplicationMeta) -> bool:
        """Whether an absence at a listing-captured primary is a delete no listing will report.

        A listing reports a delete only of a name its manifest holds. A version mcrepl itself
        delivered to the primary (a late write recovered from the old primary, a repair) is
        not in the manifest until a listing has seen it; deleted there before that, it is
        gone without a trace in capture. The state knows mcrepl delivered the head there while
        it was the primary: refilling it would bring a deleted record back, so it is logged as
        the delete it is, having seen the version it removed. What capture read there is in
        the manifest (its delete is listed); what the primary never held, or lost before it
        became primary (a replica holds copies: a delete there is no change), is lost, and
        refilled.
        """
        if self.adapters[self.primary].capabilities.incremental_capture:
            return False
        delivered = self.state.log.delivered_to(self.dataset, self.primary, key.id)
        return delivered is not None and delivered.meta.version == head.version and delivered.content_hash != "-"

    def _held_at_unseen_delete(self, key: RecordKey, ref: Record | None,
                               head: ReplicationMeta | None) -> ReplicationMeta | None:
        """What the primary held when the application deleted the key there, where its capture shows
        no deletes (a Cosmos DB change feed); ``None`` when that is not the question.

        Only a comparison finds such a delete, and the delete saw what that primary held — not
        every version the other copies hold: a write the old primary took that the log learnt
        only later (a late write recovered at its rejoin) is concurrent with it, and is settled
        against it and named as a conflict, never silently deleted (feed seed 300015). The last
        live state mcrepl recorded there stands for it; else, with only a delete recorded there,
        that delete (the live version the log holds never reached the primary: its lane left it
        alone there, for a state capture never read, which this delete removed; taking the delete
        to have seen the log's version deleted that unsettled, feed seed 302660); else, with
        nothing recorded, the log's live version.
        """
        if ref is not None or head is None or head.tombstone or \
                self.adapters[self.primary].capabilities.capture_sees_deletes:
            return None
        known = self.state.log.known_at(self.dataset, self.primary, [key.id]).get(key.id, [])
        live = [c.meta for c in known if c.content_hash != "-"]
        return max(live or [c.meta for c in known], key=lambda m: m.version, default=head)

    @staticmethod
    def _newest(stored: Mapping[str, Record | None], versions: Mapping[str, Record],
                head: ReplicationMeta | None) -> Record | None:
        """The stored record the log's head names, else the newest one stored anywhere.

        A former primary may hold the head's content as the native item capture read
        there (no version in the item): that content, with the head's version, is it.
        """
        if head is not None:
            for rec in versions.values():
                if rec.meta is not None and rec.meta.version == head.version:
                    return rec
            for held in stored.values():
                if held is not None and held.body is not None and meta_if_valid(held) is None \
                        and held.digest_hash(False) == head.content_hash:
                    return Record(held.key, held.body, head)
        return max(versions.values(), key=lambda r: r.meta.version, default=None)  # type: ignore[union-attr]

    def _resolve(self, stored: Mapping[str, Record | None], head: ReplicationMeta | None = None) -> Record | None:
        """The one record every location should hold for this key (see the module docstring)."""
        versions = {loc: rec for loc, rec in stored.items() if rec is not None and meta_if_valid(rec) is not None}
        for rec in versions.values():
            self.settling.clock.observe(rec.meta.version)  # type: ignore[union-attr]
        vector: dict[str, str] = {}
        for rec in versions.values():
            vector = union_vector(vector, rec.meta.vector)  # type: ignore[union-attr]
        ref = stored[self.primary]
        schema, target = self.adapters[self.primary].target.key_schema, self.adapters[self.primary].target
        if ref is not None and meta_if_valid(ref) is None and ref.body is not None:
            if head is not None and not head.tombstone and head.content_hash == ref.digest_hash(False):
                # the native item capture logged (a primary stores no version in it): that
                # version, not a new one a later write that saw it would have to beat
                return Record(ref.key, ref.body, head)
            return Record(ref.key, ref.body).stamped(self._tick(), vector, epoch=self.settling.epoch)
        if ref is None and self._primary_lost(head):
            # the log says live and the primary's capture would have reported a delete: the
            # primary lost the record (restored from a backup, wiped): refill it, never delete it
            key = next((r.key for r in stored.values() if r is not None), None)
            if head is None or key is None or not self._absence_confirmed(key.id, head):
                return None                     # a delete capture has not listed yet, maybe: wait
            if self._deleted_unlisted(key, head):
                return tombstone_of(schema, key, self._tick(), head.vector, blob_dataset=target.kind == "blob",
                                    epoch=self.settling.epoch)
            found = self._newest(stored, versions, head)
            if found is not None:
                self._lost_at_primary.append(found.key.id)
            return found
        if ref is None or ref.tombstone:
            if all(r is None or r.tombstone for r in stored.values()):
                return None
            if ref is not None and meta_if_valid(ref) is not None:
                # the primary's delete against the other versions: a version that has seen it
                # wins, a concurrent one is settled, exactly as a lane would
                return self._settle_all(ref, [r for loc, r in versions.items() if loc != self.primary])
            key = next(r.key for r in stored.values() if r is not None)
            held = self._held_at_unseen_delete(key, ref, head)
            deleted = tombstone_of(schema, key, self._tick(), vector if held is None else held.vector,
                                   blob_dataset=target.kind == "blob", epoch=self.settling.epoch)
            return deleted if held is None else self._settle_all(deleted, list(versions.values()))
        winner = self._settle_all(ref, [r for loc, r in versions.items() if loc != self.primary])
        return winner

    def _settle_all(self, ref: Record, others: list[Record]) -> Record:
        """Fold the primary's version with every other one: succession keeps the newer, concurrency settles."""
        current = ref
        for other in others:
            assert current.meta is not None and other.meta is not None
            if vector_dominates(current.meta.vector, other.meta.vector):
                continue
            if vector_dominates(other.meta.vector, current.meta.vector):
                current = other
                continue
            s = settle(self.adapters[self.primary].target, self.primary, other, current,
                       merge=self.settling.merge_fn, tick=self._tick, epoch=self.settling.epoch,
                       decrypt=self.settling.decrypt)
            self._pending_rows.append(s.row)
            current = s.record
        return current

    def _tick(self) -> Any:
        return self.settling.tick()

    def append(self, plan: RepairPlan) -> None:
        """Append the plan to the log (with its conflict rows), atomically and audited."""
        with self.state.transaction():
            self.state.check_epoch(self.dataset, self.settling.epoch)
            for row in self._pending_rows:
                self.state.journal.add_conflict(row)
            # what the primary lost is known absent there: its lane refills it, not waiting
            # for a delete capture will never read
            self.state.log.note_absent(self.dataset, self.primary, self._lost_at_primary)
            self.state.save_clock(self.settling.clock.state)
            self.state.log.append(self.dataset, [w.record for w in plan.writes], location=self.settling.primary,
                                  epoch=self.settling.epoch, retract={w.record.key.id: w.retract
                                                                      for w in plan.writes if w.retract})
            self.state.audit.add("repair", {"dataset": self.dataset, "keys": len(plan.writes),
                                            "retract": sum(len(w.retract) for w in plan.writes)})
        self._pending_rows, self._lost_at_primary = [], []


def _holds(current: Record | None, record: Record) -> bool:
    """Whether a location already holds what ``record`` says (absent counts as deleted)."""
    if record.tombstone:
        return current is None or current.tombstone
    if current is None or current.tombstone:
        return False
    meta = meta_if_valid(current)
    have = meta.comparable_hash if meta else current.digest_hash(False)
    return have == record.meta.comparable_hash  # type: ignore[union-attr]
