"""The one way mcrepl writes to a location: policy routing, vector padding, conditional apply.

Every write to a replica or a primary — a lane's batch, a backfill, a repair, a
reconciliation, a conflict resolution, anti-entropy — goes through :class:`LocationWriter`.
That makes it the single enforcement point of the policy engine: residency decides
whether a record may be written there at all (withheld records are never sent), field
encryption shapes what is sent; a test walks the code base and fails if any other module
calls an adapter's ``apply_batch``.

Before sending, each record's version vector is padded with every origin the dataset has
known (empty token = nothing seen from it), so the store's condition also refuses to
overwrite a version from an origin the writer never heard of: such a version is a
conflict for the engine to settle, never silently lost.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

from mcrepl.adapters.base import (ApplyOutcome, ApplyResult, Change, McreplError, Record, ReplicaAdapter,
                                  ReplicationMeta, Version, decide, meta_if_valid, vector_dominates)
from mcrepl.adapters.base.interface import result_of
from mcrepl.orchestrator.state.log import Captured

from .recovery import is_late, late_change
from mcrepl.policies.routing import RecordRouter, Withheld


@dataclass(frozen=True)
class Written:
    """What happened to one record: sent (``result``), withheld (``withheld``) or deferred.

    ``sent`` is the record as it went to the store (after encryption); ``deferred`` means
    the location holds a native change mcrepl has not captured yet, which must win.
    """

    record: Record
    sent: Record | None = None
    result: ApplyResult | None = None
    withheld: Withheld | None = None
    deferred: bool = False
    late: Change | None = None      # deferred because a former primary took a write of its own here

    @property
    def outcome(self) -> str:
        """``applied``/``replayed``/``stale``/``rejected``/``conflict``, ``withheld`` or ``deferred``."""
        if self.result is not None:
            return self.result.outcome.value
        return "withheld" if self.withheld is not None else "deferred"


class LocationWriter:
    """Writes records of one dataset to one location under the policy router.

    ``origins`` returns the dataset's known origins (for vector padding).
    ``captured`` returns the states mcrepl knows the location held per key
    (:meth:`CaptureLog.known_at`). At the primary the writer reads each key first and
    leaves it alone when it holds a state capture has not read yet — a change on its way
    into the log, newer than anything mcrepl could send; ``delivered`` is told what landed
    there. At a ``former_primary`` it reads each key first too: an item mcrepl did not
    write there is a late write, handed back (:attr:`Written.late`) to be logged, not
    overwritten; ``heads`` and ``logged`` (whether the log holds a record's version) tell
    mcrepl's own items apart.
    """

    def __init__(self, dataset: str, location: str, adapter: ReplicaAdapter, router: RecordRouter,
                 origins: Callable[[], set[str]] = set, *,
                 captured: Callable[[list[str]], dict[str, list[Captured]]] | None = None,
                 delivered: Callable[[list[Record]], None] | None = None, is_primary: bool = False,
                 former_primary: bool = False,
                 heads: Callable[[list[str]], dict[str, ReplicationMeta]] | None = None,
                 logged: Callable[[Record], bool] = lambda record: False) -> None:
        self.dataset = dataset
        self.location = location
        self.adapter = adapter
        self.router = router
        self.origins = origins
        self.captured = captured
        self.delivered = delivered
        self.is_primary = is_primary
        self.former_primary = former_primary and not is_primary
        self.heads = heads
        self.logged = logged

    def write(self, records: Sequence[Record]) -> list[Written]:
        """Route, pad and apply ``records``; one :class:`Written` per record, in order."""
        out: list[Written | None] = [None] * len(records)
        sending: list[tuple[int, Record]] = []
        known = self.origins()
        for i, record in enumerate(records):
            decision = self.router.route(self.dataset, record, [self.location])
            routed = decision.send.get(self.location)
            if routed is None:
                error = decision.quarantined.get(self.location)
                if error is not None:
                    # it cannot be routed safely (no routing value, a ciphertext that does not
                    # verify): nothing is written, the lane quarantines it for this location
                    out[i] = Written(record, result=ApplyResult(record.key, ApplyOutcome.REJECTED, error=error))
                    continue
                out[i] = Written(record, withheld=decision.withheld.get(self.location)
                                 or Withheld("policy", "the router sent the record nowhere"))
                continue
            sending.append((i, pad_vector(routed, known)))
        if self.captured is not None and sending:
            sending = self._decide_native(sending, out, records)
        results = self.adapter.apply_batch([r for _, r in sending]) if sending else []
        if len(results) != len(sending):
            raise McreplError(f"{self.location} answered {len(results)} results for {len(sending)} records of "
                              f"dataset {self.dataset}; the adapter breaks the apply_batch contract")
        for (i, sent), result in zip(sending, results):
            out[i] = Written(records[i], sent, result)
        if self.delivered is not None:
            self.delivered([records[i] for (i, _), r in zip(sending, results)
                            if r.outcome in (ApplyOutcome.APPLIED, ApplyOutcome.REPLAYED)])
        return [w for w in out if w is not None]

    def _decide_native(self, sending: list[tuple[int, Record]], out: list[Written | None],
                       records: Sequence[Record]) -> list[tuple[int, Record]]:
        """Where this location holds a native item mcrepl read, its version is the one mcrepl gave it.

        A native item carries no version a store could compare; capture (or a rejoin) gave
        it one, kept in :meth:`CaptureLog.captured`. Against that version a concurrent
        record is a conflict to settle, never an overwrite. At the primary, a native state
        mcrepl has not read yet is left alone (deferred): it is newer than anything logged.
        Only keys last read at this location are read first, so a replica that was never
        primary costs no extra request. At a former primary every key is read first: an
        item there that mcrepl did not write is a late write (see :mod:`.recovery`).
        """
        assert self.captured is not None
        ids = [r.key.id for _, r in sending]
        seen = self.captured(ids)
        heads: dict[str, ReplicationMeta] | None = None

        def head_of(key_id: str) -> ReplicationMeta | None:
            # the log's versions, read once per batch and only when a decision needs them (at
            # the primary that is rare: an item in a state mcrepl never noted there)
            nonlocal heads
            if heads is None:
                heads = self.heads(ids) if self.heads is not None else {}
            return heads.get(key_id)
        keep = []
        unseen_deleted: set[str] = set()     # keys whose delete no capture reports was handed back
        reading = [(i, record) for i, record in sending
                   if self.is_primary or self.former_primary or seen.get(record.key.id)]
        # every read of the batch in one call (one BatchGetItem, one read unit): nothing is
        # written before the decisions below, so reading all first reads what one-by-one did
        found = dict(zip((i for i, _ in reading), self.adapter.read_many([r.key for _, r in reading])))
        for i, record in sending:
            candidates = seen.get(record.key.id, [])
            if i not in found:
                keep.append((i, record))          # nothing of this location's own to protect
                continue
            stored = found[i]
            match = state_of(stored, candidates)
            if self.former_primary and is_late(stored, match, head_of(record.key.id), self.logged):
                # an application still writing to the demoted primary: log it, never overwrite it
                out[i] = Written(records[i], deferred=True, late=late_change(record, stored))
                continue
            # at the primary a versioned item counts as unknown even with nothing recorded for its key
            unrecorded_version = match is ABSENT and stored is not None and self.is_primary
            if match is None and stored is None and self._deletes_unreported():
                # an application's delete capture will never report (a Cosmos DB change feed): left
                # for capture, it waited forever, and a concurrent version met nothing to settle
                # against. It is handed back to be logged as the delete of what mcrepl last knew
                # the primary held, and settled against the rest as any change would be
                out[i] = Written(records[i], deferred=True, late=None if record.key.id in unseen_deleted
                                 else unseen_delete(record, candidates))
                unseen_deleted.add(record.key.id)
                continue
            if match is None or unrecorded_version:
                if self.is_primary and not _logged(stored, head_of(record.key.id)):
                    # a state capture has not read yet (a native write or delete, or an application's
                    # own versioned write whose origin the store's condition may not know, recorded
                    # there or not): it is newer than anything logged, and only capture may order it
                    out[i] = Written(records[i], deferred=True)
                    continue
                keep.append((i, record))          # a replica's own later edit: a replica holds copies
                continue
            if match is not ABSENT and record.meta is not None and (
                    meta_if_valid(stored) is None if stored is not None else match.meta.tombstone):
                # a native item (or a delete) mcrepl read: its version is the one mcrepl gave it
                # (an absence anti-entropy found where a record was lost has none: it is refilled)
                outcome = decide(record.meta, match.meta)
                if outcome is not ApplyOutcome.APPLIED:
                    existing = Record(record.key, stored.body if stored is not None else None, match.meta)
                    out[i] = Written(records[i], record, result_of(record, match.meta, existing))
                    continue
            keep.append((i, record))              # a version the log knows: the conditional write decides
        return keep

    def _deletes_unreported(self) -> bool:
        """Whether this is the primary and its capture shows no deletes (a Cosmos DB change feed)."""
        return self.is_primary and not self.adapter.capabilities.capture_sees_deletes


def unseen_delete(record: Record, candidates: Sequence[Captured]) -> Change:
    """The delete of ``record``'s key found at a primary whose capture reports no deletes: a delete
    of the last live state mcrepl recorded there (what it saw), never of versions it never met."""
    held = max((c.meta for c in candidates if c.content_hash != "-"), key=lambda m: m.version, default=None)
    return Change(Record(record.key, None), previous=held, native_delete=True)


def _logged(stored: Record | None, head: ReplicationMeta | None) -> bool:
    """Whether the log has seen the versioned item ``stored`` (then it is no change on its way in).

    What mcrepl recorded a location held can trail what it holds: a version the log already
    has that reached the location some other way (an application writing every copy itself
    before acknowledging, as ``ack: replicas`` does) is never noted there. Deferring such an
    item waited for a capture that had nothing left to read, and the key stayed divergent
    (the unfenced split-brain drill under load).
    """
    meta = meta_if_valid(stored) if stored is not None else None
    return meta is not None and head is not None and head.vector.get(meta.version.origin, "") >= meta.version.token


def pad_vector(record: Record, origins: set[str]) -> Record:
    """``record`` with an empty-token vector entry for every known origin it has not seen."""
    meta = record.meta
    if meta is None or origins <= set(meta.vector):
        return record
    vector = {**{o: "" for o in origins}, **meta.vector}
    return dataclasses.replace(record, meta=dataclasses.replace(meta, vector=vector))


def state_of(stored: Record | None, candidates: Sequence[Captured]) -> Captured | None:
    """Which of the states mcrepl knows a location held is the one it holds now, if any.

    With nothing recorded for the key (new there, or its delete purged), an absence or a
    versioned item is taken as it is and the store's condition decides (the writer still
    leaves alone, at the primary, a version the log has not seen); otherwise a
    versioned item is known when a recorded version is it or has seen it, a native item
    when a recorded state has its content, an absence when a recorded state is a delete
    that no recorded live state has seen: a delete mcrepl recorded there before it
    delivered a version that succeeds it (a promotion's claim, then a late write
    recovered onto the new primary) is not what an absence there is now — that version
    was removed since.
    """
    if stored is None:
        if not candidates:
            return ABSENT
        live = [c.meta for c in candidates if c.content_hash != "-"]
        return next((c for c in candidates if c.content_hash == "-" and not any(
            m.version != c.meta.version and vector_dominates(m.vector, c.meta.vector) for m in live)), None)
    meta = meta_if_valid(stored)
    if meta is not None:
        if not candidates:
            return ABSENT     # nothing recorded (a key whose delete was purged): the store's condition decides
        return next((c for c in candidates if c.meta.version == meta.version
                     or vector_dominates(c.meta.vector, meta.vector)), None)
    digest = stored.digest_hash(False)
    return next((c for c in candidates if c.content_hash == digest), None)


#: the state of a key a location never held anything for, as far as mcrepl knows
ABSENT = Captured("", "-", ReplicationMeta(Version(0, 0, ""), "-", True))


def counts_of(written: Sequence[Written]) -> dict[str, int]:
    """Outcome counts of a batch (``applied``, ``withheld``, …), zeros included for the usual ones."""
    counts = {o.value: 0 for o in ApplyOutcome} | {"withheld": 0, "deferred": 0, "conflicts": 0, "retracted": 0}
    for w in written:
        counts[w.outcome] += 1
    return counts
