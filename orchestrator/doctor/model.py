"""One doctor finding: PASS, WARN, FAIL or SKIP, with its evidence and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mcrepl.adapters.base.readiness import Fact

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]
ORDER: dict[str, int] = {"FAIL": 0, "WARN": 1, "SKIP": 2, "PASS": 3}


@dataclass(frozen=True)
class Check:
    """A judged fact. ``where`` is ``dataset location`` (or ``state``/``host``); ``fix`` is empty for PASS."""

    status: Status
    check: str
    where: str
    evidence: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def unknown(fact: Fact, check: str, where: str, fix: str) -> Check | None:
    """SKIP for an unanswerable fact, FAIL for a failed question, ``None`` when the fact is known."""
    if fact.unanswerable is not None:
        return Check("SKIP", check, where, fact.unanswerable)
    if fact.error is not None:
        return Check("FAIL", check, where, fact.error, fix)
    return None


__all__ = ["Check", "ORDER", "Status", "unknown"]
