"""The Pulumi program: one ``mcrepl.yaml`` → policy-checked stores, identities and DNS.

Order matters and is guaranteed: the config is loaded and the policy engine evaluated
*before* any resource is declared, so a topology the engine rejects fails ``pulumi
preview`` with the engine's rule ids and creates nothing. Then each cloud's replicas,
the orchestrator identities (documents from ``mcrepl.policies.iam``, the same renderer
as ``mcrepl iam render``), DNS write routing, and the stack outputs
``mcrepl config from-stack`` reads (format ``mcrepl-stack/1``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi
import pulumi_gcp as gcp

from mcrepl.adapters.base import ConfigError, PolicyError
from mcrepl.orchestrator.config import McreplConfig

from .aws_replica import AwsReplica
from .azure_replica import AzureReplica
from .dns_failover import DnsFailover, WritePair, refuse_unroutable, write_host
from .federation import Clouds, Federation
from .gcp_replica import GCS_KEY_NAME, GcpReplica, kms_location, retention_days
from .identities import Identities
from .naming import Names
from .stack_settings import check_stack_settings, gcp_project
from .topology import Topology, plan_topology, planned_name

STACK_OUTPUT_FORMAT = "mcrepl-stack/1"
NON_BLOCKING = frozenset({"warning", "warn", "info", "advisory"})


@dataclass
class Stack:
    """What one run declared: the plan, the components and the exported outputs."""

    config: McreplConfig
    topology: Topology
    names: Names
    aws: dict[str, AwsReplica] = field(default_factory=dict)          # region → replica
    azure: AzureReplica | None = None
    gcp: dict[str, GcpReplica] = field(default_factory=dict)          # location → replica
    identities: Identities | None = None
    federation: Federation | None = None
    dns: dict[str, DnsFailover] = field(default_factory=dict)         # dataset → routing
    outputs: dict[str, Any] = field(default_factory=dict)


def check_policies(config: McreplConfig, planned: dict[str, Any] | None = None) -> None:
    """Run the policy engine; raise :class:`PolicyError` naming every blocking rule id.

    ``planned`` describes what this program will create (the ids of keys it makes), in the
    stack-output shape the engine reads, so ``at_rest: cmk_required`` accepts a store
    whose key the stack itself provides. Cosmos failover regions, which only the
    ``provisioning`` section names, are checked by the engine's rule
    ``residency.cosmos-failover``, as ``mcrepl validate`` checks them. Warnings are
    logged to the Pulumi log and do not stop the deployment.
    """
    from mcrepl.policies.engine import evaluate

    violations = evaluate(config, planned)
    blocking = [v for v in violations if str(v.severity).lower() not in NON_BLOCKING]
    for v in violations:
        if v not in blocking:
            pulumi.log.warn(f"[{v.rule_id}] {v.resource}: {v.why} (fix: {v.fix})")
    if blocking:
        ids = sorted({v.rule_id for v in blocking})
        lines = "\n".join(f"  [{v.rule_id}] {v.resource}: {v.why} (fix: {v.fix})" for v in blocking)
        raise PolicyError(f"mcrepl policy engine refused this topology ({', '.join(ids)}):\n{lines}",
                          violations=blocking)


def stack_names(config: McreplConfig, stack: str, project: str | None = None) -> Names:
    """The stack's :class:`Names`; the cloud account ids go into global-name hashes."""
    prov = config.provisioning
    scope = "/".join(str(x or "") for x in (prov.aws.account_id, prov.azure.subscription_id,
                                             prov.gcp.project or config.providers.gcs.project))
    return Names(project or pulumi.get_project(), stack, scope)


def generation() -> str:
    """``mcrepl:generation`` (default ``1``; ``mcrepl:kmsGeneration`` is read too): part of the
    names Google keeps after deletion, Cloud KMS key rings (forever) and workload identity
    pools (30 days); bump it to ``up`` a stack again after ``destroy``."""
    config = pulumi.Config("mcrepl")
    return config.get("generation") or config.get("kmsGeneration") or "1"


def planned_outputs(config: McreplConfig, names: Names) -> dict[str, Any]:
    """The keys this program will create, named the way the stack outputs will name them.

    AWS: the stack's alias in the region (needs ``provisioning.aws.account_id``);
    GCS: ``projects/P/locations/L/keyRings/RING/cryptoKeys/mcrepl-buckets``.
    """
    account = config.provisioning.aws.account_id
    project = gcp_project(config)
    datasets: dict[str, dict[str, Any]] = {}
    for name, ds in config.datasets.items():
        for ref in ds.locations:
            key = ref.kms_key
            if key is None and ref.provider == "dynamodb" and account:
                key = f"arn:aws:kms:{ref.region}:{account}:{names.kms_alias(ref.region)}"
            elif key is None and ref.provider == "gcs":
                key = (f"projects/{project}/locations/{kms_location(ref.region)}/keyRings/"
                       f"{names.key_ring(ref.region, generation())}/cryptoKeys/{GCS_KEY_NAME}")
            if key:
                datasets.setdefault(name, {})[ref.at] = {"kms_key": key}
    return {"format": STACK_OUTPUT_FORMAT, "datasets": datasets}


def planned_for(stack: str, project: str | None = None) -> Callable[[McreplConfig], dict[str, Any]]:
    """:func:`planned_outputs` of a stack, as ``load_checked(stack_outputs=...)`` takes it."""
    return lambda config: planned_outputs(config, stack_names(config, stack, project))


def build(config: McreplConfig, stack: str) -> Stack:
    """Declare every resource for ``config`` and export the outputs; policy check first."""
    check_stack_settings(config)
    names = stack_names(config, stack)
    check_policies(config, planned_outputs(config, names))
    prov = config.provisioning
    built = Stack(config, plan_topology(config, names), names)
    for region, plans in built.topology.tables.items():
        built.aws[region] = AwsReplica(f"aws-{region}", region, plans, alias=names.kms_alias(region),
                                       deletion_protection=prov.aws.deletion_protection)
    account = prov.azure.account_name or names.cosmos_account()
    if built.topology.cosmos is not None:
        built.azure = AzureReplica("azure", built.topology.cosmos, prov.azure,
                                   resource_group=prov.azure.resource_group or names.resource_group(),
                                   account_name=account, identity_name=names.identity("cosmos-cmk"),
                                   rbac_only=config.providers.cosmos.auth == "aad")
    project = gcp_project(config)
    gcp_provider = gcp.Provider("gcp", project=project) if built.topology.buckets or prov.runners.gcp else None
    days = retention_days(config.sync.tombstone_retention.total_seconds())
    for location, bucket_plans in built.topology.buckets.items():
        built.gcp[location] = GcpReplica(f"gcp-{location}", location, bucket_plans, project=project,
                                         ring_name=names.key_ring(location, generation()),
                                         noncurrent_days=days, provider=gcp_provider)
    stores = store_outputs(built, project)
    buckets = {n: b for g in built.gcp.values() for n, b in g.buckets.items()}
    built.identities = Identities("identities", config, stores, names, aws_replicas=built.aws, azure=built.azure,
                                  gcp_buckets=buckets, gcp_project=project, gcp_provider=gcp_provider)
    if prov.runners.locations():
        clouds = Clouds(next((r.provider for r in built.aws.values()), None), built.azure, buckets,
                        project, gcp_provider)
        built.federation = Federation("federation", config, stores, names, clouds,
                                      built.identities.role_resources, generation())
    _declare_dns(built)
    built.outputs = {**stores, "identities": built.identities.outputs(),
                     "dns": {d: r.outputs() for d, r in built.dns.items()}}
    if built.federation is not None:
        built.outputs["federation"] = built.federation.outputs()
    for key, value in built.outputs.items():
        pulumi.export(key, value)
    return built


def _declare_dns(built: Stack) -> None:
    """One :class:`DnsFailover` per ``provisioning.dns.records`` entry."""
    dns = built.config.provisioning.dns
    if dns is None:
        return
    for dataset, record in dns.records.items():
        where = f"provisioning.dns.records.{dataset}"
        ds = built.config.datasets.get(dataset)
        if ds is None:
            raise ConfigError(f"DNS record for unknown dataset {dataset!r}", path=where,
                              fix=f"use one of {', '.join(built.config.datasets)}")
        secondary = record.secondary or ds.replicas[0].at
        if secondary not in {r.at for r in ds.replicas}:
            raise ConfigError(f"secondary {secondary!r} is not a replica of {dataset!r}", path=where,
                              fix=f"use one of {', '.join(r.at for r in ds.replicas)}")
        refuse_unroutable(dataset, ds.primary.at)
        hosts = {ref.at: dns.endpoints[ref.at] for ref in ds.locations if ref.at in dns.endpoints}
        pair = WritePair(dataset, f"{record.name}.{dns.zone}", ds.primary.at, write_host(dns, dataset, ds.primary.at),
                         secondary, write_host(dns, dataset, secondary), hosts)
        same_region = built.aws.get(ds.primary.region)
        aws_provider = same_region.provider if same_region else \
            next((r.provider for r in built.aws.values()), None)
        group = built.azure.group.name if built.azure else None
        built.dns[dataset] = DnsFailover(f"dns-{dataset}", pair, dns, profile_name=built.names.traffic_manager(dataset),
                                         aws_provider=aws_provider,
                                         resource_group=group)


def store_outputs(built: Stack, project: str) -> dict[str, Any]:
    """``format``, ``providers`` and ``datasets`` of the stack outputs (identities and DNS
    are added by :func:`build`): what ``mcrepl config from-stack`` and the engine read."""
    config = built.config
    providers: dict[str, Any] = {}
    if built.aws:
        providers["dynamodb"] = {"regions": sorted(built.aws),
                                 "kms_keys": {r: a.kms_key_arn for r, a in built.aws.items() if a.kms_key_arn}}
    if built.azure:
        providers["cosmos"] = {**built.azure.outputs(), "endpoint": built.azure.account.document_endpoint,
                               "auth": config.providers.cosmos.auth}
    if built.gcp:
        providers["gcs"] = {"project": project,
                            "kms_keys": {loc: g.kms_key_id for loc, g in built.gcp.items() if g.kms_key_id}}
    datasets: dict[str, dict[str, Any]] = {}
    for name, ds in config.datasets.items():
        entry: dict[str, Any] = {}
        for ref in ds.locations:
            resource = planned_name(config, built.names, name, ref)
            if ref.provider == "dynamodb":
                detail: dict[str, Any] = dict(built.aws[ref.region].outputs()[resource])
            elif ref.provider == "cosmos":
                assert built.azure is not None
                detail = {"account_uri": built.azure.account.document_endpoint,
                          "database": built.azure.plan.database}
                if built.azure.plan.kms_key:
                    detail["kms_key"] = built.azure.plan.kms_key
            else:
                detail = dict(built.gcp[ref.region].outputs()[resource])
            entry[ref.at] = {"resource": resource, "region": ref.region, **detail}
        datasets[name] = entry
    return {"format": STACK_OUTPUT_FORMAT, "providers": providers, "datasets": datasets,
            "name_prefix": built.names.custom_role_prefix()}


def config_path(pulumi_config: pulumi.Config, base: Path) -> Path:
    """``mcrepl:configPath`` (or ``$MCREPL_CONFIG``), relative paths taken from the program folder."""
    raw = pulumi_config.get("configPath") or os.environ.get("MCREPL_CONFIG")
    if not raw:
        raise ConfigError("the stack does not say which mcrepl.yaml to provision",
                          path="mcrepl:configPath",
                          fix="run: pulumi config set mcrepl:configPath ../examples/pulumi/aws-primary.yaml")
    path = Path(raw)
    return path if path.is_absolute() else base / path


def run(base: Path) -> Stack:
    """Entry point for ``__main__.py``: read the stack config, load and check the file, build.

    The file passes the same validation as ``mcrepl validate`` and every command
    (:func:`mcrepl.orchestrator.validation.load_checked`), with the keys this program is
    about to create counted as present, before any resource is declared.
    """
    from mcrepl.orchestrator.validation import load_checked
    config = load_checked(config_path(pulumi.Config("mcrepl"), base), stack_outputs=planned_for(pulumi.get_stack()))
    return build(config, pulumi.get_stack())
