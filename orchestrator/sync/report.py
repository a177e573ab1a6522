"""What a sync pass did, per dataset and replica lane: counts only, never record values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LaneReport:
    """One replica lane during one pass.

    ``converged`` is true when the lane ended the pass with every logged change
    acknowledged (offset at the log head) and no failure.
    """

    replica: str
    applied: int = 0
    replayed: int = 0
    stale: int = 0
    rejected: int = 0
    withheld: int = 0
    conflicts: int = 0
    merged: int = 0
    errors: int = 0
    batches: int = 0
    offset: int = 0
    head: int = 0
    breaker: str = "closed"
    last_error: str | None = None
    converged: bool = False

    @property
    def quarantined(self) -> int:
        """Records quarantined at this replica (every rejected record is quarantined)."""
        return self.rejected

    def add(self, counts: dict[str, int]) -> None:
        """Add one batch's outcome counts."""
        for name, n in counts.items():
            setattr(self, name, getattr(self, name) + n)


@dataclass
class DatasetReport:
    """One dataset during one pass: capture counts and each lane."""

    dataset: str
    primary: str
    epoch: int
    captured: int = 0
    echo_suppressed: int = 0
    unchanged: int = 0
    purged: int = 0
    capture_error: str | None = None
    lanes: dict[str, LaneReport] = field(default_factory=dict)


@dataclass
class SyncReport:
    """The result of :meth:`SyncEngine.run_once`."""

    datasets: dict[str, DatasetReport] = field(default_factory=dict)
    stopped: bool = False
    seconds: float = 0.0

    @property
    def converged_lanes(self) -> list[tuple[str, str]]:
        """``(dataset, replica)`` of every lane that ended the pass drained and healthy."""
        return [(d.dataset, lane.replica) for d in self.datasets.values()
                for lane in d.lanes.values() if lane.converged]

    @property
    def ok(self) -> bool:
        """True when every lane converged and no capture failed."""
        return all(d.capture_error is None and all(l.converged for l in d.lanes.values())
                   for d in self.datasets.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI prints it with ``--format json``)."""
        out: dict[str, Any] = {"stopped": self.stopped, "seconds": round(self.seconds, 3), "ok": self.ok,
                               "datasets": {}}
        for name, ds in self.datasets.items():
            d = asdict(ds)
            for lane_name, lane in ds.lanes.items():
                d["lanes"][lane_name]["quarantined"] = lane.quarantined
            out["datasets"][name] = d
        return out
