"""The policy engine's :class:`RecordRouter`: residency and field encryption on every record.

For each captured record and each replica the router decides, from the same functions
plan-time rules use (:mod:`.decisions`):

1. may the record live there? (dataset classification; per-record field rules such as
   ``country``) — if not, it is *withheld* with the rule id and a reason that carries no
   record value, and counted;
2. can it be routed at all? A record whose routing field is missing or not an ISO
   3166-1 alpha-2 code, or whose ciphertext does not verify, is *quarantined* for every
   replica it might not belong in (default deny), with a :class:`RecordError` naming
   the field, never its value;
3. in what form? fields the policy encrypts towards that replica are replaced by
   ciphertext; the sent record keeps its version and vector, its ``content_hash``
   describes the stored (encrypted) body and ``plain_hash`` the plaintext, so replicas
   still compare equal in ``verify``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

from mcrepl.adapters.base import Record, RecordError
from mcrepl.adapters.base.reserved import is_reserved
from mcrepl.adapters.base.values import content_hash

from .datakeys import DataKeyStore, open_datakeys
from .decisions import (DEFAULT_CLASSIFICATION, class_allowed_at, class_declared, class_jurisdictions, fields_to_encrypt,
                        record_allowed_jurisdictions, record_rules, rule_restricts_unknown_at)
from .encryption import FieldCipher, Keyring, is_encrypted
from .model import RecordFieldRule
from .residency import allowed_in, catalogue, country_code, location_jurisdictions
from .routing import PassThroughRouter, RouteDecision, Withheld
from .rules import Rule, register

if TYPE_CHECKING:
    from mcrepl.orchestrator.config import McreplConfig

log = logging.getLogger("mcrepl.policies.router")


@register
class RecordFieldResidency(Rule):
    """A record whose residency field (an ISO country code such as ``country: DE``) points
    at a jurisdiction reaches only replicas in that jurisdiction (plus ``also``). ``EL``
    counts as Greece (``GR``) and ``UK`` as ``GB``. A record whose field is missing or not
    an ISO 3166-1 alpha-2 code is quarantined for every replica the rule restricts (and
    sent only where no restricted home could forbid it); deletes always pass.

    Routed::

        config:
          datasets:
            customers:
              key: {partition: id}
              primary: dynamodb:eu-west-1
              replicas: [dynamodb:us-east-1, gcs:europe-west3, cosmos:uksouth]
          policies:
            residency:
              records:
                - {datasets: [customers], field: country, also: {EU: [UK]}}
        record: {id: c1, country: DE}
        withheld: [dynamodb:us-east-1]

    Routed::

        config:
          datasets:
            customers:
              key: {partition: id}
              primary: dynamodb:eu-west-1
              replicas: [dynamodb:us-east-1, gcs:europe-west3]
          policies:
            residency:
              records:
                - {datasets: [customers], field: country, restrict: [EU]}
        record: {id: c2, country: XX}
        withheld: []
        quarantined: [dynamodb:us-east-1]

    Routed::

        config:
          datasets:
            customers:
              key: {partition: id}
              primary: dynamodb:eu-west-1
              replicas: [dynamodb:us-east-1, gcs:europe-west3]
          policies:
            residency:
              records:
                - {datasets: [customers], field: country, restrict: [EU]}
        record: {id: c3, country: EL}
        withheld: [dynamodb:us-east-1]
    """

    id = "residency.record-field"
    kind = "record"
    summary = "per-record residency from a country field"
    fix = "route the record's country to replicas in its jurisdiction, or extend 'also'"
    schema = RecordFieldRule


CLASSIFICATION_RULE = "residency.classification"
DECLARED_RULE = "residency.classification-declared"


class PolicyRouter:
    """Routes records by residency and encrypts fields per destination.

    ``keyring`` is needed only when the config has field-encryption rules (``None``:
    built from ``policies.encryption.keyring`` on first use); ``datakeys`` likewise
    (``None``: :func:`~mcrepl.policies.datakeys.open_datakeys`). ``withheld`` and
    ``quarantined`` count ``(dataset, replica, rule) → records`` over the router's life.
    """

    def __init__(self, config: "McreplConfig", keyring: Keyring | None = None,
                 datakeys: DataKeyStore | None = None) -> None:
        self.config = config
        self._keyring = keyring
        self._datakeys = datakeys
        self._cipher: FieldCipher | None = None
        self.withheld: Counter[tuple[str, str, str]] = Counter()
        self.quarantined: Counter[tuple[str, str, str]] = Counter()

    @property
    def datakeys(self) -> DataKeyStore:
        """The data-key store (opened on first use, with this router's keyring)."""
        if self._datakeys is None:
            self._datakeys = open_datakeys(self.config, self._keyring)
        return self._datakeys

    @property
    def cipher(self) -> FieldCipher:
        """The field cipher (keyring and data-key store opened on first use)."""
        if self._cipher is None:
            self._cipher = FieldCipher(self.datakeys)
        return self._cipher

    # -- RecordRouter ----------------------------------------------------------------

    def route(self, dataset: str, record: Record, replicas: Sequence[str]) -> RouteDecision:
        """Exactly one outcome per replica: send (maybe encrypted), withheld, or quarantined."""
        decision = RouteDecision()
        try:
            plain = self.decrypt_record(dataset, record) if _has_ciphertext(record.body) else record
        except RecordError as err:
            for replica in replicas:
                self._quarantine(decision, dataset, replica, err.located(dataset=dataset, key=record.key.id))
            return decision
        for replica in replicas:
            why = self.residency(dataset, plain, replica)
            if isinstance(why, RecordError):
                self._quarantine(decision, dataset, replica, why)
            elif why is not None:
                decision.withheld[replica] = why
                self.withheld[(dataset, replica, why.rule)] += 1
                log.info("withheld dataset=%s replica=%s rule=%s", dataset, replica, why.rule)
            else:
                decision.send[replica] = self.shape(dataset, plain, replica)
        return decision

    def _quarantine(self, decision: RouteDecision, dataset: str, replica: str, err: RecordError) -> None:
        decision.quarantined[replica] = err.located(target=replica)
        self.quarantined[(dataset, replica, err.rule)] += 1
        log.warning("quarantined dataset=%s replica=%s rule=%s field=%s", dataset, replica, err.rule, err.field)

    def allowed_at(self, dataset: str, record: Record, replicas: Sequence[str]) -> set[str]:
        """The replicas ``route`` would send the record to (neither withheld nor quarantined),
        by residency alone: nothing is encrypted."""
        plain = self.decrypt_record(dataset, record) if _has_ciphertext(record.body) else record
        return {r for r in replicas if self.residency(dataset, plain, r) is None}

    # -- residency --------------------------------------------------------------------

    def residency(self, dataset: str, record: Record, replica: str) -> Withheld | RecordError | None:
        """Why ``record`` may not be written to ``replica``: withheld by a rule, or a
        :class:`RecordError` when it cannot be routed safely (``None``: it may go)."""
        ds = self.config.datasets[dataset]
        if not class_allowed_at(self.config, ds.classification, replica):
            if not class_declared(self.config, ds.classification):
                return Withheld(DECLARED_RULE, f"classification {ds.classification!r} is not declared "
                                "in policies.residency.classes")
            allowed = ", ".join(class_jurisdictions(self.config, ds.classification) or [])
            return Withheld(CLASSIFICATION_RULE, f"{ds.classification} data may live only in {allowed}")
        if record.tombstone or not isinstance(record.body, dict) or is_reserved(record.key.id):
            return None                   # a heartbeat carries no user field for a record rule to read
        for rule in record_rules(self.config, dataset):
            why = _record_rule_check(rule, record.body, replica)
            if isinstance(why, RecordError):
                return why.located(dataset=dataset, key=record.key.id)
            if why is not None:
                return why
        return None

    # -- encryption -------------------------------------------------------------------

    def shape(self, dataset: str, record: Record, replica: str) -> Record:
        """``record`` as it must be stored at ``replica`` (fields encrypted where the policy says)."""
        fields = fields_to_encrypt(self.config, dataset, replica)
        if not fields or record.tombstone or not isinstance(record.body, dict) or record.meta is None:
            return record
        body = self.cipher.encrypt_fields(dataset, record.key.id, record.body, fields)
        if body == record.body:
            return record
        meta = replace(record.meta, content_hash=content_hash(record.key.id, body, False),
                       plain_hash=record.meta.plain_hash or record.meta.content_hash)
        return Record(record.key, body, meta)

    def decrypt_record(self, dataset: str, record: Record) -> Record:
        """The plaintext of a record read from a replica that holds encrypted fields.

        Checks the decrypted body against ``meta.plain_hash``; raises :class:`RecordError`
        (never with values) when a ciphertext was moved, altered or does not match.
        """
        if not _has_ciphertext(record.body):
            return record
        assert isinstance(record.body, dict)
        body = self.cipher.decrypt_fields(dataset, record.key.id, record.body)
        if record.meta is None:
            return Record(record.key, body, None)
        plain = content_hash(record.key.id, body, record.meta.tombstone)
        if record.meta.plain_hash and plain != record.meta.plain_hash:
            raise RecordError("encryption.field-integrity", "decrypted body does not match its "
                              "plain_hash", dataset=dataset, key=record.key.id)
        return Record(record.key, body, replace(record.meta, content_hash=plain, plain_hash=None))

    def withheld_total(self, dataset: str | None = None, replica: str | None = None) -> int:
        """Records withheld so far, optionally for one dataset and/or replica."""
        return sum(n for (ds, rep, _), n in self.withheld.items()
                   if (dataset is None or ds == dataset) and (replica is None or rep == replica))


def router_for(config: "McreplConfig", keyring: Keyring | None = None) -> "PolicyRouter | PassThroughRouter":
    """The router ``mcrepl sync`` should use: a :class:`PolicyRouter` when the config has
    residency or field-encryption rules or uses any classification besides the default
    (an undeclared one must be withheld, not passed), else the pass-through router."""
    p = config.policies
    classified = any(ds.classification != DEFAULT_CLASSIFICATION or ds.fields for ds in config.datasets.values())
    if p.residency.classes or p.residency.records or p.encryption.fields or classified:
        return PolicyRouter(config, keyring)
    return PassThroughRouter()


def _record_rule_check(rule: RecordFieldRule, body: dict[str, Any], replica: str) -> Withheld | RecordError | None:
    value: Any = body
    for part in rule.field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    code = country_code(value)
    if code is None:
        if not rule_restricts_unknown_at(rule, replica):
            return None
        return RecordError(RecordFieldResidency.id, "residency field is missing or not an ISO 3166-1 alpha-2 "
                           "country code, so the record cannot be routed here", field=rule.field, target=replica)
    home = catalogue().jurisdiction_of_country(code)
    allowed = record_allowed_jurisdictions(rule, home)
    if allowed is None or allowed_in(location_jurisdictions(replica), allowed):
        return None
    where = "+".join(sorted(location_jurisdictions(replica)))
    return Withheld(RecordFieldResidency.id, f"field {rule.field!r} keeps this record out of {where}")


def _has_ciphertext(body: Any) -> bool:
    if is_encrypted(body):
        return True
    return isinstance(body, dict) and any(_has_ciphertext(v) for v in body.values())


__all__ = ["CLASSIFICATION_RULE", "DECLARED_RULE", "PolicyRouter", "RecordFieldResidency", "router_for"]
