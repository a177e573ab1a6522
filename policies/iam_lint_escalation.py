"""Azure and GCP IAM lint beyond wildcards: privilege escalation, primitive roles, unknown actions.

A role that can assign roles (Azure ``roleAssignments/write``, User Access Administrator;
GCP ``projectIamAdmin``, ``setIamPolicy``), mint tokens for another identity (GCP
``serviceAccountTokenCreator``) or administer keys (``cloudkms.admin``) is a path to every
other permission, whatever else its holder was meant to do. Unknown Cosmos DB data actions
and Cloud Storage permissions are typos that grant nothing.
"""

from __future__ import annotations

from typing import Iterator

from .iam_lint import LintRule, Node, as_list, properties
from .rules import Violation, register

_AZURE_ESCALATION_ACTIONS = ("microsoft.authorization/roleassignments/write",
                             "microsoft.authorization/roledefinitions/write",
                             "microsoft.authorization/elevateaccess/action", "microsoft.authorization/*",
                             "microsoft.managedidentity/userassignedidentities/federatedidentitycredentials/write")
_AZURE_ESCALATION_ROLES = {"18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
                           "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator"}
#: every Cosmos DB for NoSQL data action (reference-data-plane-actions)
COSMOS_DATA_ACTIONS = frozenset(f"Microsoft.DocumentDB/databaseAccounts/{a}".lower() for a in (
    "readMetadata", "sqlDatabases/containers/items/create", "sqlDatabases/containers/items/read",
    "sqlDatabases/containers/items/replace", "sqlDatabases/containers/items/upsert",
    "sqlDatabases/containers/items/delete", "sqlDatabases/containers/executeQuery",
    "sqlDatabases/containers/readChangeFeed", "sqlDatabases/containers/executeStoredProcedure",
    "sqlDatabases/containers/manageConflicts", "sqlDatabases/containers/items/*", "sqlDatabases/containers/*",
    "sqlDatabases/*", "*"))

_GCP_ESCALATION_ROLES = {
    "roles/iam.serviceAccountTokenCreator": "mints tokens for any service account it is granted on",
    "roles/iam.serviceAccountKeyAdmin": "creates keys for service accounts",
    "roles/iam.serviceAccountAdmin": "changes who may act as service accounts",
    "roles/iam.securityAdmin": "sets IAM policies",
    "roles/iam.roleAdmin": "edits custom roles",
    "roles/resourcemanager.projectIamAdmin": "sets the project's IAM policy",
    "roles/cloudkms.admin": "sets key IAM policies and destroys key versions",
    "roles/storage.legacyBucketOwner": "sets the bucket's IAM policy",
}
_GCP_ESCALATION_PERMISSIONS = ("iam.serviceaccounts.getaccesstoken", "iam.serviceaccounts.signjwt",
                               "iam.serviceaccounts.signblob", "iam.serviceaccounts.implicitdelegation",
                               "iam.serviceaccounts.actas", "iam.serviceaccountkeys.create", "iam.roles.update",
                               ".setiampolicy")
_PRIMITIVE = {"roles/owner", "roles/editor", "roles/viewer"}
#: Cloud Storage permissions (https://cloud.google.com/storage/docs/access-control/iam-permissions)
GCS_PERMISSIONS = frozenset(
    [f"storage.buckets.{v}" for v in ("create", "createTagBinding", "delete", "deleteTagBinding", "enableObjectRetention",
                                      "get", "getIamPolicy", "getIpFilter", "getObjectInsights", "list",
                                      "listEffectiveTags", "listTagBindings", "relocate", "restore", "setIamPolicy",
                                      "setIpFilter", "update")]
    + [f"storage.objects.{v}" for v in ("create", "delete", "get", "getIamPolicy", "list", "move", "overrideUnlockedRetention",
                                        "restore", "setIamPolicy", "setRetention", "update")]
    + [f"storage.multipartUploads.{v}" for v in ("abort", "create", "list", "listParts")]
    + [f"storage.managedFolders.{v}" for v in ("create", "delete", "get", "getIamPolicy", "list", "setIamPolicy")])


def _azure_actions(node: Node) -> list[str]:
    props = properties(node, node)
    return [str(a) for perm in as_list(props.get("permissions")) if isinstance(perm, dict)
            for a in [*as_list(perm.get("actions")), *as_list(perm.get("dataActions"))]]


def _gcp_permissions(node: Node) -> list[str]:
    """``includedPermissions`` of a rendered custom role, ``permissions`` of a Pulumi one."""
    return [str(p) for key in ("includedPermissions", "permissions")
            for p in as_list(node.get(key)) if isinstance(p, str)]


def _gcp_roles(node: Node) -> list[str]:
    roles = [str(b.get("role", "")) for b in as_list(node.get("bindings")) if isinstance(b, dict)]
    if isinstance(node.get("role"), str) and ("member" in node or "members" in node):
        roles.append(str(node["role"]))       # a single binding (Pulumi's *IAMMember inputs)
    return roles


@register
class AzurePrivilegeEscalation(LintRule):
    """No Azure role that can assign roles: ``Microsoft.Authorization/roleAssignments/write`` (or
    ``roleDefinitions/write``, ``elevateAccess``), User Access Administrator or RBAC Administrator.

    Flagged::

        properties:
          roleName: sneaky
          permissions: [{actions: [Microsoft.Authorization/roleAssignments/write]}]

    Passes::

        properties:
          roleName: reader
          permissions: [{dataActions: [Microsoft.DocumentDB/databaseAccounts/readMetadata]}]
    """

    id = "iam.azure-privilege-escalation"
    summary = "no Azure role can grant roles"
    fix = "use Cosmos DB Operator for provisioning and mcrepl's data roles for data"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for action in _azure_actions(node):
            if action.lower() in _AZURE_ESCALATION_ACTIONS:
                yield cls.violation(where, f"{action} lets the holder grant itself any role")
        props = properties(node, node)
        role_id = str(props.get("roleDefinitionId", "")).rstrip("/").rsplit("/", 1)[-1].lower()
        if role_id in _AZURE_ESCALATION_ROLES:
            yield cls.violation(where, f"{_AZURE_ESCALATION_ROLES[role_id]} can assign any role")


@register
class AzureUnknownDataAction(LintRule):
    """Cosmos DB data actions exist (the documented NoSQL data actions): a typo grants nothing.

    Flagged::

        properties:
          permissions: [{dataActions: [Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/write]}]

    Passes::

        properties:
          permissions: [{dataActions: [Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/upsert]}]
    """

    id = "iam.azure-unknown-action"
    summary = "Cosmos DB data actions exist"
    fix = "use a documented Cosmos DB data action (see mcrepl iam render)"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        props = properties(node, node)
        for perm in as_list(props.get("permissions")):
            for action in as_list(perm.get("dataActions") if isinstance(perm, dict) else None):
                if str(action).lower().startswith("microsoft.documentdb/") and \
                        str(action).lower() not in COSMOS_DATA_ACTIONS:
                    yield cls.violation(where, f"{action} is not a Cosmos DB data action")


@register
class GcpPrivilegeEscalation(LintRule):
    """No GCP role or custom-role permission that reaches other permissions:
    ``serviceAccountTokenCreator``, ``projectIamAdmin``, ``cloudkms.admin``, key and role
    admins, ``*.setIamPolicy``, ``iam.serviceAccounts.getAccessToken`` and kin.

    Flagged::

        bindings:
          - {role: roles/iam.serviceAccountTokenCreator, members: ["serviceAccount:sync@p.iam.gserviceaccount.com"]}

    Passes::

        bindings:
          - {role: projects/p/roles/mcrepl_apply, members: ["serviceAccount:sync@p.iam.gserviceaccount.com"]}
    """

    id = "iam.gcp-privilege-escalation"
    summary = "no GCP role can mint tokens or change IAM"
    fix = "grant mcrepl's custom roles only; federation uses roles/iam.workloadIdentityUser on one service account"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for role in _gcp_roles(node):
            if role in _GCP_ESCALATION_ROLES:
                yield cls.violation(where, f"{role} {_GCP_ESCALATION_ROLES[role]}")
        for perm in _gcp_permissions(node):
            if any(perm.lower() == p or (p.startswith(".") and perm.lower().endswith(p))
                   for p in _GCP_ESCALATION_PERMISSIONS):
                yield cls.violation(where, f"permission {perm} reaches other identities or IAM policies")


@register
class GcpPrimitiveRole(LintRule):
    """No primitive role (``roles/owner``, ``roles/editor``, ``roles/viewer``): each covers every
    service in the project — ``viewer`` reads every bucket's objects metadata and more.

    Flagged::

        bindings:
          - {role: roles/viewer, members: ["serviceAccount:verify@p.iam.gserviceaccount.com"]}

    Passes::

        bindings:
          - {role: projects/p/roles/mcrepl_verify, members: ["serviceAccount:verify@p.iam.gserviceaccount.com"]}
    """

    id = "iam.gcp-primitive-role"
    summary = "no GCP primitive roles"
    fix = "grant mcrepl's custom roles (mcrepl iam render), bound on the bucket"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for role in _gcp_roles(node):
            if role in _PRIMITIVE:
                yield cls.violation(where, f"{role} is a primitive role covering the whole project")


@register
class GcpUnknownPermission(LintRule):
    """Cloud Storage permissions in custom roles exist, and are bucket permissions where a role is
    bound on a bucket (``storage.buckets.create`` is a project permission: granting it on a bucket
    does nothing).

    Flagged::

        customRole: {name: projects/p/roles/x, includedPermissions: [storage.objects.write, storage.buckets.create]}
        resource: projects/_/buckets/b

    Passes::

        customRole: {name: projects/p/roles/x, includedPermissions: [storage.objects.create]}
        resource: projects/_/buckets/b
    """

    id = "iam.gcp-unknown-permission"
    summary = "Cloud Storage permissions exist and fit where they are granted"
    fix = "use a documented storage.* permission; grant bucket creation at the project"

    @classmethod
    def check(cls, node: Node, where: str) -> Iterator[Violation]:
        for perm in _gcp_permissions(node):
            if perm.startswith("storage.") and perm not in GCS_PERMISSIONS:
                yield cls.violation(where, f"{perm} is not a Cloud Storage permission")
        if str(node.get("resource", "")).startswith("projects/_/buckets/"):      # a rendered bucket binding
            for custom in as_list(node.get("customRole")):
                for perm in _gcp_permissions(custom) if isinstance(custom, dict) else []:
                    if perm in ("storage.buckets.create", "storage.buckets.list"):
                        yield cls.violation(where, f"{perm} is a project permission, granted here on a bucket")


__all__ = ["COSMOS_DATA_ACTIONS", "GCS_PERMISSIONS"]
