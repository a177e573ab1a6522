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


class DnsRecord(_Strict):
    """One write hostname for a dataset: ``name`` under the zone, failing over to ``secondary``.

    ``secondary`` is a ``provider:region`` of the dataset; default: its first replica.
    """

    name: str
    secondary: str | None = None


class DnsProvisioning(_Strict):
    """Write routing for active-passive pairs.

    ``endpoints`` maps a replica (``provider:region``) to the hostname that serves writes
    there (usually your application in that region); a replica without an entry routes
    to its store's own endpoint. AWS primaries get Route 53 failover records in
    ``route53_zone_id``; Azure primaries get a Traffic Manager priority profile.
    """

    zone: str
    route53_zone_id: str | None = None
    ttl: int = Field(60, ge=5, le=3600)
    health_check_path: str = "/"
    endpoints: dict[str, str] = Field(default_factory=dict)
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
    dns: DnsProvisioning | None = None
