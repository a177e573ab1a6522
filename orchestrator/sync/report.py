"""What a sync pass did, per dataset and lane: counts and status words, never record values.

The status words are promises, so each says exactly what was checked:

* a lane is **caught up** when, at the end of the pass, capture had read the primary up to
  its current position and the lane had written everything that was logged, with no
  failure. It says nothing about what the replica holds beyond what mcrepl sent it;
* a dataset is **converged** only when the anti-entropy verify of this pass compared the
  copies themselves and found them equal (after its repairs). A pass without a verify
  never says converged; it reports the last comparison and its age instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class LaneReport:
    """One lane during one pass; ``reason`` says why it is not caught up."""

    replica: str
    applied: int = 0
    replayed: int = 0
    stale: int = 0
    rejected: int = 0
    withheld: int = 0
    retracted: int = 0
    deferred: int = 0
    conflicts: int = 0
    merged: int = 0
    errors: int = 0
    batches: int = 0
    backfilled: int = 0
    offset: int = 0
    head: int = 0
    breaker: str = "closed"
    last_error: str | None = None
    caught_up: bool = False
    reason: str | None = None
    role: str = "replica"                 # "primary": the primary's own lane (settlements only)

    @property
    def quarantined(self) -> int:
        """Records quarantined at this replica (every rejected record is quarantined)."""
        return self.rejected

    def add(self, counts: dict[str, int]) -> None:
        """Add one batch's outcome counts (outcomes this report does not track are ignored)."""
        for name, n in counts.items():
            if name in _COUNTERS:
                setattr(self, name, getattr(self, name) + n)


_COUNTERS = {f.name for f in fields(LaneReport) if f.type in ("int", int)} - {"offset", "head"}


@dataclass
class VerifySummary:
    """The anti-entropy comparison a pass ran: what differed, what was repaired, what is left."""

    converged: bool
    divergent: int
    repaired: int
    remaining: int
    withheld: int = 0
    detail: str = ""


@dataclass
class DatasetReport:
    """One dataset during one pass: capture counts, each lane, and the verify if one ran."""

    dataset: str
    primary: str
    epoch: int
    captured: int = 0
    echo_suppressed: int = 0
    unchanged: int = 0
    quarantined: int = 0
    purged: int = 0
    capture_error: str | None = None
    lanes: dict[str, LaneReport] = field(default_factory=dict)
    primary_lane: LaneReport | None = None
    """The primary's own lane (settlements, merges, repairs and undrained changes written back to it)."""
    verify: VerifySummary | None = None

    @property
    def caught_up(self) -> bool:
        """Capture finished and every lane, the primary's included, is caught up."""
        return (self.capture_error is None and all(l.caught_up for l in self.lanes.values())
                and (self.primary_lane is None or self.primary_lane.caught_up))

    @property
    def converged(self) -> bool | None:
        """``True``/``False`` from this pass's verify; ``None`` when no comparison ran."""
        return None if self.verify is None else self.verify.converged


@dataclass
class SyncReport:
    """The result of :meth:`SyncEngine.run_once`."""

    datasets: dict[str, DatasetReport] = field(default_factory=dict)
    stopped: bool = False
    seconds: float = 0.0

    @property
    def caught_up_lanes(self) -> list[tuple[str, str]]:
        """``(dataset, replica)`` of every replica lane that ended the pass caught up."""
        return [(d.dataset, lane.replica) for d in self.datasets.values()
                for lane in d.lanes.values() if lane.caught_up]

    @property
    def ok(self) -> bool:
        """Every dataset caught up, and every verify that ran found the copies converged."""
        return all(d.caught_up and d.converged is not False for d in self.datasets.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI prints it with ``--format json``)."""
        out: dict[str, Any] = {"stopped": self.stopped, "seconds": round(self.seconds, 3), "ok": self.ok,
                               "datasets": {}}
        for name, ds in self.datasets.items():
            d = asdict(ds)
            d["caught_up"] = ds.caught_up
            d["converged"] = ds.converged
            for lane_name, lane in ds.lanes.items():
                d["lanes"][lane_name]["quarantined"] = lane.quarantined
            out["datasets"][name] = d
        return out
