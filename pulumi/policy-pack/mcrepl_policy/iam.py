"""Rules on identities and grants, in all three clouds (rules ``mcrepl-iam`` and ``mcrepl-no-keys``).

Grants: exact actions on exact resources (no wildcard, no ``NotAction``/``NotResource``;
``Resource: "*"`` only for actions that have no resource-level permission, under a
condition), no AWS managed admin policies, no primitive or admin roles (GCP
``roles/owner|editor|viewer``, Azure Owner/Contributor/User Access Administrator), no
public members, no account- or subscription-wide scopes. Trust: no ``*`` principal; web
identity federation always pins issuer, audience and subject (AWS trust conditions,
GCP provider attribute conditions and exact principals, Azure federated credentials).
Keys: a stack never creates a long-lived credential.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

from .subject import (ACCESS_KEY, APP_PASSWORD, BUCKET_BINDING, BUCKET_MEMBER, CRYPTO_KEY_MEMBER, CUSTOM_ROLE,
                      FEDERATED_CREDENTIAL, IAM_POLICY, OIDC_PROVIDER, POLICY_ATTACHMENT, POOL_PROVIDER,
                      PROJECT_BINDING, PROJECT_MEMBER, ROLE, ROLE_ASSIGNMENT, ROLE_POLICY, SERVICE_ACCOUNT,
                      SERVICE_ACCOUNT_KEY, SERVICE_ACCOUNT_MEMBER, SP_PASSWORD, SQL_ROLE_ASSIGNMENT,
                      SQL_ROLE_DEFINITION, Subject, as_list)

#: actions IAM cannot scope to a resource: ``Resource: "*"`` is allowed for them, under a condition
RESOURCELESS_ACTIONS = frozenset({"sts:GetWebIdentityToken", "sts:GetCallerIdentity"})
ADMIN_MANAGED_POLICIES = ("AdministratorAccess", "PowerUserAccess", "IAMFullAccess")
PRIMITIVE_GCP_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer", "roles/iam.securityAdmin",
                                 "roles/resourcemanager.projectIamAdmin"})
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
#: Owner, Contributor, User Access Administrator, Role Based Access Control Administrator
AZURE_ADMIN_ROLES = frozenset({"8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "b24988ac-6180-42a0-ab88-20f7382dd24c",
                               "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9", "f58310d9-a9f6-439a-9e8d-f62e7b41a168"})
AZURE_TOKEN_EXCHANGE = "api://AzureADTokenExchange"
ESCALATING_PERMISSIONS = ("setIamPolicy", "iam.serviceAccounts.actAs", "iam.serviceAccountKeys.create",
                          "iam.serviceAccounts.getAccessToken", "iam.roles.update")
KEY_TYPES = frozenset({ACCESS_KEY, SERVICE_ACCOUNT_KEY, APP_PASSWORD, SP_PASSWORD})


def _document(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return value or {}


def _wild(text: Any) -> bool:
    return "*" in str(text) or "?" in str(text)


def aws_policy_problems(policy: Mapping[str, Any]) -> Iterator[str]:
    """Wildcards and open scopes in an AWS identity policy's ``Allow`` statements."""
    for st in as_list(policy.get("Statement")):
        if st.get("Effect", "Allow") != "Allow":
            continue
        if "NotAction" in st or "NotResource" in st:
            yield "Allow with NotAction/NotResource grants everything else"
        actions = [str(a) for a in as_list(st.get("Action"))]
        yield from (f"action {a!r} is a wildcard" for a in actions if _wild(a))
        for resource in as_list(st.get("Resource")):
            if resource == "*":
                if not (set(actions) <= RESOURCELESS_ACTIONS and st.get("Condition")):
                    yield f"Resource \"*\" for {', '.join(actions)} (name the exact ARNs)"
            elif str(resource).endswith((":table/*", ":key/*", ":*")) or str(resource) in ("arn:aws:*", "arn:*"):
                yield f"resource {resource!r} covers every resource of its kind"


def aws_trust_problems(policy: Mapping[str, Any]) -> Iterator[str]:
    """Open principals and unpinned web identities in a role's trust policy."""
    for st in as_list(policy.get("Statement")):
        if st.get("Effect", "Allow") != "Allow":
            continue
        principal = st.get("Principal")
        if principal == "*" or any(v == "*" or "*" in as_list(v) for v in (principal or {}).values()):
            yield "trust policy allows any principal (\"*\")"
        if "sts:AssumeRoleWithWebIdentity" in as_list(st.get("Action")):
            equals = (st.get("Condition") or {}).get("StringEquals") or {}
            pinned = {k.rsplit(":", 1)[-1] for k, v in equals.items() if v and not _wild(v)}
            if not {"aud", "sub"} <= pinned:
                yield ("web identity trust must pin the token's audience and subject "
                       "(StringEquals on ISSUER:aud and ISSUER:sub)")


def check_iam(subject: Subject, config: Mapping[str, Any]) -> list[str]:
    """Rule ``mcrepl-iam``: least privilege and pinned trust on every identity and grant."""
    check = _IAM_CHECKS.get(subject.type)
    return list(check(subject.props)) if check else []


def _aws_role(props: Mapping[str, Any]) -> Iterator[str]:
    yield from aws_trust_problems(_document(props.get("assumeRolePolicy")))
    for inline in as_list(props.get("inlinePolicies")):
        yield from aws_policy_problems(_document(inline.get("policy")))
    for arn in as_list(props.get("managedPolicyArns")):
        yield from _aws_attachment({"policyArn": arn})


def _aws_policy(props: Mapping[str, Any]) -> Iterator[str]:
    yield from aws_policy_problems(_document(props.get("policy")))


def _aws_attachment(props: Mapping[str, Any]) -> Iterator[str]:
    arn = str(props.get("policyArn", ""))
    if arn.startswith("arn:aws:iam::aws:policy/") and arn.rsplit("/", 1)[-1] in ADMIN_MANAGED_POLICIES:
        yield f"AWS managed admin policy {arn.rsplit('/', 1)[-1]} attached"


def _oidc_provider(props: Mapping[str, Any]) -> Iterator[str]:
    if not str(props.get("url", "")).startswith("https://"):
        yield "OIDC provider URL must be https"
    if not as_list(props.get("clientIdLists")) or any(_wild(c) for c in as_list(props.get("clientIdLists"))):
        yield "OIDC provider must name the exact audiences (clientIdLists)"


def _gcp_member(props: Mapping[str, Any]) -> Iterator[str]:
    role = str(props.get("role", ""))
    if role in PRIMITIVE_GCP_ROLES or role.endswith(".admin"):
        yield f"role {role} is a primitive or admin role (use a custom role with the exact permissions)"
    for member in as_list(props.get("members")) + as_list(props.get("member")):
        if member in PUBLIC_MEMBERS:
            yield f"member {member} makes the resource public"
        if str(member).startswith("principalSet://") and str(member).endswith("/*"):
            yield f"member {member} is every identity of a workload identity pool"


def _custom_role(props: Mapping[str, Any]) -> Iterator[str]:
    for permission in as_list(props.get("permissions")):
        if _wild(permission):
            yield f"custom role permission {permission!r} is a wildcard"
        elif str(permission).endswith(ESCALATING_PERMISSIONS):
            yield f"custom role permission {permission} lets its holder reach other identities or policies"


def _service_account(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("createIgnoreAlreadyExists"):
        yield "createIgnoreAlreadyExists adopts an existing service account another stack may own"


def _pool_provider(props: Mapping[str, Any]) -> Iterator[str]:
    condition = str(props.get("attributeCondition") or "").strip()
    if not condition or condition in ("true", "True"):
        yield "workload identity provider admits every identity of its issuer (set attributeCondition)"
    oidc = props.get("oidc") or {}
    if oidc and (not str(oidc.get("issuerUri", "")).startswith("https://") or not oidc.get("allowedAudiences")):
        yield "OIDC workload identity provider must pin an https issuer and its audiences"


def _azure_role_assignment(props: Mapping[str, Any]) -> Iterator[str]:
    definition = str(props.get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower()
    if definition in AZURE_ADMIN_ROLES:
        yield "Owner, Contributor or an access-administration role is assigned (use the narrowest built-in role)"
    scope = str(props.get("scope", "")).rstrip("/")
    if scope.count("/") <= 2:
        yield f"role assignment at {scope or '/'} covers a whole subscription or more"


def _sql_role_definition(props: Mapping[str, Any]) -> Iterator[str]:
    for permission in as_list(props.get("permissions")):
        for action in as_list(permission.get("dataActions")):
            if _wild(action):
                yield f"Cosmos DB data action {action!r} is a wildcard"
    for scope in as_list(props.get("assignableScopes")):
        if "/dbs/" not in str(scope):
            yield f"Cosmos DB role assignable on {scope} covers the whole account"


def _sql_role_assignment(props: Mapping[str, Any]) -> Iterator[str]:
    if "/dbs/" not in str(props.get("scope", "")):
        yield f"Cosmos DB role assigned on {props.get('scope')} covers the whole account"


def _federated_credential(props: Mapping[str, Any]) -> Iterator[str]:
    if not str(props.get("issuer", "")).startswith("https://"):
        yield "federated credential issuer must be https"
    if not props.get("subject") or _wild(props.get("subject")):
        yield "federated credential must name one exact subject"
    if as_list(props.get("audiences")) != [AZURE_TOKEN_EXCHANGE]:
        yield f"federated credential audience must be {AZURE_TOKEN_EXCHANGE}"


_IAM_CHECKS = {ROLE: _aws_role, ROLE_POLICY: _aws_policy, IAM_POLICY: _aws_policy,
               POLICY_ATTACHMENT: _aws_attachment, OIDC_PROVIDER: _oidc_provider,
               BUCKET_MEMBER: _gcp_member, BUCKET_BINDING: _gcp_member, CRYPTO_KEY_MEMBER: _gcp_member,
               SERVICE_ACCOUNT_MEMBER: _gcp_member, PROJECT_MEMBER: _gcp_member, PROJECT_BINDING: _gcp_member,
               CUSTOM_ROLE: _custom_role, SERVICE_ACCOUNT: _service_account, POOL_PROVIDER: _pool_provider,
               ROLE_ASSIGNMENT: _azure_role_assignment, SQL_ROLE_DEFINITION: _sql_role_definition,
               SQL_ROLE_ASSIGNMENT: _sql_role_assignment, FEDERATED_CREDENTIAL: _federated_credential}
#: every type ``mcrepl-iam`` inspects
IAM_TYPES = frozenset(_IAM_CHECKS)


def check_no_keys(subject: Subject, config: Mapping[str, Any]) -> list[str]:
    """Rule ``mcrepl-no-keys``: runners federate; a stack never mints a long-lived credential."""
    if subject.type in KEY_TYPES:
        return [f"{subject.type.rsplit(':', 1)[-1]} is a long-lived credential: runners use workload "
                "identity federation (provisioning.runners) instead"]
    return []
