"""Sync runner identities and the workload identity federation between them: no long-lived keys.

``provisioning.runners`` says where ``mcrepl sync`` runs (``aws``, ``azure``, ``gcp``).
For every cloud of the stack (one with stores, or one a runner runs in) this component
declares one *runner identity*: an IAM role ``PROJECT-STACK-runner``, a user-assigned
managed identity ``PROJECT-STACK-runner``, a service account ``m<hash>-runner``. It holds
the capture, apply and verify grants on that cloud's stores, rendered by
:func:`mcrepl.policies.iam.render_runner` from the adapters' operation inventories (the
same grants the per-role identities hold, combined), and it trusts the runner identities
of every *other* runner location through that cloud's federation mechanism
(:mod:`.federation_docs`). A runner therefore uses its own cloud's identity natively and
exchanges that cloud's token for the others'.

Account-wide singletons (the IAM OIDC provider for an Azure tenant, AWS outbound web
identity federation) are looked up unless ``provisioning.aws.manage_account_federation``
says this stack owns them: two stacks in one account must not both create them.
The GCP workload identity pool is per stack, named with ``mcrepl:generation`` because
Google keeps a deleted pool's id for 30 days.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
from pulumi_azure_native import cosmosdb, managedidentity, resources

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.provisioning import Runners
from mcrepl.policies.iam import RUNNER_AWS_KEY, RUNNER_ROLES, render_runner

from . import federation_docs as fd
from .azure_replica import AzureReplica
from .identities import resolved_ids, with_principal
from .naming import Names, safe_name
from .topology import planned_name

RUNNER = "runner"


@dataclass(frozen=True)
class Clouds:
    """Where the stack has stores, and so needs a runner identity even with no runner there."""

    aws_provider: aws.Provider | None
    azure: AzureReplica | None
    gcp_buckets: Mapping[str, gcp.storage.Bucket]
    gcp_project: str | None
    gcp_provider: gcp.Provider | None


class Federation(pulumi.ComponentResource):
    """Runner identities per cloud, their grants and their cross-cloud trust."""

    def __init__(self, name: str, config: McreplConfig, resolved: Mapping[str, Any], names: Names,
                 clouds: Clouds, role_resources: list[pulumi.Resource], generation: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mcrepl:federation:Federation", name, {}, opts)
        self.config, self.names, self.name = config, names, name
        self.runners: Runners = config.provisioning.runners
        self.where = set(self.runners.locations())
        self.depends = role_resources
        self.identities: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, dict[str, Any]] = {loc: {} for loc in sorted(self.where)}
        self.gcp_member = f"serviceAccount:{names.service_account(RUNNER)}@{clouds.gcp_project}.iam.gserviceaccount.com"
        self.documents: pulumi.Output[dict] = pulumi.Output.from_input(resolved).apply(
            lambda r: render_runner(config, resolved_ids(config, r), gcp_member=self.gcp_member))
        aws_provider = self.aws_provider = clouds.aws_provider or self._aws_provider()
        self.account_id = self._aws_account(aws_provider) if aws_provider else None
        self.sa = self._gcp_identity(clouds) if clouds.gcp_buckets or "gcp" in self.where else None
        self.uami = self._azure_identity(clouds) if clouds.azure or "azure" in self.where else None
        self.role = self._aws_identity(aws_provider) if aws_provider else None
        if self.uami is not None:
            self._azure_trust()
        if self.sa is not None:
            self._gcp_trust(clouds, generation)
        self.register_outputs({})

    def _child(self, **kw: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kw)

    def _reach(self, target: str, home: dict[str, Any], federated: dict[str, Any]) -> None:
        """What each runner location configures to reach ``target``: ``home`` where it runs
        there, ``federated`` from every other runner location."""
        for loc in self.settings:
            self.settings[loc][target] = home if loc == target else federated

    def _doc(self, cloud: str, role: str) -> pulumi.Output[dict]:
        return self.documents.apply(lambda d: d.get(cloud, {}).get(role, {}))

    # -- AWS: role trusted by home principals, Google ID tokens, Entra ID tokens -----------

    def _aws_provider(self) -> aws.Provider | None:
        if "aws" not in self.where:
            return None
        region = self.runners.aws.region if self.runners.aws else None
        if not region:
            raise ConfigError("an AWS runner in a stack without DynamoDB tables needs a region for IAM calls",
                              path="provisioning.runners.aws.region", fix="set region: us-east-1 (any region)")
        return aws.Provider(f"{self.name}-aws", region=region, opts=self._child())

    def _aws_account(self, provider: aws.Provider) -> pulumi.Output[str]:
        given = self.config.provisioning.aws.account_id
        if given:
            return pulumi.Output.from_input(given)
        return aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=provider)).account_id

    def _azure_oidc_provider(self, provider: aws.Provider) -> pulumi.Output[str]:
        runner = self.runners.azure
        assert runner is not None
        audience = _azure_audience(runner, "AWS")
        if self.config.provisioning.aws.manage_account_federation:
            return aws.iam.OpenIdConnectProvider(f"{self.name}-aws-oidc-azure", url=runner.issuer,
                                                 client_id_lists=[audience],
                                                 opts=self._child(provider=provider)).arn
        return aws.iam.get_open_id_connect_provider_output(
            url=runner.issuer, opts=pulumi.InvokeOutputOptions(provider=provider)).arn

    def _aws_identity(self, provider: aws.Provider) -> aws.iam.Role:
        child = self._child(provider=provider)
        role_name = self.names.aws_role(RUNNER)
        home = fd.aws_home_statement(self.runners.aws.assumed_by) if self.runners.aws else None
        if home is None and not (self.runners.gcp or self.runners.azure):
            raise ConfigError("nothing may assume the AWS runner role: assumed_by is empty and no runner "
                              "runs in another cloud", path="provisioning.runners.aws.assumed_by",
                              fix="name who runs mcrepl sync, e.g. assumed_by: [ec2.amazonaws.com]")
        gcp_trust = None
        if self.sa is not None and self.runners.gcp:
            audience = self.runners.gcp.token_audience
            gcp_trust = self.sa.unique_id.apply(lambda uid: fd.aws_trust_from_gcp(uid, audience))
        azure_trust = None
        if self.uami is not None and self.runners.azure:
            runner = self.runners.azure
            azure_trust = pulumi.Output.all(self._azure_oidc_provider(provider), self.uami.principal_id).apply(
                lambda a: fd.aws_trust_from_azure(a[0], runner.issuer, _azure_audience(runner, "AWS"), a[1]))
        trust = pulumi.Output.all(home, gcp_trust, azure_trust).apply(
            lambda statements: json.dumps(fd.aws_trust_policy(list(statements))))
        role = aws.iam.Role(f"{self.name}-aws-{RUNNER}", name=role_name, assume_role_policy=trust,
                            description="mcrepl sync runner (grants from mcrepl iam render, trust by federation)",
                            opts=child)
        for mcrepl_role in RUNNER_ROLES:
            aws.iam.RolePolicy(f"{self.name}-aws-{RUNNER}-{mcrepl_role}", role=role.id,
                               name=f"{role_name}-{mcrepl_role}"[:128],
                               policy=self._doc("aws", mcrepl_role).apply(lambda d: json.dumps(d[RUNNER_AWS_KEY])),
                               opts=child)
        identity: dict[str, Any] = {"role_arn": role.arn, "role_name": role_name,
                                    "documents": self.documents.apply(lambda d: d.get("aws", {}))}
        if "aws" in self.where and self.uami is not None and not self.runners.aws.oidc_issuer:  # type: ignore[union-attr]
            grant = fd.aws_token_grant()
            aws.iam.RolePolicy(f"{self.name}-aws-{RUNNER}-token", role=role.id, name=f"{role_name}-token"[:128],
                               policy=json.dumps(grant), opts=child)
            identity["token_grant"] = grant
        self.identities["aws"] = identity
        self._reach("aws", {"role_arn": role.arn},
                    {"role_arn": role.arn, "env": role.arn.apply(fd.aws_runner_env)})
        return role

    # -- Azure: managed identity with federated credentials ----------------------------

    def _azure_identity(self, clouds: Clouds) -> managedidentity.UserAssignedIdentity:
        runner = self.runners.azure
        if clouds.azure is not None:
            group, location = clouds.azure.group.name, clouds.azure.plan.write_region
        elif runner is not None and runner.location:
            group = resources.ResourceGroup(f"{self.name}-azure-rg", resource_group_name=self.names.resource_group(),
                                            location=runner.location, opts=self._child()).name
            location = runner.location
        else:
            raise ConfigError("an Azure runner in a stack without a Cosmos DB account needs a location",
                              path="provisioning.runners.azure.location", fix="set location: westeurope")
        self.azure_group = group
        uami = managedidentity.UserAssignedIdentity(
            f"{self.name}-azure-{RUNNER}", resource_name_=self.names.identity(RUNNER), resource_group_name=group,
            location=location, opts=self._child())
        documents = pulumi.Output.all(self._doc_cloud("azure"), uami.principal_id).apply(
            lambda a: with_principal(a[0], a[1]))
        if clouds.azure is not None:
            self._azure_grants(clouds.azure, uami)
        self.identities["azure"] = {"principal_id": uami.principal_id, "client_id": uami.client_id,
                                    "tenant_id": uami.tenant_id, "documents": documents}
        self._reach("azure", {"client_id": uami.client_id}, {
            "client_id": uami.client_id, "tenant_id": uami.tenant_id, "token_audience": fd.AZURE_TOKEN_EXCHANGE,
            "env": pulumi.Output.all(uami.client_id, uami.tenant_id).apply(lambda a: fd.azure_runner_env(*a))})
        return uami

    def _doc_cloud(self, cloud: str) -> pulumi.Output[dict]:
        return self.documents.apply(lambda d: d.get(cloud, {}))

    def _azure_grants(self, azure: AzureReplica, uami: managedidentity.UserAssignedIdentity) -> None:
        """The runner is assigned the capture/apply/verify role definitions of every container."""
        static = render_runner(self.config).get("azure", {})
        for role in RUNNER_ROLES:
            for key in static.get(role, {}):
                assignment = self._doc("azure", role).apply(partial(_path, (key, "roleAssignment", "properties")))
                cosmosdb.SqlResourceSqlRoleAssignment(
                    f"{self.name}-azure-{RUNNER}-{role}-{safe_name(key)}", account_name=azure.account.name,
                    resource_group_name=azure.group.name,
                    role_assignment_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"mcrepl:assignment:{RUNNER}:{role}:{key}")),
                    role_definition_id=assignment.apply(lambda a: a["roleDefinitionId"]),
                    scope=assignment.apply(lambda a: a["scope"]), principal_id=uami.principal_id,
                    opts=self._child(depends_on=self.depends))

    def _azure_trust(self) -> None:
        assert self.uami is not None
        credentials: list[tuple[str, pulumi.Input[str], pulumi.Input[str]]] = []
        if "gcp" in self.where and self.sa is not None:
            credentials.append(("gcp-runner", fd.GOOGLE_ISSUER, self.sa.unique_id))
        if "aws" in self.where and self.role is not None:
            runner = self.runners.aws
            assert runner is not None
            credentials.append(("aws-runner", runner.oidc_issuer or self._aws_issuer(),
                                runner.oidc_subject or self.role.arn))
        for credential, issuer, subject in credentials:
            managedidentity.FederatedIdentityCredential(
                f"{self.name}-azure-{credential}", federated_identity_credential_resource_name=credential,
                resource_group_name=self.azure_group, resource_name_=self.uami.name, issuer=issuer,
                subject=subject, audiences=[fd.AZURE_TOKEN_EXCHANGE], opts=self._child())

    def _aws_issuer(self) -> pulumi.Output[str]:
        provider = self.aws_provider
        if self.config.provisioning.aws.manage_account_federation:
            return aws.iam.OutboundWebIdentityFederation(
                f"{self.name}-aws-outbound", opts=self._child(provider=provider)).issuer_identifier
        return aws.iam.get_outbound_web_identity_federation_output(
            opts=pulumi.InvokeOutputOptions(provider=provider)).issuer_identifier

    # -- GCP: service account, bucket grants, workload identity pool -------------------

    def _gcp_identity(self, clouds: Clouds) -> gcp.serviceaccount.Account:
        if not clouds.gcp_project:
            raise ConfigError("a GCP runner needs a project", path="provisioning.gcp.project",
                              fix="set provisioning.gcp.project (or providers.gcs.project)")
        child = self._child(provider=clouds.gcp_provider)
        sa = gcp.serviceaccount.Account(f"{self.name}-gcp-{RUNNER}", account_id=self.names.service_account(RUNNER),
                                        display_name=f"mcrepl sync runner ({self.names.base})",
                                        project=clouds.gcp_project, opts=child)
        for role in RUNNER_ROLES:
            for dataset, ref in self._gcs_locations():
                key, bucket = f"{dataset}@{ref.at}", planned_name(self.config, self.names, dataset, ref)
                gcp.storage.BucketIAMMember(
                    f"{self.name}-gcp-{RUNNER}-{role}-{safe_name(key)}", bucket=clouds.gcp_buckets[bucket].name,
                    role=self._doc("gcp", role).apply(partial(_path, (key, "bindings", 0, "role"))),
                    member=self.gcp_member,
                    opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[sa, *self.depends])))
        self.gcp_child = child
        self.gcp_project = clouds.gcp_project
        self.identities["gcp"] = {"member": self.gcp_member, "email": sa.email, "unique_id": sa.unique_id,
                                  "documents": self._doc_cloud("gcp")}
        self._reach("gcp", {"service_account": sa.email}, {})    # federated entries: _gcp_trust
        return sa

    def _gcs_locations(self) -> list[tuple[str, Any]]:
        return [(name, ref) for name, ds in self.config.datasets.items() for ref in ds.locations
                if ref.provider == "gcs"]

    def _gcp_trust(self, clouds: Clouds, generation: str) -> None:
        assert self.sa is not None
        others = sorted(self.where - {"gcp"})
        if not others:
            return
        pool = gcp.iam.WorkloadIdentityPool(
            f"{self.name}-gcp-pool", workload_identity_pool_id=self.names.workload_pool(generation),
            project=self.gcp_project, display_name=f"mcrepl {self.names.stack} runners"[:32],
            description=f"mcrepl sync runners of {self.names.base} in {', '.join(others)}", opts=self.gcp_child)
        self.identities["gcp"]["pool"] = pool.name
        for loc in others:
            provider, member = self._gcp_provider(pool, loc)
            gcp.serviceaccount.IAMMember(
                f"{self.name}-gcp-{loc}-impersonates", service_account_id=self.sa.name,
                role=fd.WORKLOAD_IDENTITY_USER, member=member, opts=self.gcp_child)
            if loc == "aws":
                config = pulumi.Output.all(provider.name, self.sa.email).apply(
                    lambda a: fd.credential_config_aws(a[0], a[1]))
            else:
                assert self.uami is not None
                audience = _azure_audience(self.runners.azure, "GCP")
                config = pulumi.Output.all(provider.name, self.sa.email, self.uami.client_id).apply(
                    lambda a: fd.credential_config_azure(a[0], a[1], audience, a[2]))
            self.settings[loc]["gcp"] = {"service_account": self.sa.email, "credential_config": config,
                                         "env": {"GOOGLE_APPLICATION_CREDENTIALS": fd.GCP_CREDENTIALS_FILE}}

    def _gcp_provider(self, pool: gcp.iam.WorkloadIdentityPool,
                      loc: str) -> tuple[gcp.iam.WorkloadIdentityPoolProvider, pulumi.Output[str]]:
        common = gcp.iam.WorkloadIdentityPoolProviderArgs(
            workload_identity_pool_id=pool.workload_identity_pool_id, project=self.gcp_project,
            workload_identity_pool_provider_id=f"{loc}-runner")
        if loc == "aws":
            assert self.account_id is not None
            role_name = self.names.aws_role(RUNNER)
            common.aws = gcp.iam.WorkloadIdentityPoolProviderAwsArgs(account_id=self.account_id)
            common.attribute_mapping = fd.gcp_aws_mapping()
            common.attribute_condition = self.account_id.apply(lambda a: fd.gcp_aws_provider_condition(a, role_name))
            provider = gcp.iam.WorkloadIdentityPoolProvider(f"{self.name}-gcp-aws-provider", common,
                                                            opts=self.gcp_child)
            member = pulumi.Output.all(pool.name, self.account_id).apply(
                lambda a: fd.gcp_aws_member(a[0], a[1], role_name))
            return provider, member
        runner, uami = self.runners.azure, self.uami
        assert runner is not None and uami is not None
        common.oidc = gcp.iam.WorkloadIdentityPoolProviderOidcArgs(
            issuer_uri=runner.issuer, allowed_audiences=[_azure_audience(runner, "GCP")])
        common.attribute_mapping = {"google.subject": "assertion.sub"}
        common.attribute_condition = uami.principal_id.apply(fd.gcp_subject_condition)
        provider = gcp.iam.WorkloadIdentityPoolProvider(f"{self.name}-gcp-azure-provider", common,
                                                        opts=self.gcp_child)
        return provider, pulumi.Output.all(pool.name, uami.principal_id).apply(lambda a: fd.gcp_subject_member(*a))

    def outputs(self) -> dict[str, Any]:
        """``identities`` (per cloud: the runner identity and its documents) and ``runners``
        (per runner location, per target cloud: what that runner configures)."""
        return {"identities": self.identities, "runners": self.settings}


def _path(keys: tuple[Any, ...], document: Any) -> Any:
    """``document[k1][k2]...``: one value out of a resolved rendered document."""
    for key in keys:
        document = document[key]
    return document


def _azure_audience(runner: Any, target: str) -> str:
    if runner is None or not runner.token_audience:
        raise ConfigError(f"an Azure runner reaching {target} presents an Entra ID token for an app registration "
                          "of its tenant, and none is named", path="provisioning.runners.azure.token_audience",
                          fix="az ad app create --display-name mcrepl-runner --identifier-uris api://mcrepl-runner; "
                              "then set token_audience: api://mcrepl-runner")
    return str(runner.token_audience)


__all__ = ["Clouds", "Federation", "RUNNER"]
