"""From ``mcrepl.yaml`` to the list of stores to provision, without touching Pulumi.

Pure functions: the components only turn these plans into resources, and tests can
check the plan and the resources against each other. Physical names come from
:class:`~.naming.Names` (project + stack), or a location's explicit ``resource``; the
stack outputs report them and ``mcrepl config from-stack`` writes them into the config,
so the sync engine opens exactly what was made here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mcrepl.adapters.base import ConfigError, KeySchema
from mcrepl.orchestrator.config import McreplConfig, ReplicaRef

from .naming import Names


@dataclass(frozen=True)
class TablePlan:
    """One DynamoDB table of one dataset in one region."""

    dataset: str
    location: str
    name: str
    key_schema: KeySchema
    kms_key: str | None


@dataclass(frozen=True)
class ContainerPlan:
    """One Cosmos SQL container of one dataset (partition key ``/id``, see azure_replica)."""

    dataset: str
    location: str
    name: str
    kms_key: str | None


@dataclass(frozen=True)
class BucketPlan:
    """One Cloud Storage bucket of one dataset in one location."""

    dataset: str
    location: str
    name: str
    kms_key: str | None


@dataclass
class CosmosPlan:
    """The stack's single Cosmos account: write region first, then failover regions."""

    write_region: str
    failover_regions: list[str]
    database: str
    containers: list[ContainerPlan] = field(default_factory=list)

    @property
    def locations(self) -> list[str]:
        """Every region of the account, in failover priority order (index = priority)."""
        return [self.write_region, *self.failover_regions]

    @property
    def kms_key(self) -> str | None:
        """The account's Key Vault key URI: CMK is account-wide in Cosmos DB."""
        keys = {c.kms_key for c in self.containers if c.kms_key}
        return next(iter(keys)) if keys else None


@dataclass
class Topology:
    """Everything the config asks for, grouped the way the clouds group it."""

    tables: dict[str, list[TablePlan]] = field(default_factory=dict)     # AWS region → tables
    cosmos: CosmosPlan | None = None
    buckets: dict[str, list[BucketPlan]] = field(default_factory=dict)   # GCS location → buckets


def planned_name(config: McreplConfig, names: Names, dataset: str, ref: ReplicaRef) -> str:
    """The physical table/container/bucket name of ``dataset`` at ``ref`` in this stack."""
    if ref.resource:
        return ref.resource
    if ref.provider == "dynamodb":
        return names.table(dataset)
    if ref.provider == "cosmos":
        return dataset            # inside the stack's own account
    return names.bucket(dataset, ref.region)


def plan_topology(config: McreplConfig, names: Names) -> Topology:
    """Group every dataset location by provider and region.

    Raises :class:`ConfigError` for what one stack cannot hold: Cosmos replicas in more than
    one region (a stack has one Cosmos account with one write region; Cosmos replicates to
    its own failover regions) or different Key Vault keys on one account.
    """
    topo = Topology()
    cosmos_regions: dict[str, list[str]] = {}
    containers: list[ContainerPlan] = []
    for name, ds in config.datasets.items():
        for ref in ds.locations:
            physical = planned_name(config, names, name, ref)
            if ref.provider == "dynamodb":
                topo.tables.setdefault(ref.region, []).append(
                    TablePlan(name, ref.at, physical, ds.key_schema(), ref.kms_key))
            elif ref.provider == "cosmos":
                cosmos_regions.setdefault(ref.region, []).append(f"datasets.{name}")
                containers.append(ContainerPlan(name, ref.at, physical, ref.kms_key))
            elif ref.provider == "gcs":
                topo.buckets.setdefault(ref.region, []).append(
                    BucketPlan(name, ref.at, physical, ref.kms_key))
            else:
                raise ConfigError(f"this program does not provision {ref.provider} locations ({ref.at} in "
                                  f"datasets.{name})", path=f"datasets.{name}",
                                  fix=f"create the {ref.provider} store outside this stack (mcrepl creates a "
                                      "missing bucket where its credentials allow), or leave the location out "
                                      "of the config this stack reads")
    if len(cosmos_regions) > 1:
        where = "; ".join(f"{region}: {', '.join(paths)}" for region, paths in cosmos_regions.items())
        raise ConfigError(f"Cosmos replicas in {len(cosmos_regions)} regions ({where}); one stack "
                          "provisions one Cosmos account with one write region",
                          path="datasets", fix="put every cosmos: replica in one region and list extra "
                          "regions under provisioning.azure.failover_regions")
    if len({c.kms_key for c in containers if c.kms_key}) > 1:
        raise ConfigError("cosmos replicas name different kms_key values; Cosmos DB encrypts the "
                          "whole account with one Key Vault key", path="datasets",
                          fix="use the same kms_key on every cosmos: replica")
    if cosmos_regions:
        write_region = next(iter(cosmos_regions))
        azure = config.provisioning.azure
        if write_region in azure.failover_regions:
            raise ConfigError(f"{write_region} is the Cosmos write region and also a failover region",
                              path="provisioning.azure.failover_regions",
                              fix=f"remove {write_region} from failover_regions")
        topo.cosmos = CosmosPlan(write_region, list(azure.failover_regions),
                                 config.providers.cosmos.database, containers)
    return topo


def regions_of(topo: Topology) -> dict[str, list[str]]:
    """``provider → regions`` the stack will create resources in (for residency checks)."""
    out: dict[str, list[str]] = {}
    if topo.tables:
        out["dynamodb"] = sorted(topo.tables)
    if topo.cosmos:
        out["cosmos"] = topo.cosmos.locations
    if topo.buckets:
        out["gcs"] = sorted(topo.buckets)
    return out
