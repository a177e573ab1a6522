"""What ``verify`` found: counts, samples and the threshold verdict, never field values."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .compare import Divergence


@dataclass
class PairReport:
    """One replica compared with the reference."""

    reference: str
    other: str
    ranges_compared: int
    divergences: list[Divergence]

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(d.kind.value for d in self.divergences))

    def to_dict(self, sample: int) -> dict[str, Any]:
        return {"reference": self.reference, "other": self.other, "ranges_compared": self.ranges_compared,
                "divergent": len(self.divergences), "by_kind": self.by_kind(),
                "sample": [d.to_dict() for d in self.divergences[:sample]]}


@dataclass
class VerifyReport:
    """The result of verifying one dataset across replicas."""

    dataset: str
    reference: str
    keys: dict[str, int]
    pairs: list[PairReport]
    seconds: float
    breaches: list[str] = field(default_factory=list)
    sample_size: int = 20
    withheld: int = 0
    """Differences the residency policy requires (records kept out of a location): not divergence."""

    @property
    def divergent(self) -> int:
        """Distinct keys that differ in at least one pair."""
        return len({d.key_id for p in self.pairs for d in p.divergences})

    @property
    def clean(self) -> bool:
        return self.divergent == 0

    @property
    def keys_per_second(self) -> float:
        return sum(self.keys.values()) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "reference": self.reference, "keys": self.keys,
                "divergent": self.divergent, "clean": self.clean, "withheld": self.withheld, "seconds": round(self.seconds, 3),
                "keys_per_second": round(self.keys_per_second, 1), "breaches": self.breaches,
                "pairs": [p.to_dict(self.sample_size) for p in self.pairs]}
