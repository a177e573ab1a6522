"""One abstract permission set per role, rendered for AWS, Azure and GCP.

Roles (the same four on every cloud):

``capture``  read the primary and its change log (DynamoDB stream, Cosmos change feed / query)
``apply``    conditional writes (and the reads they need) on a replica
``verify``   read-only: digests and spot reads
``admin``    provisioning of the table/container/bucket itself, no data access beyond clean-up

Renderers are pure functions of exact resource ids, so ``mcrepl iam render``, the Pulumi
program and the tests produce identical documents, and every rendered document passes
:func:`lint`. Azure data roles are scoped to a database or container and always come with
``disableLocalAuth: true`` on the account; GCP bindings use predefined object roles, and a
custom role for bucket administration (bucket *creation* is a project permission kept by
whoever runs Pulumi).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from mcrepl.adapters.base import ConfigError

from .decisions import locations
from .iam_lint import lint

if TYPE_CHECKING:
    from mcrepl.orchestrator.config import McreplConfig, ReplicaRef

ROLES = ("capture", "apply", "verify", "admin")

_DDB_READ = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
             "dynamodb:Scan"]
_AWS_TABLE_ACTIONS = {
    "capture": _DDB_READ,
    "apply": [*_DDB_READ, "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
              "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem"],
    "verify": _DDB_READ,
    "admin": ["dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:UpdateTable", "dynamodb:DescribeTable",
              "dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive", "dynamodb:DescribeContinuousBackups",
              "dynamodb:UpdateContinuousBackups", "dynamodb:TagResource", "dynamodb:UntagResource",
              "dynamodb:ListTagsOfResource", "dynamodb:CreateTableReplica", "dynamodb:DeleteTableReplica",
              "dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"],
}
_AWS_STREAM_ACTIONS = {
    "capture": ["dynamodb:DescribeStream", "dynamodb:GetShardIterator", "dynamodb:GetRecords"],
    "admin": ["dynamodb:DescribeStream"],
}

_COSMOS = "Microsoft.DocumentDB/databaseAccounts"
_ITEMS = f"{_COSMOS}/sqlDatabases/containers/items"
_COSMOS_READ = [f"{_COSMOS}/readMetadata", f"{_ITEMS}/read", f"{_COSMOS}/sqlDatabases/containers/executeQuery"]
_AZURE_DATA_ACTIONS = {
    "capture": [*_COSMOS_READ, f"{_COSMOS}/sqlDatabases/containers/readChangeFeed"],
    "apply": [*_COSMOS_READ, f"{_ITEMS}/create", f"{_ITEMS}/replace", f"{_ITEMS}/upsert", f"{_ITEMS}/delete"],
    "verify": _COSMOS_READ,
}
#: "Cosmos DB Operator": manage accounts, databases and containers; no data, no keys
COSMOS_OPERATOR_ROLE = "230815da-be43-4aae-9cb4-875f7bd000aa"
_SCOPE = re.compile(r"^(?P<account>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                    r"Microsoft\.DocumentDB/databaseAccounts/[^/]+)/dbs/[^/]+(/colls/[^/]+)?$")

_GCP_ROLES = {"capture": "roles/storage.objectViewer", "apply": "roles/storage.objectUser",
              "verify": "roles/storage.objectViewer"}
GCP_ADMIN_PERMISSIONS = ["storage.buckets.get", "storage.buckets.update", "storage.buckets.delete",
                         "storage.objects.list", "storage.objects.delete"]


def _role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}", fix=f"use one of {', '.join(ROLES)}")
    return role


def render_aws(role: str, table_arns: list[str], stream_arns: list[str]) -> dict:
    """An IAM policy for ``role`` scoped to exactly these table and stream ARNs."""
    statements: list[dict[str, Any]] = []
    if table_arns:
        statements.append({"Sid": f"Mcrepl{_role(role).title()}Tables", "Effect": "Allow",
                           "Action": sorted(set(_AWS_TABLE_ACTIONS[role])), "Resource": sorted(table_arns)})
    if stream_arns and role in _AWS_STREAM_ACTIONS:
        statements.append({"Sid": f"Mcrepl{role.title()}Streams", "Effect": "Allow",
                           "Action": sorted(_AWS_STREAM_ACTIONS[role]), "Resource": sorted(stream_arns)})
    return {"Version": "2012-10-17", "Statement": statements}


def render_azure(role: str, scope: str, principal_id: str = "${principalId}") -> dict:
    """A Cosmos DB SQL data-plane role definition + assignment for ``role`` on ``scope``.

    ``scope`` is ``/subscriptions/S/resourceGroups/G/providers/Microsoft.DocumentDB/
    databaseAccounts/ACC/dbs/DB[/colls/C]``. ``admin`` is an ARM assignment of "Cosmos DB
    Operator" on the account instead (data-plane RBAC cannot create containers). Every
    document disables local key auth on the account.
    """
    m = _SCOPE.match(scope)
    if m is None:
        raise ConfigError(f"Cosmos scope {scope!r} is not a database or container scope",
                          fix="use /subscriptions/S/resourceGroups/G/providers/Microsoft.DocumentDB/"
                              "databaseAccounts/ACC/dbs/DB[/colls/C]")
    account = m.group("account")
    doc: dict[str, Any] = {"account": {"id": account, "type": _COSMOS,
                                       "properties": {"disableLocalAuth": True}}}
    if _role(role) == "admin":
        sub = account.split("/")[2]
        doc["roleAssignment"] = {"properties": {
            "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
                                f"{COSMOS_OPERATOR_ROLE}",
            "scope": account, "principalId": principal_id}}
        return doc
    definition_id = f"{account}/sqlRoleDefinitions/{uuid.uuid5(uuid.NAMESPACE_URL, f'mcrepl:{role}:{scope}')}"
    doc["roleDefinition"] = {"id": definition_id, "properties": {
        # role names must be unique within a Cosmos account: name the scope they cover
        "roleName": f"mcrepl-{role}-{scope.split('/dbs/', 1)[1].replace('/colls/', '-')}",
        "type": "CustomRole", "assignableScopes": [scope],
        "permissions": [{"dataActions": list(_AZURE_DATA_ACTIONS[role]), "notDataActions": []}]}}
    doc["roleAssignment"] = {"properties": {"roleDefinitionId": definition_id, "scope": scope,
                                            "principalId": principal_id}}
    return doc


def render_gcp(role: str, bucket: str, member: str | None = None, project: str = "PROJECT") -> dict:
    """Bucket IAM bindings for ``role``: predefined object roles, or a custom bucket-admin role."""
    member = member or f"serviceAccount:mcrepl-{_role(role)}@{project}.iam.gserviceaccount.com"
    doc: dict[str, Any] = {"resource": f"projects/_/buckets/{bucket}"}
    if role == "admin":
        custom = f"projects/{project}/roles/mcreplBucketAdmin"
        doc["customRole"] = {"name": custom, "title": "mcrepl bucket admin", "stage": "GA",
                             "includedPermissions": list(GCP_ADMIN_PERMISSIONS)}
        doc["bindings"] = [{"role": custom, "members": [member]}]
    else:
        doc["bindings"] = [{"role": _GCP_ROLES[role], "members": [member]}]
    return doc


@dataclass(frozen=True)
class ResourceIds:
    """Concrete ids to render against; anything missing falls back to a placeholder
    derived from the config (``provisioning:`` account/subscription/project ids).

    Maps are keyed ``DATASET@PROVIDER:REGION``.
    """

    aws_account_id: str = "123456789012"
    aws_partition: str = "aws"
    azure_subscription_id: str = "00000000-0000-0000-0000-000000000000"
    azure_resource_group: str = "mcrepl"
    cosmos_account: str = "mcrepl"
    gcp_project: str = "PROJECT"
    tables: Mapping[str, str] = field(default_factory=dict)
    streams: Mapping[str, list[str]] = field(default_factory=dict)
    cosmos_scopes: Mapping[str, str] = field(default_factory=dict)
    buckets: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: "McreplConfig", stack_outputs: Mapping[str, Any] | None = None) -> "ResourceIds":
        """Placeholders from the config, concrete ARNs/names from stack outputs when given."""
        prov = getattr(config, "provisioning", None)
        aws = getattr(prov, "aws", None)
        az = getattr(prov, "azure", None)
        gcp = getattr(prov, "gcp", None)
        tables: dict[str, str] = {}
        streams: dict[str, list[str]] = {}
        buckets: dict[str, str] = {}
        for name, per_loc in ((stack_outputs or {}).get("datasets") or {}).items():
            for at, out in (per_loc or {}).items():
                if out.get("arn"):
                    tables[f"{name}@{at}"] = str(out["arn"])
                if out.get("stream_arn"):
                    streams[f"{name}@{at}"] = [str(out["stream_arn"])]
                if at.startswith("gcs:") and out.get("resource"):
                    buckets[f"{name}@{at}"] = str(out["resource"])
        return cls(aws_account_id=getattr(aws, "account_id", None) or cls.aws_account_id,
                   azure_subscription_id=getattr(az, "subscription_id", None) or cls.azure_subscription_id,
                   azure_resource_group=getattr(az, "resource_group", None) or cls.azure_resource_group,
                   cosmos_account=getattr(az, "account_name", None) or cls.cosmos_account,
                   gcp_project=getattr(gcp, "project", None) or config.providers.gcs.project or cls.gcp_project,
                   tables=tables, streams=streams, buckets=buckets)


def _resource(config: "McreplConfig", dataset: str, ref: "ReplicaRef") -> str:
    # the same naming the adapters get from McreplConfig.target, without resolving endpoints
    return ref.resource or config._resource_name(ref, dataset, "")


def _location_docs(config: "McreplConfig", ids: ResourceIds, dataset: str, ref: "ReplicaRef",
                   role: str) -> tuple[str, dict]:
    key = f"{dataset}@{ref.at}"
    name = _resource(config, dataset, ref)
    if ref.provider == "dynamodb":
        table = ids.tables.get(key) or (f"arn:{ids.aws_partition}:dynamodb:{ref.region}:"
                                        f"{ids.aws_account_id}:table/{name}")
        return "aws", render_aws(role, [table], list(ids.streams.get(key) or [f"{table}/stream/*"]))
    if ref.provider == "cosmos":
        scope = ids.cosmos_scopes.get(key) or (
            f"/subscriptions/{ids.azure_subscription_id}/resourceGroups/{ids.azure_resource_group}/providers/"
            f"{_COSMOS}/{ids.cosmos_account}/dbs/{config.providers.cosmos.database}/colls/{name}")
        return "azure", render_azure(role, scope)
    return "gcp", render_gcp(role, ids.buckets.get(key) or name, project=ids.gcp_project)


def render_all(config: "McreplConfig", ids: ResourceIds | None = None) -> dict:
    """``{cloud: {role: {"DATASET@PROVIDER:REGION": document}}}`` for every location.

    Every location gets every role: any replica may be promoted (capture) or failed back
    to (apply); each role's *identity* still holds only that role's permissions.
    """
    ids = ids or ResourceIds.from_config(config)
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for dataset, _, ref, _ in locations(config):
        for role in ROLES:
            cloud, doc = _location_docs(config, ids, dataset, ref, role)
            out.setdefault(cloud, {}).setdefault(role, {})[f"{dataset}@{ref.at}"] = doc
    return out


__all__ = ["COSMOS_OPERATOR_ROLE", "ROLES", "ResourceIds", "lint", "render_all", "render_aws",
           "render_azure", "render_gcp"]
