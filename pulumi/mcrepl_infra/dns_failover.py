"""DNS write routing for one dataset's active-passive pair.

Clients write to one hostname; DNS sends them to the primary while its health check
passes and to the secondary when it fails. mcrepl's own failover (promote, fence,
failback) moves the *data* primary; this record moves the *traffic*.

* Primary on AWS: a Route 53 HTTPS health check on the primary endpoint and two CNAME
  records with failover routing (PRIMARY with the health check, SECONDARY without).
* Primary on Azure: an Azure Traffic Manager profile with ``Priority`` routing (the
  Azure equivalent: it probes every endpoint and answers with the healthy one of lowest
  priority); the hostname is a CNAME to the profile's ``trafficmanager.net`` name,
  created in Route 53 when ``route53_zone_id`` is set, otherwise left to the user (the
  profile FQDN is a stack output).
* Primary on GCS: refused; Cloud DNS health-checked failover only targets Google load
  balancers, not external hostnames, so there is no equivalent to provision.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi_azure_native import trafficmanager

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.provisioning import DnsProvisioning

EXTERNAL_ENDPOINT = "Microsoft.Network/trafficManagerProfiles/externalEndpoints"


@dataclass(frozen=True)
class WritePair:
    """A dataset's write hostname and the two hosts it routes between."""

    dataset: str
    fqdn: str
    primary: str            # provider:region
    primary_host: str
    secondary: str
    secondary_host: str


def default_endpoint(location: str, cosmos_account: str) -> str:
    """The store's own HTTPS endpoint host for a ``provider:region`` replica."""
    provider, region = location.split(":", 1)
    if provider == "dynamodb":
        return f"dynamodb.{region}.amazonaws.com"
    if provider == "cosmos":
        return f"{cosmos_account}-{region}.documents.azure.com"
    return "storage.googleapis.com"


class DnsFailover(pulumi.ComponentResource):
    """Failover routing for one :class:`WritePair`; ``fqdn`` is what clients resolve."""

    def __init__(self, name: str, pair: WritePair, dns: DnsProvisioning, *, profile_name: str,
                 aws_provider: aws.Provider | None, resource_group: pulumi.Input[str] | None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mcrepl:dns:Failover", name, {"fqdn": pair.fqdn}, opts)
        self.pair = pair
        self.profile_name = profile_name          # Traffic Manager names are global: stack-derived
        self.kind = pair.primary.split(":", 1)[0]
        if self.kind == "dynamodb":
            self.target = self._route53(name, pair, dns, aws_provider)
        elif self.kind == "cosmos":
            self.target = self._traffic_manager(name, pair, dns, aws_provider, resource_group)
        else:
            raise ConfigError(f"dataset {pair.dataset!r} has its primary on {pair.primary}; "
                              "DNS failover for a Cloud Storage primary is not provisioned",
                              path=f"provisioning.dns.records.{pair.dataset}",
                              fix="remove this record, or route writes with a Google load balancer")
        self.register_outputs({"fqdn": pair.fqdn})

    def _route53(self, name: str, pair: WritePair, dns: DnsProvisioning,
                 provider: aws.Provider | None) -> pulumi.Output[str]:
        zone_id = _zone_id(dns, pair)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.health_check = aws.route53.HealthCheck(
            f"{name}-health", type="HTTPS", fqdn=pair.primary_host, port=443,
            resource_path=dns.health_check_path, failure_threshold=3, request_interval=30,
            tags={"Name": f"mcrepl-{pair.dataset}-primary"}, opts=child)
        self.records = {role: aws.route53.Record(
            f"{name}-{role.lower()}", zone_id=zone_id, name=pair.fqdn, type="CNAME", ttl=dns.ttl,
            records=[host], set_identifier=f"mcrepl-{pair.dataset}-{role.lower()}",
            failover_routing_policies=[aws.route53.RecordFailoverRoutingPolicyArgs(type=role)],
            health_check_id=self.health_check.id if role == "PRIMARY" else None, opts=child)
            for role, host in (("PRIMARY", pair.primary_host), ("SECONDARY", pair.secondary_host))}
        return pulumi.Output.from_input(pair.fqdn)

    def _traffic_manager(self, name: str, pair: WritePair, dns: DnsProvisioning,
                         provider: aws.Provider | None,
                         resource_group: pulumi.Input[str] | None) -> pulumi.Output[str]:
        if resource_group is None:
            raise ConfigError("a Cosmos primary needs the stack's Azure resource group for its "
                              "Traffic Manager profile", path="provisioning.azure.resource_group")
        relative = self.profile_name
        self.profile = trafficmanager.Profile(
            f"{name}-tm", profile_name=relative, resource_group_name=resource_group, location="global",
            profile_status="Enabled", traffic_routing_method="Priority",
            dns_config=trafficmanager.DnsConfigArgs(relative_name=relative, ttl=dns.ttl),
            monitor_config=trafficmanager.MonitorConfigArgs(
                protocol="HTTPS", port=443, path=dns.health_check_path, interval_in_seconds=30,
                timeout_in_seconds=10, tolerated_number_of_failures=3),
            endpoints=[trafficmanager.EndpointArgs(name=role, type=EXTERNAL_ENDPOINT, target=host,
                                                   priority=priority, endpoint_status="Enabled")
                       for priority, (role, host) in enumerate(
                           (("primary", pair.primary_host), ("secondary", pair.secondary_host)), start=1)],
            opts=pulumi.ResourceOptions(parent=self))
        tm_fqdn = self.profile.dns_config.apply(lambda c: c.fqdn if c and c.fqdn
                                                else f"{relative}.trafficmanager.net")
        if dns.route53_zone_id:
            self.records = {"CNAME": aws.route53.Record(
                f"{name}-cname", zone_id=dns.route53_zone_id, name=pair.fqdn, type="CNAME",
                ttl=dns.ttl, records=[tm_fqdn], opts=pulumi.ResourceOptions(parent=self, provider=provider))}
        return tm_fqdn

    def outputs(self) -> dict[str, pulumi.Input[str]]:
        """What clients resolve and where it points, for the stack outputs."""
        return {"fqdn": self.pair.fqdn, "routing": "route53" if self.kind == "dynamodb" else "traffic-manager",
                "target": self.target, "primary": self.pair.primary_host,
                "secondary": self.pair.secondary_host}


def _zone_id(dns: DnsProvisioning, pair: WritePair) -> str:
    if not dns.route53_zone_id:
        raise ConfigError(f"dataset {pair.dataset!r} has an AWS primary, so its write record is a "
                          "Route 53 failover record and needs the hosted zone id",
                          path="provisioning.dns.route53_zone_id",
                          fix=f"set route53_zone_id to the hosted zone of {dns.zone}")
    return dns.route53_zone_id
