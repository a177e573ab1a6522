"""Moving write traffic with the data: re-point a dataset's DNS write record at its new primary.

The records are the ones the Pulumi program creates from ``provisioning.dns`` (see
``pulumi/mcrepl_infra/dns_failover.py``): for a dataset listed in ``dns.records`` whose
configured primary is on AWS, a Route 53 failover pair ``NAME.ZONE`` in
``route53_zone_id`` — PRIMARY (health-checked) and SECONDARY. Promotion points PRIMARY at
the new primary's write host and SECONDARY at the previous one's; each host is
``dns.endpoints[location]`` or the store's own regional endpoint.

A dataset whose configured primary is on Azure routes through a Traffic Manager
profile: mcrepl does not call Azure Resource Manager, so :func:`switch_writes` returns
the exact command to run instead of pretending it switched anything. A dataset without a
``dns.records`` entry has nothing to switch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import McreplConfig

#: ``$MCREPL_ROUTE53_ENDPOINT`` sends Route 53 calls elsewhere (moto in tests); default AWS
ENDPOINT_ENV = "MCREPL_ROUTE53_ENDPOINT"


@dataclass
class DnsSwitch:
    """What switching write routing did: ``status`` is ``switched``, ``already``, ``manual`` or ``none``."""

    status: str
    fqdn: str | None = None
    routing: str | None = None
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def write_host(config: McreplConfig, location: str) -> str:
    """The host that serves writes at ``location``: ``dns.endpoints`` or the store's regional endpoint."""
    dns = config.provisioning.dns
    assert dns is not None
    if location in dns.endpoints:
        return dns.endpoints[location]
    provider, region = location.split(":", 1)
    if provider == "dynamodb":
        return f"dynamodb.{region}.amazonaws.com"
    if provider == "gcs":
        return "storage.googleapis.com"
    raise ConfigError(f"no write host for {location}: a Cosmos DB account's endpoint is not derivable here",
                      path="provisioning.dns.endpoints", fix=f"add {location}: HOSTNAME to dns.endpoints")


def record_of(config: McreplConfig, dataset: str) -> tuple[str, str] | None:
    """``(fqdn, routing)`` of the dataset's write record (``route53`` or ``traffic-manager``), if it has one."""
    dns = config.provisioning.dns
    if dns is None or dataset not in dns.records:
        return None
    fqdn = f"{dns.records[dataset].name}.{dns.zone}"
    configured = config.datasets[dataset].primary.provider
    return fqdn, "route53" if configured == "dynamodb" else "traffic-manager"


def switch_writes(config: McreplConfig, dataset: str, new_primary: str, previous: str, *,
                  dry_run: bool = False, local_endpoints: Mapping[str, str] | None = None) -> DnsSwitch:
    """Point the dataset's write record at ``new_primary`` (``previous`` becomes the fallback); idempotent."""
    found = record_of(config, dataset)
    if found is None:
        return DnsSwitch("none", detail=f"no provisioning.dns.records entry for {dataset}: nothing to switch")
    fqdn, routing = found
    dns = config.provisioning.dns
    assert dns is not None
    if routing == "traffic-manager":
        return DnsSwitch("manual", fqdn, routing, detail=(
            f"{fqdn} routes through an Azure Traffic Manager profile, which mcrepl does not change: give the "
            f"endpoint serving {new_primary} priority 1 (az network traffic-manager endpoint update "
            "--resource-group RG --profile-name PROFILE --type externalEndpoints --name primary --target "
            f"{write_host(config, new_primary)})"))
    if not dns.route53_zone_id:
        raise ConfigError(f"{fqdn} is a Route 53 failover record but the hosted zone id is not set",
                          path="provisioning.dns.route53_zone_id", fix=f"set it to the hosted zone of {dns.zone}")
    from mcrepl.adapters.route53 import Route53Records
    from mcrepl.adapters.route53.records import options_for
    records = Route53Records(dns.route53_zone_id, options_for(
        config.providers.dynamodb.model_dump(), route53_endpoint(config, local_endpoints)))
    try:
        primary_host, secondary_host = write_host(config, new_primary), write_host(config, previous)
        if dry_run:
            pair = records.pair(fqdn)
            want = {"PRIMARY": primary_host, "SECONDARY": secondary_host}
            return DnsSwitch("already" if pair.hosts == want else "would switch", fqdn, routing, pair.hosts, want)
        result = records.point_primary(fqdn, primary_host, secondary_host)
    finally:
        records.close()
    return DnsSwitch("switched" if result.changed else "already", fqdn, routing, result.before, result.after,
                     detail=f"change {result.change_id}" if result.change_id else "")


def route53_endpoint(config: McreplConfig, local_endpoints: Mapping[str, str] | None) -> str | None:
    """``$MCREPL_ROUTE53_ENDPOINT``, else the local stack's moto server when DynamoDB is local, else AWS."""
    if os.environ.get(ENDPOINT_ENV):
        return os.environ[ENDPOINT_ENV]
    if config.providers.dynamodb.endpoint == "local" and local_endpoints and "dynamodb" in local_endpoints:
        return local_endpoints["dynamodb"]
    return None


__all__ = ["DnsSwitch", "ENDPOINT_ENV", "record_of", "route53_endpoint", "switch_writes", "write_host"]
