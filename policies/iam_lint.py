"""IAM linter: wildcards, admin roles where a narrower one suffices, account-wide scopes
and key-based Cosmos DB auth, across AWS, Azure and GCP documents.

:func:`lint` walks any JSON document (a single policy, an ARM template, the output of
``mcrepl iam render``) and hands every object to every lint rule; each rule recognises
the shapes it knows (an AWS policy has ``Statement``, a GCP policy ``bindings``, an Azure
role definition ``permissions``/``assignableScopes``, an assignment ``scope``), so a
mixed file is linted in one pass.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from .rules import Rule, Violation, register, rules_of

Node = dict[str, Any]


class LintRule(Rule):
    """A rule applied to every JSON object of an IAM document."""

    kind = "lint"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        raise NotImplementedError


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [] if v is None else [v]


def _properties(node: Node, default: Node) -> Node:
    """An Azure resource's ``properties`` object, or ``default`` when it has none."""
    props = node.get("properties")
    return props if isinstance(props, dict) else default


def _allow_statements(node: Node) -> Iterator[Node]:
    if "Statement" not in node:
        return
    for st in _as_list(node["Statement"]):
        if isinstance(st, dict) and st.get("Effect", "Allow") == "Allow":
            yield st


@register
class AwsWildcardAction(LintRule):
    """AWS ``Allow`` statements name exact actions: no ``*``, ``dynamodb:*``, ``dynamodb:Get*`` or
    ``?`` (``dynamodb:Get?tem`` matches any one character), and no ``NotAction`` (which allows
    everything else).

    Flagged::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: "dynamodb:*", Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"}

    Passes::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:GetItem, dynamodb:PutItem],
             Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"}
    """

    id = "iam.aws-wildcard-action"
    summary = "AWS policies list exact actions"
    fix = "list the exact actions the role needs (see mcrepl iam render)"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for st in _allow_statements(node):
            if "NotAction" in st:
                yield cls.violation(where, "Allow with NotAction grants every other action")
            for action in _as_list(st.get("Action")):
                if "*" in str(action) or "?" in str(action):
                    yield cls.violation(where, f"action {action!r} is a wildcard")


_TABLE_ARN = re.compile(r"^arn:aws[a-z-]*:dynamodb:([a-z0-9-]+):(\d{12}):table/([A-Za-z0-9_.-]+)"
                        r"(/stream/[^/]+|/index/[^/]+)?$")


@register
class AwsWildcardResource(LintRule):
    """AWS ``Allow`` statements are scoped to exact table and stream ARNs: no ``Resource: "*"``,
    no ``table/*``; only a stream or index label under a named table may be ``*``.

    Flagged::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:GetItem], Resource: "*"}

    Passes::

        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: [dynamodb:GetRecords],
             Resource: "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/*"}
    """

    id = "iam.aws-wildcard-resource"
    summary = "AWS policies name exact resources"
    fix = "name the exact table and stream ARNs (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME)"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for st in _allow_statements(node):
            if "NotResource" in st:
                yield cls.violation(where, "Allow with NotResource covers every other resource")
            for res in _as_list(st.get("Resource")):
                text = str(res)
                if text == "*":
                    yield cls.violation(where, 'Resource "*" covers every resource in the account')
                    continue
                m = _TABLE_ARN.match(text)
                if "?" in text:
                    yield cls.violation(where, f"resource {text!r} has a '?' wildcard")
                elif "*" in text and (m is None or "*" in "".join(m.group(1, 2, 3))):
                    yield cls.violation(where, f"resource {text!r} matches more than one table")


_ACCOUNT_SCOPE = re.compile(r"/databaseAccounts/[^/]+/?$", re.IGNORECASE)
#: built-in Azure roles far broader than the Cosmos DB roles mcrepl needs
_BROAD_AZURE_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "5bd9cd88-fe45-4216-938b-f97437e15450": "DocumentDB Account Contributor",
    "00000000-0000-0000-0000-000000000002": "Cosmos DB Built-in Data Contributor",
}


def _azure_scopes(node: Node) -> list[str]:
    props = _properties(node, node)
    return [str(s) for s in [props.get("scope"), *_as_list(props.get("assignableScopes"))] if s]


@register
class AzureAccountScope(LintRule):
    """Cosmos DB data-plane roles are assigned on a database or container
    (``.../databaseAccounts/ACC/dbs/DB[/colls/C]``), never on the whole account.

    Flagged::

        properties:
          roleDefinitionId: /subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acc/sqlRoleDefinitions/r
          scope: /subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acc
          principalId: p

    Passes::

        properties:
          roleDefinitionId: /subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acc/sqlRoleDefinitions/r
          scope: /subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acc/dbs/mcrepl/colls/orders
          principalId: p
    """

    id = "iam.azure-account-scope"
    summary = "Cosmos DB data roles are scoped to a database or container"
    fix = "assign the role on /dbs/DATABASE or /dbs/DATABASE/colls/CONTAINER"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        props = _properties(node, node)
        data_plane = "sqlRoleDefinitions" in str(props.get("roleDefinitionId", "")) or any(
            "dataActions" in p for p in _as_list(props.get("permissions")) if isinstance(p, dict))
        if not data_plane:
            return
        for scope in _azure_scopes(node):
            if scope in ("/", "") or _ACCOUNT_SCOPE.search(scope) or "/dbs/" not in scope:
                yield cls.violation(where, f"scope {scope!r} covers the whole account")


@register
class AzureBroadRole(LintRule):
    """No Owner, Contributor, DocumentDB Account Contributor or built-in Data Contributor:
    provisioning needs only "Cosmos DB Operator", data access only mcrepl's custom data roles.

    Flagged::

        properties:
          roleDefinitionId: /subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635
          scope: /subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acc
          principalId: p

    Passes::

        properties:
          roleDefinitionId: /subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/230815da-be43-4aae-9cb4-875f7bd000aa
          scope: /subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acc
          principalId: p
    """

    id = "iam.azure-admin-role"
    summary = "no broad Azure built-in roles where a narrower role suffices"
    fix = ("use Cosmos DB Operator (230815da-be43-4aae-9cb4-875f7bd000aa) for provisioning and "
           "mcrepl's custom data roles (mcrepl iam render) for data")

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        props = _properties(node, node)
        role_id = str(props.get("roleDefinitionId", "")).rstrip("/").rsplit("/", 1)[-1].lower()
        name = _BROAD_AZURE_ROLES.get(role_id) or (
            str(props.get("roleName")) if str(props.get("roleName")) in _BROAD_AZURE_ROLES.values() else None)
        if name:
            yield cls.violation(where, f"role {name!r} grants far more than mcrepl needs")


@register
class AzureWildcardAction(LintRule):
    """Cosmos DB role definitions list exact data actions (no ``items/*`` or ``containers/*``).

    Flagged::

        properties:
          roleName: too-broad
          type: CustomRole
          assignableScopes: [/subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acc/dbs/db]
          permissions:
            - dataActions: [Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/*]

    Passes::

        properties:
          roleName: reader
          type: CustomRole
          assignableScopes: [/subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acc/dbs/db]
          permissions:
            - dataActions: [Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read]
    """

    id = "iam.azure-wildcard-action"
    summary = "Azure role definitions list exact actions"
    fix = "list the exact data actions the role needs (see mcrepl iam render)"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        props = _properties(node, node)
        for perm in _as_list(props.get("permissions")):
            if not isinstance(perm, dict):
                continue
            for action in [*_as_list(perm.get("dataActions")), *_as_list(perm.get("actions"))]:
                if "*" in str(action) or "?" in str(action):
                    yield cls.violation(where, f"action {action!r} is a wildcard")


_KEY_ACTIONS = ("listkeys", "readonlykeys", "regeneratekey", "listconnectionstrings")


@register
class AzureKeyAuth(LintRule):
    """Cosmos DB accounts disable local (key) auth, and no role may read account keys:
    a key grants every permission on the whole account and cannot be scoped.

    Flagged::

        type: Microsoft.DocumentDB/databaseAccounts
        properties: {disableLocalAuth: false}

    Passes::

        type: Microsoft.DocumentDB/databaseAccounts
        properties: {disableLocalAuth: true}
    """

    id = "iam.azure-key-auth"
    summary = "no key-based Cosmos DB auth"
    fix = "set disableLocalAuth: true and use Entra ID data roles (providers.cosmos.auth: aad)"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        props = _properties(node, {})
        is_account = str(node.get("type", "")).lower() == "microsoft.documentdb/databaseaccounts" \
            or "disableLocalAuth" in props
        if is_account and props.get("disableLocalAuth") is not True:
            yield cls.violation(where, "the Cosmos DB account accepts account-key auth")
        for perm in _as_list(props.get("permissions")):
            for action in _as_list(perm.get("actions") if isinstance(perm, dict) else None):
                if any(k in str(action).lower() for k in _KEY_ACTIONS):
                    yield cls.violation(where, f"action {action!r} reads or resets account keys")


#: broad GCP roles → what mcrepl roles need instead
_GCP_NARROWER = {
    "roles/storage.admin": "roles/storage.objectUser",
    "roles/storage.objectAdmin": "roles/storage.objectUser",
    "roles/storage.legacyBucketOwner": "roles/storage.objectUser",
}


@register
class GcpBroadRole(LintRule):
    """GCS bindings use the narrowest role — mcrepl's custom roles, or ``roles/storage.objectViewer``
    to read and ``roles/storage.objectUser`` to write — never ``storage.admin`` or ``objectAdmin``
    (primitive roles are ``iam.gcp-primitive-role``).

    Flagged::

        bindings:
          - {role: roles/storage.admin, members: ["serviceAccount:apply@p.iam.gserviceaccount.com"]}

    Passes::

        bindings:
          - {role: roles/storage.objectUser, members: ["serviceAccount:apply@p.iam.gserviceaccount.com"]}
    """

    id = "iam.gcp-admin-role"
    summary = "GCS bindings use the narrowest predefined or custom role"
    fix = "grant roles/storage.objectUser (writes) or roles/storage.objectViewer (reads)"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for binding in _as_list(node.get("bindings")):
            role = str(binding.get("role", "")) if isinstance(binding, dict) else ""
            if role in _GCP_NARROWER:
                yield cls.violation(where, f"{role} grants more than object access",
                                    f"grant {_GCP_NARROWER[role]} instead (or roles/storage.objectViewer "
                                    "for read-only roles)")


@register
class GcpPublicMember(LintRule):
    """No binding grants ``allUsers`` or ``allAuthenticatedUsers`` (public buckets).

    Flagged::

        bindings:
          - {role: roles/storage.objectViewer, members: [allUsers]}

    Passes::

        bindings:
          - {role: roles/storage.objectViewer, members: ["serviceAccount:verify@p.iam.gserviceaccount.com"]}
    """

    id = "iam.gcp-public-member"
    summary = "no public GCS access"
    fix = "grant the role to the orchestrator's service account only"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for binding in _as_list(node.get("bindings")):
            members = _as_list(binding.get("members")) if isinstance(binding, dict) else []
            for public in {"allUsers", "allAuthenticatedUsers"} & set(map(str, members)):
                yield cls.violation(where, f"{binding.get('role')} is granted to {public}")


def _embedded(text: str) -> Any:
    """A JSON object held in a string (Pulumi's ``policy``/``assumeRolePolicy``, ARM's
    ``policyDocument``), or ``None``: such policies are linted like any other."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _walk(value: Any, path: str, is_properties: bool = False) -> Iterator[tuple[Node, str]]:
    """Every JSON object with its path, including objects embedded as JSON strings; an Azure
    ``properties`` block is checked as part of its resource (rules read it there), not a
    second time on its own."""
    if isinstance(value, dict):
        if not is_properties:
            yield value, path
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k), k == "properties")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    elif isinstance(value, str):
        inner = _embedded(value)
        if inner is not None:
            yield from _walk(inner, f"{path}<json>")


def lint(document: dict, source: str = "") -> list[Violation]:
    """Every lint finding in ``document``; ``resource`` is ``SOURCE:PATH`` of the object."""
    found: list[Violation] = []
    rules = rules_of("lint")
    for node, path in _walk(document, ""):
        where = ":".join(p for p in (source, path) if p) or "document"
        for rule in rules:
            found.extend(rule.check(node, where))  # type: ignore[attr-defined]
    return sorted(set(found))


__all__ = ["LintRule", "Node", "allow_statements", "as_list", "lint", "properties"]

# shared with the rule modules that extend this one (iam_lint_aws, iam_lint_escalation)
as_list, properties, allow_statements = _as_list, _properties, _allow_statements
