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


def class_jurisdictions(config: "McreplConfig", classification: str) -> list[str] | None:
    """Jurisdictions a classification may live in, or ``None`` when unrestricted."""
    return config.policies.residency.classes.get(classification)


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


__all__ = ["class_allowed_at", "class_jurisdictions", "encrypted_fields", "field_rule",
           "fields_to_encrypt", "locations", "record_allowed_jurisdictions", "record_rules"]
