"""The orchestrator's identities, one per mcrepl role per cloud, with rendered documents.

Every permission attached here is a document from :func:`mcrepl.policies.iam.render_all`
(the function behind ``mcrepl iam render``), rendered against the ARNs, scopes and bucket
names this stack actually creates; nothing is written by hand, so what ``mcrepl iam
lint`` checks is what the clouds enforce.

Names (roles, identities, service accounts, custom roles) come from :class:`~.naming.Names`,
so two stacks in one account or project never share one.

* AWS: an IAM role ``PROJECT-STACK-ROLE`` per role, trusted by ``provisioning.aws.orchestrator_principals``
  (default the account root), with one inline policy per dataset location.
* Azure: per role a principal (``provisioning.azure.principals`` or a user-assigned managed
  identity); capture/apply/verify get Cosmos SQL role definitions + assignments on each
  container; admin gets the "Cosmos DB Operator" ARM role on the account.
* GCP: per role a member (``provisioning.gcp.members`` or a service account ``mcrepl-ROLE``)
  bound on each bucket; admin's custom role is created in the project.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any, Mapping

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
from pulumi_azure_native import authorization, cosmosdb, managedidentity

from mcrepl.orchestrator.config import McreplConfig
from mcrepl.policies.iam import ROLES, ResourceIds, render_all, render_gcp

from .aws_replica import AwsReplica
from .azure_replica import AzureReplica
from .naming import Names, safe_name
from .topology import planned_name

PRINCIPAL_PLACEHOLDER = "${principalId}"


def resolved_ids(config: McreplConfig, resolved: Mapping[str, Any]) -> ResourceIds:
    """:class:`ResourceIds` of resolved stack outputs (format ``mcrepl-stack/1``).

    Cosmos scopes come from the account's real ARM id when the stack reports it
    (``providers.cosmos.account_id``, read by :meth:`ResourceIds.from_config`), so a config
    without a subscription id still grants on the right account.
    """
    ids = ResourceIds.from_config(config, resolved)
    cosmos = (resolved.get("providers") or {}).get("cosmos") or {}
    if cosmos.get("account_name"):
        ids = dataclasses.replace(ids, cosmos_account=cosmos["account_name"])
    return ids


def rendered_documents(config: McreplConfig, resolved: Mapping[str, Any],
                       gcp_members: Mapping[str, str] | None = None) -> dict:
    """``render_all`` against resolved stack outputs, GCP grants held by ``gcp_members``."""
    ids = resolved_ids(config, resolved)
    if gcp_members:
        ids = dataclasses.replace(ids, gcp_members=dict(gcp_members))
    return render_all(config, ids)


def with_principal(documents: Any, principal_id: str) -> Any:
    """Azure documents with the principal placeholder replaced by the real object id."""
    return json.loads(json.dumps(documents).replace(PRINCIPAL_PLACEHOLDER, principal_id))


class Identities(pulumi.ComponentResource):
    """Identities and grants for every role; ``documents`` resolves to what was attached."""

    def __init__(self, name: str, config: McreplConfig, resolved_source: Mapping[str, Any], names: Names, *,
                 aws_replicas: Mapping[str, AwsReplica], azure: AzureReplica | None,
                 gcp_buckets: Mapping[str, gcp.storage.Bucket], gcp_project: str,
                 gcp_provider: gcp.Provider | None, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mcrepl:identities:Identities", name, {}, opts)
        self.config, self.names, self.gcp_project = config, names, gcp_project
        members = {role: config.provisioning.gcp.members.get(role) or
                   f"serviceAccount:{names.service_account(role)}@{gcp_project}.iam.gserviceaccount.com"
                   for role in ROLES}
        self.gcp_members = members
        self.documents: pulumi.Output[dict] = pulumi.Output.from_input(resolved_source).apply(
            lambda resolved: rendered_documents(config, resolved, members))
        self._outputs: dict[str, dict[str, Any]] = {}
        #: role definitions and custom roles the runner's grants reuse (federation.py)
        self.role_resources: list[pulumi.Resource] = []
        static = render_all(config)   # the same keys as the resolved documents, known now
        if "aws" in static and aws_replicas:
            self._aws(name, static["aws"], next(iter(aws_replicas.values())).provider)
        if "azure" in static and azure is not None:
            self._azure(name, static["azure"], azure)
        if "gcp" in static and gcp_buckets:
            self._gcp(name, static["gcp"], gcp_buckets, gcp_project, gcp_provider)
        self.register_outputs({})

    def _doc(self, cloud: str, role: str, key: str) -> pulumi.Output[dict]:
        return self.documents.apply(lambda d: d[cloud][role][key])

    # -- AWS -----------------------------------------------------------------------------

    def _aws(self, name: str, static: Mapping[str, Mapping[str, dict]], provider: aws.Provider) -> None:
        prov = self.config.provisioning.aws
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        if prov.orchestrator_principals:
            trusted: pulumi.Input[list[str]] = list(prov.orchestrator_principals)
        elif prov.account_id:
            trusted = [f"arn:aws:iam::{prov.account_id}:root"]
        else:
            trusted = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=provider)) \
                .account_id.apply(lambda acct: [f"arn:aws:iam::{acct}:root"])
        trust = pulumi.Output.from_input(trusted).apply(lambda principals: json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": sorted(principals)}}]}))
        out: dict[str, Any] = {}
        for role in ROLES:
            iam_role = aws.iam.Role(f"{name}-aws-{role}", name=self.names.aws_role(role), assume_role_policy=trust,
                                    description=f"mcrepl {role} role (policies from mcrepl iam render)",
                                    opts=child)
            for key in static.get(role, {}):
                aws.iam.RolePolicy(f"{name}-aws-{role}-{safe_name(key)}", role=iam_role.id,
                                   name=safe_name(f"{self.names.aws_role(role)}-{key}")[:128],
                                   policy=self._doc("aws", role, key).apply(json.dumps), opts=child)
            out[role] = {"role_arn": iam_role.arn,
                         "documents": self.documents.apply(lambda d, r=role: d["aws"].get(r, {}))}
        self._outputs["aws"] = out

    # -- Azure ---------------------------------------------------------------------------

    def _azure(self, name: str, static: Mapping[str, Mapping[str, dict]], azure: AzureReplica) -> None:
        child = pulumi.ResourceOptions(parent=self)
        prov = self.config.provisioning.azure
        out: dict[str, Any] = {}
        for role in ROLES:
            principal: pulumi.Input[str] = prov.principals.get(role) or managedidentity.UserAssignedIdentity(
                f"{name}-azure-{role}", resource_name_=self.names.identity(role), resource_group_name=azure.group.name,
                location=azure.plan.write_region, opts=child).principal_id
            seen_admin: set[str] = set()
            for key in static.get(role, {}):
                doc = self._doc("azure", role, key)
                assignment = doc.apply(lambda d: d["roleAssignment"]["properties"])
                if role == "admin":
                    if static[role][key]["roleAssignment"]["properties"]["scope"] in seen_admin:
                        continue
                    seen_admin.add(static[role][key]["roleAssignment"]["properties"]["scope"])
                    authorization.RoleAssignment(
                        f"{name}-azure-admin-{safe_name(key)}", principal_id=principal,
                        principal_type="ServicePrincipal",
                        role_definition_id=assignment.apply(lambda a: a["roleDefinitionId"]),
                        scope=assignment.apply(lambda a: a["scope"]), opts=child)
                    continue
                definition = doc.apply(lambda d: d["roleDefinition"])
                role_def = cosmosdb.SqlResourceSqlRoleDefinition(
                    f"{name}-azure-{role}-{safe_name(key)}", account_name=azure.account.name,
                    resource_group_name=azure.group.name,
                    role_definition_id=definition.apply(lambda d: d["id"].rsplit("/", 1)[-1]),
                    role_name=definition.apply(lambda d: d["properties"]["roleName"]),
                    type=definition.apply(lambda d: d["properties"]["type"]),
                    assignable_scopes=definition.apply(lambda d: d["properties"]["assignableScopes"]),
                    permissions=definition.apply(lambda d: [
                        cosmosdb.PermissionArgs(data_actions=p["dataActions"], not_data_actions=p["notDataActions"])
                        for p in d["properties"]["permissions"]]),
                    opts=child)
                self.role_resources.append(role_def)
                cosmosdb.SqlResourceSqlRoleAssignment(
                    f"{name}-azure-{role}-{safe_name(key)}-assignment", account_name=azure.account.name,
                    resource_group_name=azure.group.name,
                    role_assignment_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"mcrepl:assignment:{role}:{key}")),
                    role_definition_id=assignment.apply(lambda a: a["roleDefinitionId"]),
                    scope=assignment.apply(lambda a: a["scope"]), principal_id=principal,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[role_def]))
            out[role] = {"principal_id": principal, "documents": pulumi.Output.all(self.documents, principal).apply(
                lambda args, r=role: with_principal(args[0]["azure"].get(r, {}), args[1]))}
        self._outputs["azure"] = out

    # -- GCP -----------------------------------------------------------------------------

    def _gcp(self, name: str, static: Mapping[str, Mapping[str, dict]],
             buckets: Mapping[str, gcp.storage.Bucket], project: str, provider: gcp.Provider | None) -> None:
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        members = self.config.provisioning.gcp.members
        out: dict[str, Any] = {}
        custom_roles: dict[str, gcp.projects.IAMCustomRole] = {}
        for role in ROLES:
            depends: list[pulumi.Resource] = []
            member = members.get(role)
            if member is None:
                account = gcp.serviceaccount.Account(f"{name}-gcp-{role}", account_id=self.names.service_account(role),
                                                     display_name=f"mcrepl {role} ({self.names.base})",
                                                     project=project, opts=child)
                depends.append(account)
            docs: dict[str, pulumi.Input[dict]] = {}
            for key, plain in static.get(role, {}).items():
                dataset, at = key.split("@", 1)
                ref = next(r for r in self.config.datasets[dataset].locations if r.at == at)
                bucket_name = planned_name(self.config, self.names, dataset, ref)
                doc = render_gcp(role, bucket_name, member=self.gcp_members[role], project=project,
                                 prefix=self.names.custom_role_prefix())
                docs[key] = self._doc("gcp", role, key)
                grant_deps = list(depends)
                custom = doc["customRole"]
                if custom["name"] not in custom_roles:
                    custom_roles[custom["name"]] = gcp.projects.IAMCustomRole(
                        f"{name}-gcp-custom-{role}", project=project,
                        role_id=custom["name"].rsplit("/", 1)[-1], title=custom["title"],
                        stage=custom["stage"], permissions=custom["includedPermissions"], opts=child)
                    self.role_resources.append(custom_roles[custom["name"]])
                grant_deps.append(custom_roles[custom["name"]])
                for binding in doc["bindings"]:
                    for index, who in enumerate(binding["members"]):
                        gcp.storage.BucketIAMMember(
                            f"{name}-gcp-{role}-{safe_name(key)}-{index}", bucket=buckets[bucket_name].name,
                            role=binding["role"], member=who,
                            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=grant_deps)))
            out[role] = {"member": self.gcp_members[role], "documents": docs}
        self._outputs["gcp"] = out

    def outputs(self) -> dict[str, Any]:
        """``{cloud: {role: {identity, documents}}}``; the engine lints these documents."""
        return self._outputs
