"""Evaluate every plan-time rule against a config: what ``mcrepl validate`` and the Pulumi
program call before anything is provisioned or replicated.

Two kinds of output, never mixed (as in Cloud Custodian): a *bad policy section* (a rule
naming a dataset that does not exist, an unknown jurisdiction) raises
:class:`ConfigError` — the policy cannot be evaluated; a *finding* is a
:class:`Violation` in the returned list — the policy was evaluated and refuses the plan.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping

from mcrepl.adapters.base import ConfigError

from .capture_log import orchestrator_jurisdictions
from .decisions import encrypted_fields
from .plan_rules import PlanContext
from .residency import jurisdiction_problem
from .rules import REGISTRY, Violation, rules_of

if TYPE_CHECKING:
    from mcrepl.orchestrator.config import McreplConfig


def evaluate(config: "McreplConfig", stack_outputs: Mapping[str, Any] | None = None,
             source: str | None = None) -> list[Violation]:
    """Every violation of every enabled plan rule, sorted by rule id then resource.

    ``stack_outputs`` (``pulumi stack output --json``, format ``mcrepl-stack/1``) adds what
    was actually provisioned: keys at rest, endpoints, Cosmos auth mode, and the IAM
    documents under ``identities`` and ``federation`` (linted with :func:`mcrepl.policies.iam.lint`).
    ``source`` (the config file's name) is set as ``file`` on every finding and error.
    Raises :class:`ConfigError` when the policy section itself is invalid.
    """
    errors = policy_errors(config, source)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigError(
            "\n  ".join(str(e) for e in errors), fix=None)
    ctx = PlanContext(config, stack_outputs or {})
    disabled = set(config.policies.disabled)
    found: list[Violation] = []
    for rule in rules_of("plan"):
        if rule.id not in disabled:
            found.extend(rule.check(ctx))  # type: ignore[attr-defined]
    found.extend(v for v in _lint_stack_identities(stack_outputs or {}) if v.rule_id not in disabled)
    if source is not None:
        found = [replace(v, file=source) for v in found]
    return sorted(set(found))


def _lint_stack_identities(stack_outputs: Mapping[str, Any]) -> list[Violation]:
    """Lint the IAM documents a stack attached: the per-role identities under ``identities``
    and the sync runners' under ``federation.identities.CLOUD.documents``."""
    from .iam_lint import lint
    found: list[Violation] = []
    if stack_outputs.get("identities"):
        found.extend(lint(dict(stack_outputs["identities"]), "stack:identities"))
    runners = (stack_outputs.get("federation") or {}).get("identities") or {}
    for cloud, identity in sorted(runners.items()):
        if isinstance(identity, dict) and identity.get("documents"):
            found.extend(lint({cloud: identity["documents"]}, f"stack:federation.{cloud}"))
    return found


def policy_errors(config: "McreplConfig", source: str | None = None) -> list[ConfigError]:
    """Problems that make the policy section meaningless, each naming its file, path and fix."""
    p = config.policies
    errors: list[ConfigError] = []

    def jurisdictions(path: str, names: list[str]) -> None:
        for j in names:
            problem = jurisdiction_problem(j)
            if problem is not None:
                errors.append(ConfigError(problem, source, path=f"policies.{path}",
                                          fix="use a jurisdiction (EU, UK, CH, US, ...), a country that is its own "
                                              "jurisdiction in policies/data/regions.yaml, or \"*\""))

    def dataset(path: str, name: str, documents_only: bool = False) -> bool:
        ds = config.datasets.get(name)
        if ds is None:
            errors.append(ConfigError(f"no dataset named {name!r}", path=f"policies.{path}",
                                      fix=f"use one of {', '.join(config.datasets)}"))
            return False
        if documents_only and ds.kind != "document":
            errors.append(ConfigError(f"dataset {name!r} holds blobs; field rules need documents",
                                      path=f"policies.{path}", fix="remove the dataset from this rule"))
            return False
        return True

    for klass, names in p.residency.classes.items():
        jurisdictions(f"residency.classes.{klass}", names)
    for i, rule in enumerate(p.residency.records):
        for name in rule.datasets:
            dataset(f"residency.records[{i}].datasets", name, documents_only=True)
        jurisdictions(f"residency.records[{i}].restrict", rule.restrict or [])
        for home, extra in rule.also.items():
            jurisdictions(f"residency.records[{i}].also", [home, *extra])
    seen: set[str] = set()
    for i, field_rule in enumerate(p.encryption.fields):
        if field_rule.dataset in seen:
            errors.append(ConfigError(f"dataset {field_rule.dataset!r} has two field rules",
                                      path=f"policies.encryption.fields[{i}]", fix="merge them"))
        seen.add(field_rule.dataset)
        if dataset(f"encryption.fields[{i}].dataset", field_rule.dataset, documents_only=True):
            names = encrypted_fields(config, field_rule.dataset)
            if not names:
                errors.append(ConfigError(
                    f"field rule for {field_rule.dataset!r} names no fields", path=f"policies.encryption.fields[{i}]",
                    fix="list fields, or set sensitive_fields on the dataset"))
            keys = {a.name for a in config.datasets[field_rule.dataset].key_schema().attributes}
            for name in sorted(keys & set(names)):
                errors.append(ConfigError(
                    f"key field {name!r} cannot be encrypted (replicas look records up by it)",
                    path=f"policies.encryption.fields[{i}].fields", fix=f"remove {name} from the list"))
        jurisdictions(f"encryption.fields[{i}].plaintext_in", field_rule.plaintext_in)
    kr = p.encryption.keyring
    if kr.type != "local" and not kr.key_id:
        errors.append(ConfigError(f"keyring type {kr.type} needs key_id", path="policies.encryption.keyring",
                                  fix="set key_id to the key-encryption key's id"))
    try:
        orchestrator_jurisdictions(config)
    except ConfigError as err:
        errors.append(replace(err, file=source))
    for rule_id in p.disabled:
        if rule_id not in REGISTRY:
            from .rules import load_all
            if rule_id not in load_all():
                errors.append(ConfigError(f"unknown rule id {rule_id!r}", source, path="policies.disabled",
                                          fix=f"use one of {', '.join(sorted(REGISTRY))}"))
    return [e if e.file else replace(e, file=source) for e in errors]


__all__ = ["Violation", "evaluate", "policy_errors"]
