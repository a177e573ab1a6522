"""The ``provisioning:`` section of ``mcrepl.yaml``: what only the Pulumi program reads.

Sync, validate and drills ignore this block; ``pulumi up`` needs it to name accounts,
grant identities and route writes. Everything has a safe default so a config without
the section still provisions (keys are created, identities are created, no DNS).
Kept apart from ``config.py`` so the sync model stays small; ``McreplConfig.provisioning``
holds an instance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CosmosConsistency = Literal["Eventual", "ConsistentPrefix", "Session", "BoundedStaleness", "Strong"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsProvisioning(_Strict):
    """AWS account facts and table options.

    One IAM role per mcrepl role (``mcrepl-capture``, ``-apply``, ``-verify``, ``-admin``);
    ``orchestrator_principals`` are the ARNs allowed to assume them (default: the account
    root, i.e. whoever the account's own IAM lets assume them).
    Tables are always on-demand: a replica catching up after an outage writes in bursts.
    """

    account_id: str | None = Field(None, pattern=r"^\d{12}$")
    orchestrator_principals: list[str] = Field(default_factory=list)
    deletion_protection: bool = True
    #: account-wide federation settings (one per account, so never owned by a stack unless
    #: said here): the IAM OIDC provider trusting an Azure runner's tenant, and outbound
    #: web identity federation (the issuer an AWS runner's tokens for Azure come from).
    #: ``False``: looked up, so ``pulumi preview`` fails naming the one that is missing.
    manage_account_federation: bool = False


class AzureProvisioning(_Strict):
    """The one Cosmos DB account of a stack and its resource group.

    Names default to ones derived from the Pulumi project and stack, so two stacks never
    share one. The account's write region is the region of the config's ``cosmos:`` replicas;
    ``failover_regions`` are extra read regions Cosmos itself fails over to, in
    priority order (1, 2, …). ``principals`` maps an mcrepl role (capture, apply, verify,
    admin) to the Entra object id that gets it; a role without an entry gets a
    user-assigned managed identity ``mcrepl-ROLE``.
    """

    subscription_id: str | None = None
    resource_group: str | None = None          # default: PROJECT-STACK
    account_name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{2,43}$")   # default: PROJECT-STACK-HASH
    consistency: CosmosConsistency = "Session"
    automatic_failover: bool = True
    failover_regions: list[str] = Field(default_factory=list)
    principals: dict[str, str] = Field(default_factory=dict)
    #: off by default: reach the account through ``private_endpoint_subnet_ids`` or, with
    #: public access on, only from ``allowed_ip_ranges`` (the runners' egress addresses)
    public_network_access: bool = False
    allowed_ip_ranges: list[str] = Field(default_factory=list)
    private_endpoint_subnet_ids: list[str] = Field(default_factory=list)
    zone_redundant: bool = False
    #: the Key Vault holding the CMK (ARM id); the account's identity is granted its key
    key_vault_id: str | None = None


class GcpProvisioning(_Strict):
    """GCP project (defaults to ``providers.gcs.project``) and who holds each mcrepl role.

    ``members`` maps an mcrepl role to an IAM member such as
    ``serviceAccount:x@p.iam.gserviceaccount.com``; a role without an entry gets a
    service account ``mcrepl-ROLE`` (the member ``mcrepl iam render`` names).
    """

    project: str | None = None
    members: dict[str, str] = Field(default_factory=dict)


AZURE_TOKEN_EXCHANGE = "api://AzureADTokenExchange"


class AwsRunner(_Strict):
    """``mcrepl sync`` runs in AWS as the stack's runner role.

    ``assumed_by``: who may assume the role at home (service principals such as
    ``ec2.amazonaws.com`` for an instance profile, or role ARNs). Azure accepts only OIDC
    tokens, so an AWS runner reaching Cosmos DB presents one from ``oidc_issuer`` with
    subject ``oidc_subject``: by default the account's outbound web identity federation
    issuer (``sts:GetWebIdentityToken``, subject = the runner role ARN); an EKS cluster's
    issuer and ``system:serviceaccount:NS:SA`` work too. ``region``: where IAM calls go
    when the stack has no DynamoDB table.
    """

    assumed_by: list[str] = Field(default_factory=lambda: ["ec2.amazonaws.com"])
    oidc_issuer: str | None = Field(None, pattern=r"^https://")
    oidc_subject: str | None = None
    region: str | None = None


class AzureRunner(_Strict):
    """``mcrepl sync`` runs in Azure as the stack's runner managed identity.

    AWS and GCP trust the identity's Entra ID tokens: issued by ``token_issuer`` (default
    ``https://sts.windows.net/TENANT/``, the v1 issuer of an app registration's tokens) for
    ``token_audience``, the Application ID URI of an app registration made for this purpose
    (``az ad app create``; any app of the tenant will do, it holds no permissions).
    ``location``: where the identity lives when the stack has no Cosmos DB account.
    """

    tenant_id: str = Field(pattern=r"^[0-9a-fA-F-]{36}$")
    token_audience: str | None = None
    token_issuer: str | None = Field(None, pattern=r"^https://")
    location: str | None = None

    @property
    def issuer(self) -> str:
        """The ``iss`` of the runner's tokens."""
        return self.token_issuer or f"https://sts.windows.net/{self.tenant_id}/"


class GcpRunner(_Strict):
    """``mcrepl sync`` runs in GCP as the stack's runner service account.

    AWS trusts the account's Google ID tokens (issuer ``accounts.google.com``) requested
    for ``token_audience``; Azure trusts them for ``api://AzureADTokenExchange``.
    """

    token_audience: str = "sts.amazonaws.com"


class Runners(_Strict):
    """Where ``mcrepl sync`` runs. Each runner location gets a runner identity holding the
    capture, apply and verify grants in its own cloud, and every other cloud of the stack
    trusts it through workload identity federation: no long-lived key anywhere."""

    aws: AwsRunner | None = None
    azure: AzureRunner | None = None
    gcp: GcpRunner | None = None

    def locations(self) -> list[str]:
        """The clouds runners run in (``aws``, ``azure``, ``gcp``)."""
        return [cloud for cloud in ("aws", "azure", "gcp") if getattr(self, cloud) is not None]


class DnsRecord(_Strict):
    """One write hostname for a dataset: ``name`` under the zone, failing over to ``secondary``.

    ``secondary`` is a ``provider:region`` of the dataset; default: its first replica.
    """

    name: str
    secondary: str | None = None


class DnsProvisioning(_Strict):
    """Write routing for active-passive pairs.

    ``endpoints`` maps a replica (``provider:region``) to the hostname that serves writes
    there (your application in that region; every routed replica needs one). AWS
    primaries get Route 53 failover records in ``route53_zone_id``; Azure primaries get a
    Traffic Manager priority profile. ``mcrepl failover promote`` switches them; with
    ``health_check_failover`` the clouds' health checks may also move traffic on their
    own, before any promotion (only for applications whose writers are fenced).
    """

    zone: str
    route53_zone_id: str | None = None
    ttl: int = Field(60, ge=5, le=3600)
    health_check_path: str = "/"
    endpoints: dict[str, str] = Field(default_factory=dict)
    health_check_failover: bool = False
    records: dict[str, DnsRecord] = Field(default_factory=dict, description="dataset → record")

    @field_validator("records", mode="before")
    @classmethod
    def _short_form(cls, v: object) -> object:
        if isinstance(v, dict):
            return {k: {"name": r} if isinstance(r, str) else r for k, r in v.items()}
        return v


class Provisioning(_Strict):
    """Everything ``pulumi/`` needs beyond the sync config."""

    aws: AwsProvisioning = AwsProvisioning()
    azure: AzureProvisioning = AzureProvisioning()
    gcp: GcpProvisioning = GcpProvisioning()
    runners: Runners = Runners()
    dns: DnsProvisioning | None = None
