"""The stack's Cosmos DB account, its SQL database and one container per dataset.

Guarantees: the account's locations in failover-priority order (0 = the write region
of the config's ``cosmos:`` replicas, then ``provisioning.azure.failover_regions``);
the configured consistency level; automatic failover; TLS 1.2; continuous backup (the
Cosmos counterpart of DynamoDB PITR); a customer-managed key when a replica names a
Key Vault key (``keyVaultKeyUri``; the vault must grant the Azure Cosmos DB principal
get/wrapKey/unwrapKey first); local key auth disabled when ``providers.cosmos.auth`` is
``aad`` so only Entra ID role assignments can read or write.

With a customer-managed key the account gets a user-assigned identity and
``defaultIdentity: UserAssignedIdentity=ID`` (Microsoft documents CMK with continuous
backup as unsupported with the system identity), and that identity is granted "Key Vault
Crypto Service Encryption User" on ``provisioning.azure.key_vault_id`` before the account
exists. Public network access is off unless ``public_network_access`` is set (then only
``allowed_ip_ranges`` may connect); ``private_endpoint_subnet_ids`` add private endpoints;
``zone_redundant`` spreads every region over availability zones. The account, database and
containers are ``protect``ed.

Containers use partition key ``/id`` because the Cosmos adapter stores the record key
in ``id``. ``defaultTtl = -1`` turns TTL on without a default expiry: live items never
expire, and mcrepl purges tombstones itself once ``sync.tombstone_retention`` has passed
(an item-level ``ttl`` would also be honoured). A fixed container TTL would expire live
data, so none is set.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import authorization, cosmosdb, managedidentity, network, resources

from mcrepl.orchestrator.provisioning import AzureProvisioning

from .topology import CosmosPlan

#: "Key Vault Crypto Service Encryption User": wrap/unwrap with the vault's keys, nothing else
KEY_VAULT_CRYPTO_SERVICE_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"

PARTITION_KEY_PATH = "/id"
TOMBSTONE_DEFAULT_TTL = -1


class AzureReplica(pulumi.ComponentResource):
    """Resource group, Cosmos account, SQL database and containers for one plan."""

    account: cosmosdb.DatabaseAccount
    containers: dict[str, cosmosdb.SqlResourceSqlContainer]

    def __init__(self, name: str, plan: CosmosPlan, prov: AzureProvisioning, *, resource_group: str,
                 account_name: str, identity_name: str, rbac_only: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mcrepl:azure:Replica", name, {"location": plan.write_region}, opts)
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, protect=True)
        self.plan = plan
        self.group = resources.ResourceGroup(f"{name}-rg", resource_group_name=resource_group,
                                             location=plan.write_region, opts=child)
        self.account_name = account_name
        self.cmk_identity: managedidentity.UserAssignedIdentity | None = None
        identity, default_identity, depends = None, None, []
        if plan.kms_key:
            self.cmk_identity = managedidentity.UserAssignedIdentity(
                f"{name}-cmk-identity", resource_name_=identity_name, resource_group_name=self.group.name,
                location=plan.write_region, opts=child)
            identity = cosmosdb.ManagedServiceIdentityArgs(
                type="UserAssigned", user_assigned_identities=self.cmk_identity.id.apply(lambda i: {i: {}}))
            default_identity = self.cmk_identity.id.apply(lambda i: f"UserAssignedIdentity={i}")
            if prov.key_vault_id:
                depends.append(authorization.RoleAssignment(
                    f"{name}-cmk-vault", principal_id=self.cmk_identity.principal_id,
                    principal_type="ServicePrincipal", scope=prov.key_vault_id,
                    role_definition_id=f"{prov.key_vault_id.split('/resourceGroups/')[0]}/providers/"
                                       f"Microsoft.Authorization/roleDefinitions/{KEY_VAULT_CRYPTO_SERVICE_USER}",
                    opts=child))
        self.account = cosmosdb.DatabaseAccount(
            f"{name}-account",
            account_name=account_name,
            resource_group_name=self.group.name,
            location=plan.write_region,
            kind="GlobalDocumentDB",
            database_account_offer_type=cosmosdb.DatabaseAccountOfferType.STANDARD,
            locations=[cosmosdb.LocationArgs(location_name=region, failover_priority=priority,
                                             is_zone_redundant=prov.zone_redundant)
                       for priority, region in enumerate(plan.locations)],
            consistency_policy=cosmosdb.ConsistencyPolicyArgs(default_consistency_level=prov.consistency,
                                                              **_staleness(prov.consistency)),
            enable_automatic_failover=prov.automatic_failover,
            enable_multiple_write_locations=False,
            key_vault_key_uri=plan.kms_key,
            identity=identity,
            default_identity=default_identity,
            disable_local_auth=rbac_only,
            disable_key_based_metadata_write_access=rbac_only,
            public_network_access="Enabled" if prov.public_network_access else "Disabled",
            ip_rules=[cosmosdb.IpAddressOrRangeArgs(ip_address_or_range=r) for r in prov.allowed_ip_ranges] or None,
            minimal_tls_version="Tls12",
            backup_policy=cosmosdb.ContinuousModeBackupPolicyArgs(type="Continuous"),
            tags={"mcrepl:replica": f"cosmos:{plan.write_region}"},
            opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=depends)))
        for index, subnet in enumerate(prov.private_endpoint_subnet_ids):
            network.PrivateEndpoint(
                f"{name}-private-{index}", resource_group_name=self.group.name, location=plan.write_region,
                subnet=network.SubnetArgs(id=subnet),
                private_link_service_connections=[network.PrivateLinkServiceConnectionArgs(
                    name=f"{account_name}-sql", private_link_service_id=self.account.id, group_ids=["Sql"])],
                opts=child)
        self.database = cosmosdb.SqlResourceSqlDatabase(
            f"{name}-db", account_name=self.account.name, resource_group_name=self.group.name,
            database_name=plan.database, resource=cosmosdb.SqlDatabaseResourceArgs(id=plan.database),
            opts=kept)
        self.containers = {c.name: cosmosdb.SqlResourceSqlContainer(
            f"{name}-{c.dataset}",
            account_name=self.account.name, resource_group_name=self.group.name,
            database_name=self.database.name, container_name=c.name,
            resource=cosmosdb.SqlContainerResourceArgs(
                id=c.name,
                partition_key=cosmosdb.ContainerPartitionKeyArgs(paths=[PARTITION_KEY_PATH], kind="Hash"),
                default_ttl=TOMBSTONE_DEFAULT_TTL),
            opts=kept) for c in plan.containers}
        self.register_outputs({"account": self.account.document_endpoint})

    @property
    def scope(self) -> pulumi.Output[str]:
        """The account's ARM id, the scope Cosmos data-plane role assignments hang off."""
        return self.account.id

    def outputs(self) -> dict[str, pulumi.Input[object]]:
        """Account URI and ids for the stack outputs."""
        return {"account_name": self.account.name, "account_uri": self.account.document_endpoint,
                "account_id": self.account.id, "resource_group": self.group.name,
                "database": self.plan.database, "locations": self.plan.locations,
                "containers": sorted(self.containers)}


def _staleness(consistency: str) -> dict[str, int]:
    """BoundedStaleness needs its bounds; these are the smallest multi-region values Azure accepts."""
    if consistency == "BoundedStaleness":
        return {"max_interval_in_seconds": 300, "max_staleness_prefix": 100000}
    return {}
