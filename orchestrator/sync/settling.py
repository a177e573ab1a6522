"""How the engine settles conflicts for one dataset under the current primary and epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mcrepl.adapters.base import Record, Version
from mcrepl.orchestrator.hlc import HybridLogicalClock

from .merge import MergeFunction


@dataclass
class Settling:
    """How the dataset settles conflicts: ``merge_fn`` is ``None`` for last-writer-wins.

    ``primary``/``epoch`` name who issues settling versions; ``decrypt`` turns a record
    read from a replica with encrypted fields back into plaintext.
    """

    merge_fn: MergeFunction | None
    clock: HybridLogicalClock
    primary: str
    epoch: int
    decrypt: Callable[[Record], Record] | None = None

    @property
    def origin(self) -> str:
        """The origin of versions mcrepl itself issues (settlements, merges, repairs).

        Distinct from the primary's own origin, under which capture stamps native writes:
        a vector's entry for an origin claims every version of that origin up to its token,
        and a settlement has not seen the native writes captured while it was being made.
        """
        return f"{self.primary}#mcrepl"

    def tick(self) -> Version:
        """A new version under :attr:`origin`."""
        return self.clock.tick(self.origin)


__all__ = ["Settling"]
