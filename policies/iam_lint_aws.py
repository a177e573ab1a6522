"""AWS IAM lint: parliament's checks, plus ours for what parliament does not look at.

parliament (https://github.com/duo-labs/parliament) knows every AWS action and the
resource types each one takes, so unknown actions, action/resource mismatches and known
privilege-escalation combinations come from it; we map its findings onto rule ids with
a fix. It audits identity policies only, so trust and resource policies (``Principal``),
``?`` wildcards and AWS managed admin policies attached by ARN are our own rules.
"""

from __future__ import annotations

import json
import re
import warnings
from functools import lru_cache
from typing import Any, Iterator

from .iam_lint import LintRule, Node, allow_statements, as_list
from .rules import Violation, register

#: parliament finding → our rule; anything else it reports at MEDIUM or above goes to AwsParliament
_UNKNOWN = {"UNKNOWN_ACTION", "UNKNOWN_PREFIX"}
_MISMATCH = {"RESOURCE_MISMATCH"}
_ESCALATION = {"PRIVILEGE_ESCALATION", "CREDENTIALS_EXPOSURE"}
#: parliament's "permissions management" covers kms:CreateGrant, which creating a table under a
#: customer key needs; ours flags it only without kms:GrantIsForAWSResource (see below)
_PERMISSIONS_MANAGEMENT = {"PERMISSIONS_MANAGEMENT_ACTIONS"}
#: reported by our own wildcard rules already
_OURS = {"RESOURCE_STAR", "RESOURCE_EFFECTIVELY_STAR"}

#: actions that let a principal grant itself more (Bishop Fox's AWS escalation methods); any
#: one of them is enough for us, where parliament reports some only in combination
ESCALATION_ACTIONS = frozenset(a.lower() for a in (
    "iam:PassRole", "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:AttachUserPolicy",
    "iam:AttachGroupPolicy", "iam:AttachRolePolicy", "iam:PutUserPolicy", "iam:PutGroupPolicy",
    "iam:PutRolePolicy", "iam:AddUserToGroup", "iam:UpdateAssumeRolePolicy", "iam:CreateAccessKey",
    "iam:CreateLoginProfile", "iam:UpdateLoginProfile", "iam:CreateRole", "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary", "sts:AssumeRole"))

#: AWS managed policies that grant administration or every DynamoDB/KMS action
MANAGED_ADMIN = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(?:service-role/)?(AdministratorAccess|"
                           r"PowerUserAccess|IAMFullAccess|AmazonDynamoDBFullAccess(?:WithDataPipeline)?|"
                           r"AWSKeyManagementServicePowerUser|SecurityAudit-?FullAccess)$")


_STREAM_LABEL = re.compile(r"(:table/[^/]+/stream/).+$")


def _for_parliament(st: dict[str, Any]) -> dict[str, Any]:
    """A statement as parliament can match it: DynamoDB stream labels are timestamps with ``:``
    (``…/stream/2026-01-01T00:00:00.000``), which parliament's ARN matcher splits on and then
    reports as a mismatch; the label is replaced by ``*`` for its checks only."""
    if "Resource" not in st:
        return st
    resources = [_STREAM_LABEL.sub(r"\1*", str(r)) for r in as_list(st["Resource"])]
    return {**st, "Resource": resources}


def _identity_policy(node: Node) -> str | None:
    """The node as a JSON policy string when it is an identity policy parliament can audit."""
    statements = [_for_parliament(st) for st in as_list(node.get("Statement")) if isinstance(st, dict)]
    if not statements or any("Principal" in st or "NotPrincipal" in st for st in statements):
        return None
    return json.dumps({"Version": node.get("Version", "2012-10-17"), "Statement": statements}, sort_keys=True)


@lru_cache(maxsize=512)
def parliament_findings(policy: str) -> tuple[tuple[str, str, str], ...]:
    """``(issue, severity, detail)`` of every parliament finding (cached: each rule asks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # parliament imports the deprecated pkg_resources
        from parliament import analyze_policy_string, config
    found = analyze_policy_string(policy, include_community_auditors=True).findings
    return tuple((f.issue, str(config.get(f.issue, {}).get("severity", "")), json.dumps(f.detail, default=str))
                 for f in found)


def _findings(node: Node, issues: set[str]) -> Iterator[tuple[str, str]]:
    policy = _identity_policy(node)
    if policy is None:
        return
    for issue, _, detail in parliament_findings(policy):
        if issue in issues:
            yield issue, detail


class _ParliamentRule(LintRule):
    issues: set[str] = set()

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for issue, detail in _findings(node, cls.issues):
            yield cls.violation(where, f"parliament {issue}: {detail}")


@register
class AwsUnknownAction(_ParliamentRule):
    """Every action exists (parliament checks its catalogue of AWS actions): a typo grants nothing
    and hides what was meant.

    Flagged::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:PutItems], Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"}

    Passes::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:PutItem], Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"}
    """

    id = "iam.aws-unknown-action"
    summary = "AWS actions exist"
    fix = "correct the action's spelling (see mcrepl iam render for the actions mcrepl needs)"
    issues = _UNKNOWN


@register
class AwsResourceMismatch(_ParliamentRule):
    """Each action is granted on a resource type it applies to (a stream action on a stream ARN,
    not on the table): a mismatched statement grants nothing.

    Flagged::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:GetRecords], Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"}

    Passes::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:GetRecords],
             Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"}
    """

    id = "iam.aws-resource-mismatch"
    summary = "AWS actions are granted on resources of their type"
    fix = "grant stream actions on the stream ARN and table actions on the table ARN"
    issues = _MISMATCH


@register
class AwsPrivilegeEscalation(LintRule):
    """No action that lets the holder grant itself more: ``iam:PassRole``, policy and access-key
    management, ``iam:UpdateAssumeRolePolicy``, ``sts:AssumeRole``, ``kms:CreateGrant`` not limited
    to AWS services (ours), and parliament's escalation and credentials-exposure findings.

    Flagged::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [iam:PassRole], Resource: "arn:aws:iam::123456789012:role/admin"}

    Passes::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:Scan], Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"}
    """

    id = "iam.aws-privilege-escalation"
    summary = "no privilege escalation paths in AWS policies"
    fix = "remove IAM/STS management actions; mcrepl's roles need only DynamoDB (and KMS via DynamoDB)"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for st in allow_statements(node):
            if "Principal" in st:
                continue
            for action in as_list(st.get("Action")):
                if str(action).lower() in ESCALATION_ACTIONS or str(action).lower() in ("iam:*", "sts:*"):
                    yield cls.violation(where, f"{action} lets the holder gain other permissions")
                if str(action).lower() == "kms:creategrant" and \
                        "kms:GrantIsForAWSResource" not in json.dumps(st.get("Condition") or {}):
                    yield cls.violation(where, "kms:CreateGrant without kms:GrantIsForAWSResource can give "
                                               "the key to any principal")
        for issue, detail in _findings(node, _ESCALATION):
            yield cls.violation(where, f"parliament {issue}: {detail}")


@register
class AwsParliament(LintRule):
    """parliament's other findings of medium severity or more (malformed statements, invalid
    ARNs, conditions an action does not support …) are reported as they are.

    Flagged::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:GetItem], Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders",
             Condition: {StringEquals: {"s3:prefix": "x"}}}

    Passes::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:GetItem], Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"}
    """

    id = "iam.aws-parliament"
    summary = "parliament finds nothing else of medium severity or more"
    fix = "correct the statement as parliament's finding says (https://github.com/duo-labs/parliament)"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        policy = _identity_policy(node)
        if policy is None:
            return
        handled = _UNKNOWN | _MISMATCH | _ESCALATION | _OURS | _PERMISSIONS_MANAGEMENT
        for issue, severity, detail in parliament_findings(policy):
            if issue not in handled and severity in ("MEDIUM", "HIGH", "CRITICAL"):
                yield cls.violation(where, f"parliament {issue} ({severity}): {detail}")


def _principals(st: dict[str, Any]) -> list[str]:
    principal = st.get("Principal")
    if isinstance(principal, dict):
        return [str(p) for v in principal.values() for p in as_list(v)]
    return [str(p) for p in as_list(principal)]


@register
class AwsPublicPrincipal(LintRule):
    """Trust and resource policies name their principals: ``Principal: "*"`` (or ``{AWS: "*"}``)
    lets any AWS account assume the role or use the resource.

    Flagged::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Principal: "*", Action: "sts:AssumeRole"}

    Passes::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Principal: {AWS: "arn:aws:iam::123456789012:role/mcrepl-runner"}, Action: "sts:AssumeRole"}
    """

    id = "iam.aws-public-principal"
    summary = "no Principal \"*\" in trust or resource policies"
    fix = "name the trusted role, account or federated provider (with conditions on its token)"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for st in allow_statements(node):
            if "NotPrincipal" in st:
                yield cls.violation(where, "Allow with NotPrincipal trusts every other principal")
            if "*" in _principals(st):
                yield cls.violation(where, 'Principal "*" trusts every AWS account')


@register
class AwsManagedAdminPolicy(LintRule):
    """No AWS managed administrator or full-access policy is attached by ARN
    (``AdministratorAccess``, ``PowerUserAccess``, ``IAMFullAccess``, ``AmazonDynamoDBFullAccess`` …).

    Flagged::

        managedPolicyArns: ["arn:aws:iam::aws:policy/AdministratorAccess"]

    Passes::

        managedPolicyArns: []
    """

    id = "iam.aws-managed-admin-policy"
    summary = "no AWS managed admin policies"
    fix = "attach the policies of mcrepl iam render instead"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for key, value in node.items():
            for item in as_list(value):
                if isinstance(item, str) and MANAGED_ADMIN.match(item):
                    yield cls.violation(where, f"{key} attaches {item}")


__all__ = ["ESCALATION_ACTIONS", "MANAGED_ADMIN", "parliament_findings"]
