"""Every registered rule's docstring examples are executed (as Cloud Custodian tests its
policy examples): refused configs produce the rule's id, allowed ones do not; flagged IAM
documents are caught by the rule, passing ones are not; routed records are withheld
exactly where the example says. Every rule is documented in docs/policies.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcrepl.adapters.base import Version, document
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.policies.engine import evaluate
from mcrepl.policies.iam import lint
from mcrepl.policies.router import PolicyRouter
from mcrepl.policies.rules import Rule, docstring_examples, load_all

RULES = load_all()
CASES = [(rule_id, i, label, example) for rule_id, rule in sorted(RULES.items())
         for i, (label, example) in enumerate(docstring_examples(rule))]
EXPECTED_LABELS = {"plan": {"Refused", "Allowed"}, "lint": {"Flagged", "Passes"}, "record": {"Routed"}}


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_every_rule_has_a_fix_a_summary_and_examples(rule_id: str) -> None:
    rule: type[Rule] = RULES[rule_id]
    labels = {label for label, _ in docstring_examples(rule)}
    assert rule.fix and rule.summary
    assert labels and labels <= EXPECTED_LABELS[rule.kind], labels
    assert "Refused" in labels or "Flagged" in labels or "Routed" in labels


@pytest.mark.parametrize("rule_id,index,label,example", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_docstring_example(rule_id: str, index: int, label: str, example: dict) -> None:
    rule = RULES[rule_id]
    if rule.kind == "plan":
        ids = {v.rule_id for v in evaluate(McreplConfig.model_validate(example))}
        assert (rule_id in ids) == (label == "Refused"), ids
    elif rule.kind == "lint":
        ids = {v.rule_id for v in lint(example, "example")}
        assert (rule_id in ids) == (label == "Flagged"), ids
    else:
        config = McreplConfig.model_validate(example["config"])
        ds = next(iter(config.datasets))
        record = document(config.datasets[ds].key_schema(), example["record"]).stamped(
            Version(1_700_000_000_000, 0, config.datasets[ds].primary.at))
        replicas = [r.at for r in config.datasets[ds].replicas]
        decision = PolicyRouter(config).route(ds, record, replicas)
        quarantined = example.get("quarantined", [])
        assert sorted(decision.withheld) == sorted(example["withheld"])
        assert sorted(decision.quarantined) == sorted(quarantined)
        assert {w.rule for w in decision.withheld.values()} <= {rule_id}
        assert {e.rule for e in decision.quarantined.values()} <= {rule_id}
        assert sorted(decision.send) == sorted(set(replicas) - set(example["withheld"]) - set(quarantined))


def test_docs_show_every_rule_id() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "policies.md").read_text("utf-8")
    missing = [rule_id for rule_id in RULES if f"`{rule_id}`" not in text]
    assert not missing, f"docs/policies.md does not document {missing}"
