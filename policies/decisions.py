"""Pure policy decisions shared by plan-time rules and the run-time router.

Plan time and run time must never disagree (a topology ``validate`` accepts must not
have records withheld for a reason ``validate`` could have seen), so both ask these
functions, and only these, what the policies say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from .model import FieldEncryptionRule, RecordFieldRule
from .residency import allowed_in, location_jurisdictions

if TYPE_CHECKING:  # policies must not import orchestrator at run time
    from mcrepl.orchestrator.config import Dataset, McreplConfig, ReplicaRef


def locations(config: "McreplConfig") -> Iterator[tuple[str, "Dataset", "ReplicaRef", bool]]:
    """Every ``(dataset name, dataset, location, is_primary)`` of the topology."""
    for name, ds in config.datasets.items():
        yield name, ds, ds.primary, True
        for ref in ds.replicas:
            yield name, ds, ref, False


#: the classification of a dataset that names none: unrestricted until ``classes`` declares it
DEFAULT_CLASSIFICATION = "internal"


def class_declared(config: "McreplConfig", classification: str) -> bool:
    """Whether ``policies.residency.classes`` declares ``classification`` (or it is the default)."""
    return classification in config.policies.residency.classes or classification == DEFAULT_CLASSIFICATION


def class_jurisdictions(config: "McreplConfig", classification: str) -> list[str] | None:
    """Jurisdictions a classification may live in: ``None`` when unrestricted, ``[]`` (nowhere)
    for an undeclared one — default deny, so a typo (``pii-typo``) never means "anywhere"."""
    classes = config.policies.residency.classes
    if classification in classes:
        return classes[classification]
    return None if classification == DEFAULT_CLASSIFICATION else []


def class_allowed_at(config: "McreplConfig", classification: str, location: str) -> bool:
    """True when data of ``classification`` may be stored at ``location`` (``provider:region``)."""
    allowed = class_jurisdictions(config, classification)
    return allowed is None or allowed_in(location_jurisdictions(location), allowed)


def field_rule(config: "McreplConfig", dataset: str) -> FieldEncryptionRule | None:
    """The field-encryption rule of ``dataset``, if any."""
    return next((r for r in config.policies.encryption.fields if r.dataset == dataset), None)


def encrypted_fields(config: "McreplConfig", dataset: str) -> list[str]:
    """Every field path the dataset's rule may encrypt (rule's list, else sensitive + classified)."""
    rule = field_rule(config, dataset)
    if rule is None:
        return []
    if rule.fields is not None:
        return list(rule.fields)
    ds = config.datasets[dataset]
    return list(dict.fromkeys([*ds.sensitive_fields, *ds.fields]))


def fields_to_encrypt(config: "McreplConfig", dataset: str, location: str) -> list[str]:
    """Fields that must be ciphertext when the dataset is written to ``location``.

    Empty for the primary (applications write it) and for replicas inside the rule's
    ``plaintext_in`` jurisdictions.
    """
    rule = field_rule(config, dataset)
    if rule is None or location == config.datasets[dataset].primary.at:
        return []
    if rule.plaintext_in and allowed_in(location_jurisdictions(location), rule.plaintext_in):
        return []
    return encrypted_fields(config, dataset)


def record_rules(config: "McreplConfig", dataset: str) -> list[RecordFieldRule]:
    """Per-record residency rules that apply to ``dataset``."""
    return [r for r in config.policies.residency.records if dataset in r.datasets]


def record_allowed_jurisdictions(rule: RecordFieldRule, home: str) -> list[str] | None:
    """Jurisdictions a record whose field points at ``home`` may go to (``None``: anywhere)."""
    if rule.restrict is not None and home not in rule.restrict:
        return None
    return [home, *rule.also.get(home, [])]


def rule_restricts_unknown_at(rule: RecordFieldRule, location: str) -> bool:
    """Whether a record whose ``rule.field`` is missing or unusable must be kept out of ``location``.

    It must wherever *some* home the rule restricts may not go: with ``restrict: [EU]``
    an EU replica is safe (EU records may be there, others are unrestricted) and a US
    replica is not; without ``restrict`` every home is restricted, so every location is.
    """
    if rule.restrict is None:
        return True
    where = location_jurisdictions(location)
    return any(not allowed_in(where, [home, *rule.also.get(home, [])]) for home in rule.restrict)


def homes_received(rule: RecordFieldRule, location: str) -> list[str]:
    """Home jurisdictions the rule restricts whose records ``location`` receives."""
    where = location_jurisdictions(location)
    candidates = rule.restrict if rule.restrict is not None else sorted({*where, *rule.also})
    return [h for h in candidates if allowed_in(where, [h, *rule.also.get(h, [])])]


def plaintext_kept_out_of(config: "McreplConfig", dataset: str,
                          where: frozenset[str] | None) -> list[str]:
    """Why a dataset's whole plaintext (every record, every field) may not be held in the
    jurisdictions ``where`` (``None``: an undeclared place, outside every jurisdiction).

    Empty when it may. The capture log holds exactly that, so this decides whether the
    log must be encrypted (:mod:`.capture_log`).
    """
    ds = config.datasets[dataset]
    reasons: list[str] = []

    def check(allowed: list[str] | None, what: str) -> None:
        if allowed is not None and (where is None or not allowed_in(where, allowed)):
            reasons.append(f"{what} may live only in {', '.join(allowed) or 'no jurisdiction'}")

    check(class_jurisdictions(config, ds.classification), f"{ds.classification} data")
    for fld, klass in ds.fields.items():
        check(class_jurisdictions(config, klass), f"field {fld!r} ({klass})")
    for rule in record_rules(config, dataset):
        if rule.restrict is None:
            reasons.append(f"records keep to the jurisdiction their {rule.field!r} names, whatever it is")
        for home in rule.restrict or []:
            check([home, *rule.also.get(home, [])], f"records whose {rule.field!r} is in {home}")
    enc = field_rule(config, dataset)
    if enc is not None:
        check(enc.plaintext_in, "encrypted fields' plaintext")
    return reasons


__all__ = ["DEFAULT_CLASSIFICATION", "class_allowed_at", "class_declared", "class_jurisdictions",
           "homes_received", "plaintext_kept_out_of", "rule_restricts_unknown_at", "encrypted_fields", "field_rule",
           "fields_to_encrypt", "locations", "record_allowed_jurisdictions", "record_rules"]
