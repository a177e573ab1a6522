"""The routing hook between the sync engine and the policy engine.

For each captured record the engine asks a :class:`RecordRouter` which replicas may
receive it and in what form (fields encrypted for some replicas). The default
:class:`PassThroughRouter` sends every record everywhere unchanged; the policy engine's
router enforces residency and field encryption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from mcrepl.adapters.base import Record


@dataclass(frozen=True)
class Withheld:
    """Why a record was not sent to a replica: the rule id and a value-free reason."""

    rule: str
    reason: str


@dataclass
class RouteDecision:
    """Per replica: the record to write there, or why it is withheld.

    A record in ``send`` may differ from the captured one (encrypted fields); its
    metadata then keeps the version and sets ``plain_hash`` so replicas still compare.
    """

    send: dict[str, Record] = field(default_factory=dict)
    withheld: dict[str, Withheld] = field(default_factory=dict)


class RecordRouter(Protocol):
    """Decides where a stamped record may go and how it must look there."""

    def route(self, dataset: str, record: Record, replicas: Sequence[str]) -> RouteDecision:
        """``replicas`` are ``provider:region`` names; every one ends in send or withheld."""
        ...

    def allowed_at(self, dataset: str, record: Record, replicas: Sequence[str]) -> set[str]:
        """Which of ``replicas`` the record may live in (residency only: cheap, nothing encrypted).

        Capture keeps this per key, so when a record's next version may no longer live
        somewhere (its country changed), that location gets a tombstone: retraction.
        """
        ...


class PassThroughRouter:
    """Sends every record to every replica unchanged (no policies configured)."""

    def route(self, dataset: str, record: Record, replicas: Sequence[str]) -> RouteDecision:
        return RouteDecision(send={r: record for r in replicas})

    def allowed_at(self, dataset: str, record: Record, replicas: Sequence[str]) -> set[str]:
        return set(replicas)


def allowed_at(router: RecordRouter, dataset: str, record: Record, replicas: Sequence[str]) -> set[str]:
    """``router.allowed_at`` when it has one, else the replicas ``route`` sends the record to."""
    method = getattr(router, "allowed_at", None)
    if method is not None:
        return set(method(dataset, record, replicas))
    return set(router.route(dataset, record, replicas).send)


def passthrough() -> RecordRouter:
    """The default router."""
    return PassThroughRouter()


__all__: Sequence[str] = ["RecordRouter", "RouteDecision", "Withheld", "PassThroughRouter", "allowed_at",
                          "passthrough"]
