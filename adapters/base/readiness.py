"""What a store says about its own readiness: facts for ``mcrepl doctor`` to judge.

Each provider's ``readiness.py`` asks its store (and its cloud's identity APIs) and
returns :class:`Fact` values; judging them against the config and the policies is the
orchestrator's job (:mod:`mcrepl.orchestrator.doctor`), so no provider rule lives there
and no SDK lives here. A question the store (typically an emulator) cannot answer is a
fact with ``unanswerable`` set to why — reported as SKIP, never as a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fact:
    """One answer: ``value`` as the store gave it, or why there is none."""

    value: Any = None
    unanswerable: str | None = None
    error: str | None = None

    @property
    def known(self) -> bool:
        return self.unanswerable is None and self.error is None


__all__ = ["Fact"]
