"""IAM documents for the four mcrepl roles on AWS, Azure and GCP, rendered from what the adapters call.

Roles (the same four on every cloud; see :data:`mcrepl.adapters.base.operations.ROLE_METHODS`):

``capture``  read the primary and its change log (DynamoDB stream, Cosmos change feed / query)
``apply``    conditional writes (and the reads they need) on a replica, tombstone purges
``verify``   read-only: digests and spot reads
``admin``    create and drop the table/container/bucket

Nothing here lists a permission by hand: every action comes from the adapters' operation
inventories (``adapters/<provider>/operations.py``), which ``tests/test_iam_operations.py``
holds to the calls the adapters really make against the emulators. Renderers are pure
functions of exact resource ids, so ``mcrepl iam render``, the Pulumi program and the tests
produce identical documents, and every rendered document passes :func:`lint`.

* AWS: one policy per role, statements per resource kind (table, stream, and the table's
  customer-managed KMS key, limited to use through DynamoDB with ``kms:ViaService``).
* Azure: a Cosmos DB SQL data-plane role definition + assignment scoped to a database or
  container, with ``disableLocalAuth: true`` on the account; ``admin`` is the ARM role
  "Cosmos DB Operator" on the account (data-plane RBAC cannot create containers).
* GCP: a custom role per mcrepl role bound on the bucket — the predefined object roles
  lack ``storage.buckets.get``, which every open calls. Creating buckets is a project
  permission kept by whoever runs Pulumi.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, cast

from mcrepl.adapters.base import ConfigError
from mcrepl.adapters.base.operations import ROLES, OperationInventory, Role
from mcrepl.adapters.cosmos.operations import OPERATIONS as COSMOS_OPERATIONS
from mcrepl.adapters.dynamodb.operations import OPERATIONS as DYNAMODB_OPERATIONS
from mcrepl.adapters.gcs.operations import OPERATIONS as GCS_OPERATIONS
from mcrepl.adapters.s3.operations import OPERATIONS as S3_OPERATIONS

from .decisions import locations
from .iam_lint import lint

if TYPE_CHECKING:
    from mcrepl.orchestrator.config import McreplConfig, ReplicaRef

#: provider → the adapter's declared operations
INVENTORIES: dict[str, OperationInventory] = {
    "dynamodb": DYNAMODB_OPERATIONS, "cosmos": COSMOS_OPERATIONS, "gcs": GCS_OPERATIONS, "s3": S3_OPERATIONS}

_COSMOS = "Microsoft.DocumentDB/databaseAccounts"
#: "Cosmos DB Operator": manage accounts, databases and containers; no data, no keys
COSMOS_OPERATOR_ROLE = "230815da-be43-4aae-9cb4-875f7bd000aa"
_SCOPE = re.compile(r"^(?P<account>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                    r"Microsoft\.DocumentDB/databaseAccounts/[^/]+)/dbs/[^/]+(/colls/[^/]+)?$")
_KEY_REGION = re.compile(r"^arn:[a-z-]+:kms:([a-z0-9-]+):")


def _role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}", fix=f"use one of {', '.join(ROLES)}")
    return role


def render_aws(role: str, table_arns: list[str], stream_arns: list[str],
               key_arns: list[str] | tuple[str, ...] = ()) -> dict:
    """An IAM policy for ``role`` scoped to exactly these table, stream and KMS key ARNs.

    ``key_arns`` are the customer-managed keys of the tables (none: AWS-owned keys,
    no KMS grant); their grants hold only for calls DynamoDB makes in the key's region.
    """
    inv = DYNAMODB_OPERATIONS
    r = cast(Role, _role(role))
    title = role.title()
    statements: list[dict[str, Any]] = []
    for sid, kind, resources in (("Tables", "table", table_arns), ("Streams", "stream", stream_arns)):
        actions = inv.grants(r, resource=kind)
        if resources and actions:
            statements.append({"Sid": f"Mcrepl{title}{sid}", "Effect": "Allow", "Action": actions,
                               "Resource": sorted(resources)})
    kms = inv.grants(r, resource="key", features=("cmk",))
    by_region: dict[str, list[str]] = {}
    for arn in key_arns:
        m = _KEY_REGION.match(arn)
        if m is None:
            raise ConfigError(f"{arn!r} is not a KMS key ARN", path="kms_key",
                              fix="use arn:aws:kms:REGION:ACCOUNT:key/ID")
        by_region.setdefault(m.group(1), []).append(arn)
    use, grants = [a for a in kms if a != "kms:CreateGrant"], [a for a in kms if a == "kms:CreateGrant"]
    for region, arns in sorted(by_region.items()):
        via = {"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}}
        sid = f"Mcrepl{title}TableKey{region.replace('-', '').title()}"
        if use:
            statements.append({"Sid": sid, "Effect": "Allow", "Action": use, "Resource": sorted(set(arns)),
                               "Condition": via})
        if grants:      # only grants DynamoDB itself holds, never one for another principal
            statements.append({"Sid": f"{sid}Grant", "Effect": "Allow", "Action": grants,
                               "Resource": sorted(set(arns)),
                               "Condition": {**via, "Bool": {"kms:GrantIsForAWSResource": "true"}}})
    return {"Version": "2012-10-17", "Statement": statements}


def render_aws_s3(role: str, buckets: list[str], partition: str = "aws") -> dict:
    """An IAM policy for ``role`` on exactly these S3 buckets and the objects in them.

    Bucket actions (``s3:ListBucket`` …) are granted on ``arn:aws:s3:::BUCKET``, object
    actions on ``arn:aws:s3:::BUCKET/*``, as S3 authorises them.
    """
    r = cast(Role, _role(role))
    title = role.title()
    statements: list[dict[str, Any]] = []
    for sid, kind, resources in (("Buckets", "bucket", [f"arn:{partition}:s3:::{b}" for b in buckets]),
                                 ("Objects", "object", [f"arn:{partition}:s3:::{b}/*" for b in buckets])):
        actions = S3_OPERATIONS.grants(r, resource=kind)
        if resources and actions:
            statements.append({"Sid": f"Mcrepl{title}S3{sid}", "Effect": "Allow", "Action": actions,
                               "Resource": sorted(resources)})
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
        "permissions": [{"dataActions": COSMOS_OPERATIONS.grants(cast(Role, role), plane="data"),
                         "notDataActions": []}]}}
    doc["roleAssignment"] = {"properties": {"roleDefinitionId": definition_id, "scope": scope,
                                            "principalId": principal_id}}
    return doc


def gcp_role_id(role: str, prefix: str = "mcrepl") -> str:
    """The custom role id for ``role`` (``[a-zA-Z0-9_.]``, unique per project and name prefix)."""
    clean = re.sub(r"[^a-zA-Z0-9_.]", "_", prefix)
    return f"{clean}_{_role(role)}"[:64]


def render_gcp(role: str, bucket: str, member: str | None = None, project: str = "PROJECT",
               prefix: str = "mcrepl") -> dict:
    """A custom role with exactly the bucket permissions ``role`` calls, bound on ``bucket``.

    ``prefix`` keeps custom roles and default service accounts of two stacks in one
    project apart (the Pulumi program passes one derived from project and stack).
    """
    member = member or f"serviceAccount:{prefix}-{_role(role)}@{project}.iam.gserviceaccount.com"
    custom = f"projects/{project}/roles/{gcp_role_id(role, prefix)}"
    return {"resource": f"projects/_/buckets/{bucket}",
            "customRole": {"name": custom, "title": f"{prefix} {role}", "stage": "GA",
                           "includedPermissions": GCS_OPERATIONS.grants(cast(Role, role), resource="bucket")},
            "bindings": [{"role": custom, "members": [member]}]}


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
    #: DynamoDB tables' customer-managed KMS keys (key ARNs); absent: an AWS-owned key
    kms_keys: Mapping[str, str] = field(default_factory=dict)
    #: keeps project-wide names (GCP custom roles, default service accounts) of stacks apart
    name_prefix: str = "mcrepl"
    #: role → GCP member holding it (stack outputs ``identities.gcp.ROLE.member``)
    gcp_members: Mapping[str, str] = field(default_factory=dict)

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
        keys = {f"{name}@{ref.at}": ref.kms_key for name, ds in config.datasets.items()
                for ref in ds.locations if ref.provider == "dynamodb" and ref.kms_key}
        for name, per_loc in ((stack_outputs or {}).get("datasets") or {}).items():
            for at, out in (per_loc or {}).items():
                if at.startswith("dynamodb:") and out.get("kms_key"):
                    keys[f"{name}@{at}"] = str(out["kms_key"])
                if out.get("arn"):
                    tables[f"{name}@{at}"] = str(out["arn"])
                if out.get("stream_arn"):
                    streams[f"{name}@{at}"] = [str(out["stream_arn"])]
                if at.startswith(("gcs:", "s3:")) and out.get("resource"):
                    buckets[f"{name}@{at}"] = str(out["resource"])
        scopes: dict[str, str] = {}
        cosmos = ((stack_outputs or {}).get("providers") or {}).get("cosmos") or {}
        if cosmos.get("account_id"):       # the account the stack made: its real ARM id
            database = cosmos.get("database") or config.providers.cosmos.database
            reported = (stack_outputs or {}).get("datasets") or {}
            for name, ds in config.datasets.items():
                for ref in ds.locations:
                    if ref.provider == "cosmos":
                        container = (reported.get(name) or {}).get(ref.at, {}).get("resource") or ref.resource or name
                        scopes[f"{name}@{ref.at}"] = f"{cosmos['account_id']}/dbs/{database}/colls/{container}"
        return cls(aws_account_id=getattr(aws, "account_id", None) or cls.aws_account_id,
                   azure_subscription_id=getattr(az, "subscription_id", None) or cls.azure_subscription_id,
                   azure_resource_group=getattr(az, "resource_group", None) or cls.azure_resource_group,
                   cosmos_account=getattr(az, "account_name", None) or cls.cosmos_account,
                   gcp_project=getattr(gcp, "project", None) or config.providers.gcs.project or cls.gcp_project,
                   tables=tables, streams=streams, buckets=buckets, kms_keys=keys, cosmos_scopes=scopes,
                   name_prefix=str((stack_outputs or {}).get("name_prefix") or cls.name_prefix),
                   gcp_members={role: str(out["member"]) for role, out in
                                (((stack_outputs or {}).get("identities") or {}).get("gcp") or {}).items()
                                if isinstance(out, dict) and out.get("member")})


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
        cmk = [ids.kms_keys[key]] if key in ids.kms_keys else []
        return "aws", render_aws(role, [table], list(ids.streams.get(key) or [f"{table}/stream/*"]), cmk)
    if ref.provider == "s3":
        return "aws", render_aws_s3(role, [ids.buckets.get(key) or name], ids.aws_partition)
    if ref.provider == "cosmos":
        scope = ids.cosmos_scopes.get(key) or (
            f"/subscriptions/{ids.azure_subscription_id}/resourceGroups/{ids.azure_resource_group}/providers/"
            f"{_COSMOS}/{ids.cosmos_account}/dbs/{config.providers.cosmos.database}/colls/{name}")
        return "azure", render_azure(role, scope)
    return "gcp", render_gcp(role, ids.buckets.get(key) or name, member=ids.gcp_members.get(role),
                             project=ids.gcp_project, prefix=ids.name_prefix)


#: what one ``mcrepl sync`` runner does everywhere: capture, apply, verify (admin stays with Pulumi)
RUNNER_ROLES: tuple[Role, ...] = ("capture", "apply", "verify")
#: the key of the runner's one merged AWS policy per role
RUNNER_AWS_KEY = "all-tables"


def merge_aws_policies(policies: Iterable[dict]) -> dict:
    """One AWS policy that grants exactly what ``policies`` grant together.

    Statements with the same ``Sid``, actions and condition become one statement over
    the union of their resources; any other clash keeps both statements (the second
    renamed). A runner's grants over many tables then fit IAM's inline-policy size limit
    without granting one action on one resource more than the per-location documents.
    """
    merged: dict[str, dict[str, Any]] = {}
    for policy in policies:
        for st in policy.get("Statement", []):
            sid = st["Sid"]
            same = merged.get(sid)
            if same is not None and (same["Action"], same.get("Condition")) == (st["Action"], st.get("Condition")):
                same["Resource"] = sorted(set(same["Resource"]) | set(st["Resource"]))
                continue
            while sid in merged:
                sid += "X"
            merged[sid] = {**json.loads(json.dumps(st)), "Sid": sid}
    return {"Version": "2012-10-17", "Statement": list(merged.values())}


def render_runner(config: "McreplConfig", ids: ResourceIds | None = None, gcp_member: str | None = None) -> dict:
    """The sync runner identity's documents, ``{cloud: {role: {key: document}}}`` for :data:`RUNNER_ROLES`.

    AWS: one policy per role, the role's per-location documents merged
    (:func:`merge_aws_policies`, key :data:`RUNNER_AWS_KEY`); Azure: the per-location
    role definitions and assignments (the runner is assigned the same definitions); GCP:
    the per-bucket custom-role bindings, held by ``gcp_member``. Every grant is one the
    per-role identities hold: the runner only combines them.
    """
    ids = ids or ResourceIds.from_config(config)
    if gcp_member:
        ids = dataclasses.replace(ids, gcp_members={role: gcp_member for role in ROLES})
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for cloud, roles in render_all(config, ids).items():
        for role in RUNNER_ROLES:
            docs = roles.get(role, {})
            out.setdefault(cloud, {})[role] = \
                {RUNNER_AWS_KEY: merge_aws_policies(docs.values())} if cloud == "aws" else dict(docs)
    return out


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


__all__ = ["COSMOS_OPERATOR_ROLE", "INVENTORIES", "ROLES", "RUNNER_AWS_KEY", "RUNNER_ROLES", "ResourceIds",
           "gcp_role_id", "lint", "merge_aws_policies", "render_all", "render_aws", "render_aws_s3", "render_azure",
           "render_gcp", "render_runner"]
