"""Rules registered by id, and the :class:`Violation` each finding is reported as.

Like Cloud Custodian's filters, every rule is a class registered under a stable id with
the schema of the policy section it reads, a fix message, and a docstring carrying
worked YAML examples that ``tests/test_policies_examples.py`` loads and runs:

* plan rules (``kind = "plan"``): ``Refused::`` / ``Allowed::`` blocks are whole configs;
* IAM lint rules (``kind = "lint"``): ``Flagged::`` / ``Passes::`` blocks are documents;
* record rules (``kind = "record"``): ``Routed::`` blocks hold ``config``, ``record`` and
  ``withheld`` (the replicas the record must not reach).

Findings (a :class:`Violation`) never carry record values, secrets or key material.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import yaml

Severity = Literal["error", "warning"]
RuleKind = Literal["plan", "lint", "record"]


@dataclass(frozen=True, order=True)
class Violation:
    """One finding: which rule, on which resource, why, and how to fix it."""

    rule_id: str
    resource: str
    why: str
    fix: str
    severity: Severity = "error"
    #: the config file the finding is in (set by ``evaluate(..., source=FILE)``)
    file: str | None = None

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form (``mcrepl validate --format json``, Pulumi preview messages)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def line(self) -> str:
        """``RULE-ID  [file:]resource  why  (fix: …)`` — the text report's one line per violation."""
        where = f"{self.file}:{self.resource}" if self.file else self.resource
        return f"{self.rule_id}  {where}  {self.why}  (fix: {self.fix})"


class Rule:
    """Base of every registered rule. Subclasses set the class attributes below."""

    id: ClassVar[str]
    kind: ClassVar[RuleKind]
    summary: ClassVar[str]
    fix: ClassVar[str]
    severity: ClassVar[Severity] = "error"
    #: the pydantic model of the policy section the rule reads (None: reads only the topology)
    schema: ClassVar[type | None] = None

    @classmethod
    def violation(cls, resource: str, why: str, fix: str | None = None) -> Violation:
        """A finding of this rule; ``fix`` defaults to the rule's own fix message."""
        return Violation(cls.id, resource, why, fix or cls.fix, cls.severity)


REGISTRY: dict[str, type[Rule]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    """Class decorator: add a rule to :data:`REGISTRY` under its id (ids are unique)."""
    if cls.id in REGISTRY and REGISTRY[cls.id] is not cls:
        raise ValueError(f"rule id {cls.id!r} registered twice")
    if not (cls.__doc__ and "::" in cls.__doc__):
        raise ValueError(f"rule {cls.id} needs a docstring with a worked YAML example")
    REGISTRY[cls.id] = cls
    return cls


def rules_of(kind: RuleKind) -> list[type[Rule]]:
    """Every registered rule of ``kind``, in id order (importing the rule modules first)."""
    load_all()
    return [REGISTRY[i] for i in sorted(REGISTRY) if REGISTRY[i].kind == kind]


def load_all() -> dict[str, type[Rule]]:
    """Import every module that registers rules, so :data:`REGISTRY` is complete."""
    from . import (capability_rules, default_deny, iam_lint, iam_lint_aws, iam_lint_escalation,  # noqa: F401
                   plan_rules, router)
    return REGISTRY


def docstring_examples(rule: type[Rule]) -> list[tuple[str, Any]]:
    """The worked examples of a rule's docstring as ``(label, parsed YAML)`` pairs.

    A block starts with a line ending in ``Label::`` and is the indented text after it.
    """
    lines = (rule.__doc__ or "").splitlines()
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(lines):
        head = lines[i].strip()
        if head.endswith("::"):
            label = head[:-2].split()[-1] if head[:-2].split() else ""
            block: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" " * 8)):
                block.append(lines[i])
                i += 1
            out.append((label, yaml.safe_load(textwrap.dedent("\n".join(block)))))
            continue
        i += 1
    return out


__all__ = ["REGISTRY", "Rule", "RuleKind", "Severity", "Violation", "docstring_examples",
           "load_all", "register", "rules_of"]
