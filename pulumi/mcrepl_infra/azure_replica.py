"""The stack's Cosmos DB account, its SQL database and one container per dataset.

Guarantees: the account's locations in failover-priority order (0 = the write region
of the config's ``cosmos:`` replicas, then ``provisioning.azure.failover_regions``);
the configured consistency level; automatic failover; TLS 1.2; continuous backup (the
Cosmos counterpart of DynamoDB PITR); a customer-managed key when a replica names a
Key Vault key (``keyVaultKeyUri``; the vault must grant the Azure Cosmos DB principal
get/wrapKey/unwrapKey first); local key auth disabled when ``providers.cosmos.auth`` is
``aad`` so only Entra ID role assignments can read or write.

Containers use partition key ``/id`` because the Cosmos adapter stores the record key
in ``id``. ``defaultTtl = -1`` turns TTL on without a default expiry: live items never
expire, and mcrepl purges tombstones itself once ``sync.tombstone_retention`` has passed
(an item-level ``ttl`` would also be honoured). A fixed container TTL would expire live
data, so none is set.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import cosmosdb, resources

from .topology import CosmosPlan

PARTITION_KEY_PATH = "/id"
TOMBSTONE_DEFAULT_TTL = -1


class AzureReplica(pulumi.ComponentResource):
    """Resource group, Cosmos account, SQL database and containers for one plan."""

    account: cosmosdb.DatabaseAccount
    containers: dict[str, cosmosdb.SqlResourceSqlContainer]

    def __init__(self, name: str, plan: CosmosPlan, *, resource_group: str, account_name: str,
                 consistency: str, automatic_failover: bool, rbac_only: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mcrepl:azure:Replica", name, {"location": plan.write_region}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.plan = plan
        self.group = resources.ResourceGroup(f"{name}-rg", resource_group_name=resource_group,
                                             location=plan.write_region, opts=child)
        self.account_name = account_name
        self.account = cosmosdb.DatabaseAccount(
            f"{name}-account",
            account_name=account_name,
            resource_group_name=self.group.name,
            location=plan.write_region,
            kind="GlobalDocumentDB",
            database_account_offer_type=cosmosdb.DatabaseAccountOfferType.STANDARD,
            locations=[cosmosdb.LocationArgs(location_name=region, failover_priority=priority,
                                             is_zone_redundant=False)
                       for priority, region in enumerate(plan.locations)],
            consistency_policy=cosmosdb.ConsistencyPolicyArgs(default_consistency_level=consistency,
                                                              **_staleness(consistency)),
            enable_automatic_failover=automatic_failover,
            enable_multiple_write_locations=False,
            key_vault_key_uri=plan.kms_key,
            disable_local_auth=rbac_only,
            disable_key_based_metadata_write_access=rbac_only,
            minimal_tls_version="Tls12",
            backup_policy=cosmosdb.ContinuousModeBackupPolicyArgs(type="Continuous"),
            tags={"mcrepl:replica": f"cosmos:{plan.write_region}"},
            opts=child)
        self.database = cosmosdb.SqlResourceSqlDatabase(
            f"{name}-db", account_name=self.account.name, resource_group_name=self.group.name,
            database_name=plan.database, resource=cosmosdb.SqlDatabaseResourceArgs(id=plan.database),
            opts=child)
        self.containers = {c.name: cosmosdb.SqlResourceSqlContainer(
            f"{name}-{c.dataset}",
            account_name=self.account.name, resource_group_name=self.group.name,
            database_name=self.database.name, container_name=c.name,
            resource=cosmosdb.SqlContainerResourceArgs(
                id=c.name,
                partition_key=cosmosdb.ContainerPartitionKeyArgs(paths=[PARTITION_KEY_PATH], kind="Hash"),
                default_ttl=TOMBSTONE_DEFAULT_TTL),
            opts=child) for c in plan.containers}
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
