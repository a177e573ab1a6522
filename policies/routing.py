"""The routing hook between the sync engine and the policy engine.

For each record and each replica, a :class:`RecordRouter` returns exactly one outcome:

* :class:`Send` — write this record (possibly transformed: fields encrypted for that
  replica; its metadata keeps the version and sets ``plain_hash``);
* :class:`Withheld` — policy keeps the record out of that replica (rule id, value-free
  reason); count it, never write it, and report it as withheld rather than missing;
* :class:`Quarantined` — the record cannot be routed safely (its routing field is missing
  or not a country code, or its ciphertext does not verify): never write it, and put
  the :class:`RecordError` (dataset, key, field, rule — never the value) in the
  quarantine for that replica.

The default :class:`PassThroughRouter` sends every record everywhere unchanged; the policy
engine's :class:`~mcrepl.policies.router.PolicyRouter` enforces residency and encryption.

Usage at a write path::

    decision = router.route(dataset, record, [replica])
    outcome = decision.outcome(replica)
    if isinstance(outcome, Send):
        adapter.apply_batch([outcome.record])
    elif isinstance(outcome, Quarantined):
        journal.add_quarantine(dataset, replica, version, outcome.error)
    # Withheld: count outcome.rule; nothing is written
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, Union

from mcrepl.adapters.base import Record, RecordError


@dataclass(frozen=True)
class Send:
    """Write :attr:`record` to the replica (it may differ from the routed one: encrypted fields)."""

    record: Record


@dataclass(frozen=True)
class Withheld:
    """Why a record was not sent to a replica: the rule id and a value-free reason."""

    rule: str
    reason: str


@dataclass(frozen=True)
class Quarantined:
    """The record must not reach the replica and goes to its quarantine with :attr:`error`."""

    error: RecordError

    @property
    def rule(self) -> str:
        """The rule id that quarantined the record."""
        return self.error.rule


Outcome = Union[Send, Withheld, Quarantined]


@dataclass
class RouteDecision:
    """Per replica exactly one of: the record to write there (``send``), why it is withheld
    (``withheld``), or why it is quarantined (``quarantined``).

    A record in ``send`` may differ from the captured one (encrypted fields); its
    metadata then keeps the version and sets ``plain_hash`` so replicas still compare.
    """

    send: dict[str, Record] = field(default_factory=dict)
    withheld: dict[str, Withheld] = field(default_factory=dict)
    quarantined: dict[str, RecordError] = field(default_factory=dict)

    def outcome(self, replica: str) -> Outcome:
        """The one outcome for ``replica``; ``KeyError`` when it was not routed."""
        if replica in self.send:
            return Send(self.send[replica])
        if replica in self.withheld:
            return self.withheld[replica]
        return Quarantined(self.quarantined[replica])


class RecordRouter(Protocol):
    """Decides where a stamped record may go and how it must look there."""

    def route(self, dataset: str, record: Record, replicas: Sequence[str]) -> RouteDecision:
        """``replicas`` are ``provider:region`` names; every one ends in exactly one of
        ``send``, ``withheld`` or ``quarantined``."""
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


__all__: Sequence[str] = ["Outcome", "PassThroughRouter", "Quarantined", "RecordRouter", "RouteDecision",
                          "Send", "Withheld", "allowed_at", "passthrough"]
