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

from mcrepl.adapters.base import (ApplyOutcome, ApplyResult, McreplError, Record, ReplicaAdapter, decide,
                                  meta_if_valid)
from mcrepl.adapters.base.interface import result_of
from mcrepl.orchestrator.state.log import Captured
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

    @property
    def outcome(self) -> str:
        """``applied``/``replayed``/``stale``/``rejected``/``conflict``, ``withheld`` or ``deferred``."""
        if self.result is not None:
            return self.result.outcome.value
        return "withheld" if self.withheld is not None else "deferred"


class LocationWriter:
    """Writes records of one dataset to one location under the policy router.

    ``origins`` returns the dataset's known origins (for vector padding).
    ``captured`` is given for the primary: it returns what capture last read there per key
    (:meth:`CaptureLog.captured`), and the writer reads each key first and leaves it alone
    when the primary holds a native state capture has not read yet — a change on its way
    into the log, newer than anything mcrepl could send. ``delivered`` is told what landed
    there, so capture knows which version a later native write overwrote.
    """

    def __init__(self, dataset: str, location: str, adapter: ReplicaAdapter, router: RecordRouter,
                 origins: Callable[[], set[str]] = set, *,
                 captured: Callable[[list[str]], dict[str, Captured]] | None = None,
                 delivered: Callable[[list[Record]], None] | None = None, is_primary: bool = False) -> None:
        self.dataset = dataset
        self.location = location
        self.adapter = adapter
        self.router = router
        self.origins = origins
        self.captured = captured
        self.delivered = delivered
        self.is_primary = is_primary

    def write(self, records: Sequence[Record]) -> list[Written]:
        """Route, pad and apply ``records``; one :class:`Written` per record, in order."""
        out: list[Written | None] = [None] * len(records)
        sending: list[tuple[int, Record]] = []
        known = self.origins()
        for i, record in enumerate(records):
            decision = self.router.route(self.dataset, record, [self.location])
            routed = decision.send.get(self.location)
            if routed is None:
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
        primary costs no extra request.
        """
        assert self.captured is not None
        seen = self.captured([r.key.id for _, r in sending])
        keep = []
        for i, record in sending:
            captured = seen.get(record.key.id)
            if not self.is_primary and (captured is None or captured.location != self.location):
                keep.append((i, record))          # nothing of this location's own to protect
                continue
            stored = self.adapter.read(record.key)
            if stored is not None and meta_if_valid(stored) is not None:
                keep.append((i, record))          # mcrepl's own version: the conditional write decides
                continue
            if _uncaptured(stored, captured, self.location):
                if self.is_primary:
                    out[i] = Written(records[i], deferred=True)
                    continue
                keep.append((i, record))          # a replica's own later edit: a replica holds copies
                continue
            if stored is not None and captured is not None and record.meta is not None:
                outcome = decide(record.meta, captured.meta)
                if outcome is not ApplyOutcome.APPLIED:
                    existing = Record(stored.key, stored.body, captured.meta)
                    out[i] = Written(records[i], record, result_of(record, captured.meta, existing))
                    continue
            keep.append((i, record))
        return keep


def pad_vector(record: Record, origins: set[str]) -> Record:
    """``record`` with an empty-token vector entry for every known origin it has not seen."""
    meta = record.meta
    if meta is None or origins <= set(meta.vector):
        return record
    vector = {**{o: "" for o in origins}, **meta.vector}
    return dataclasses.replace(record, meta=dataclasses.replace(meta, vector=vector))


def _uncaptured(stored: Record | None, seen: Captured | None, location: str) -> bool:
    """Whether ``location`` holds a native state (or absence) that capture there has not read."""
    read_here = seen is not None and seen.location == location
    if stored is None:
        # absent where capture last read a live record: a delete it has not read yet
        return read_here and seen.content_hash != "-"  # type: ignore[union-attr]
    return not (read_here and seen.content_hash == stored.digest_hash(False))  # type: ignore[union-attr]


def counts_of(written: Sequence[Written]) -> dict[str, int]:
    """Outcome counts of a batch (``applied``, ``withheld``, …), zeros included for the usual ones."""
    counts = {o.value: 0 for o in ApplyOutcome} | {"withheld": 0, "deferred": 0, "conflicts": 0, "retracted": 0}
    for w in written:
        counts[w.outcome] += 1
    return counts
