"""DNS write routing for one dataset's active-passive pair, switched by ``mcrepl failover promote``.

Clients write to one hostname, which names the *data* primary's write endpoint (your
application there, ``provisioning.dns.endpoints``; the stores' own endpoints are
refused). ``mcrepl failover promote`` moves the data primary, fences the old one, and
then switches these records through the clouds' APIs, from the identifiers this
component exports (``dns.DATASET`` in the stack outputs). So traffic never moves before
the data does: by default no health check moves it on its own. With
``health_check_failover: true`` it may (for applications whose writers are fenced).

* Primary on AWS: two CNAME records with failover routing (PRIMARY → the primary's
  host, SECONDARY → the secondary's) and a Route 53 HTTPS health check on the primary,
  attached to PRIMARY only with ``health_check_failover`` (a failover record without a
  health check is always healthy, so Route 53 answers PRIMARY until promote rewrites it).
* Primary on Azure: a Traffic Manager profile with ``Priority`` routing; the secondary
  endpoint stays ``Disabled`` (Traffic Manager answers only the primary, healthy or not)
  unless ``health_check_failover``; promote enables and reorders them. The hostname is a
  CNAME to the profile's ``trafficmanager.net`` name, created in Route 53 when
  ``route53_zone_id`` is set, otherwise left to the user (the profile FQDN is an output).

The record targets and the profile's endpoints are ``ignoreChanges``: once promote has
switched them, a later ``pulumi up`` (whose config still names the original primary)
must not switch traffic back to a fenced region.
* Primary on GCS: refused; Cloud DNS health-checked failover only targets Google load
  balancers, not external hostnames, so there is no equivalent to provision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
from pulumi_azure_native import trafficmanager

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.provisioning import DnsProvisioning

EXTERNAL_ENDPOINT = "Microsoft.Network/trafficManagerProfiles/externalEndpoints"
#: the stores' own endpoints: a write hostname must name an application, never one of these
STORE_ENDPOINT_SUFFIXES = (".amazonaws.com", ".documents.azure.com", ".googleapis.com", ".windows.net")
SWITCHED_BY = "mcrepl failover promote"


@dataclass(frozen=True)
class WritePair:
    """A dataset's write hostname and the two hosts it routes between."""

    dataset: str
    fqdn: str
    primary: str            # provider:region
    primary_host: str
    secondary: str
    secondary_host: str
    #: every location of the dataset with a write host: where promote may point the name
    hosts: dict[str, str] = field(default_factory=dict)


def refuse_unroutable(dataset: str, primary: str) -> None:
    """Raise :class:`ConfigError` for a primary whose writes no DNS record here can route."""
    if not primary.startswith(("dynamodb:", "cosmos:")):
        raise ConfigError(f"dataset {dataset!r} has its primary on {primary}; "
                          "DNS failover for a Cloud Storage primary is not provisioned",
                          path=f"provisioning.dns.records.{dataset}",
                          fix="remove this record, or route writes with a Google load balancer")


def write_host(dns: DnsProvisioning, dataset: str, location: str) -> str:
    """The application host that takes writes at ``location``; refused when missing or a store's."""
    where = f"provisioning.dns.endpoints.{location}"
    host = dns.endpoints.get(location)
    if not host:
        raise ConfigError(f"the write record of {dataset!r} routes to {location}, but no write host is named there",
                          path=where, fix=f"add endpoints: {{{location}: writes.<region>.{dns.zone}}} "
                                          "(your application's write endpoint in that region)")
    if host.lower().rstrip(".").endswith(STORE_ENDPOINT_SUFFIXES):
        raise ConfigError(f"{host} is a cloud store's own endpoint; a write record must name the "
                          "application that writes there", path=where,
                          fix="name your application's write hostname in that region")
    return host


class DnsFailover(pulumi.ComponentResource):
    """Failover routing for one :class:`WritePair`; ``fqdn`` is what clients resolve."""

    def __init__(self, name: str, pair: WritePair, dns: DnsProvisioning, *, profile_name: str,
                 aws_provider: aws.Provider | None, resource_group: pulumi.Input[str] | None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mcrepl:dns:Failover", name, {"fqdn": pair.fqdn}, opts)
        self.pair = pair
        self.profile_name = profile_name          # Traffic Manager names are global: stack-derived
        self.kind = pair.primary.split(":", 1)[0]
        self.health_check_failover = dns.health_check_failover
        self.switch: dict[str, pulumi.Input[object]] = {}
        if self.kind == "dynamodb":
            self.target = self._route53(name, pair, dns, aws_provider)
        elif self.kind == "cosmos":
            self.target = self._traffic_manager(name, pair, dns, aws_provider, resource_group)
        else:
            refuse_unroutable(pair.dataset, pair.primary)
        self.register_outputs({"fqdn": pair.fqdn})

    def _route53(self, name: str, pair: WritePair, dns: DnsProvisioning,
                 provider: aws.Provider | None) -> pulumi.Output[str]:
        zone_id = _zone_id(dns, pair)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.health_check = aws.route53.HealthCheck(
            f"{name}-health", type="HTTPS", fqdn=pair.primary_host, port=443,
            resource_path=dns.health_check_path, failure_threshold=3, request_interval=30,
            tags={"Name": f"mcrepl-{pair.dataset}-primary"}, opts=child)
        switched = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
            ignore_changes=["records", "healthCheckId"], delete_before_replace=True))
        self.records = {role: aws.route53.Record(
            f"{name}-{role.lower()}", zone_id=zone_id, name=pair.fqdn, type="CNAME", ttl=dns.ttl,
            records=[host], set_identifier=self.set_identifier(role),
            failover_routing_policies=[aws.route53.RecordFailoverRoutingPolicyArgs(type=role)],
            health_check_id=self.health_check.id if role == "PRIMARY" and dns.health_check_failover else None,
            opts=switched)
            for role, host in (("PRIMARY", pair.primary_host), ("SECONDARY", pair.secondary_host))}
        self.switch = {"zone_id": zone_id, "record_name": pair.fqdn, "record_type": "CNAME",
                       "set_identifiers": {role: self.set_identifier(role) for role in ("PRIMARY", "SECONDARY")},
                       "health_check_id": self.health_check.id}
        return pulumi.Output.from_input(pair.fqdn)

    def set_identifier(self, role: str) -> str:
        """The Route 53 set identifier of the PRIMARY or SECONDARY record."""
        return f"mcrepl-{self.pair.dataset}-{role.lower()}"

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
            endpoints=[trafficmanager.EndpointArgs(
                name=role, type=EXTERNAL_ENDPOINT, target=host, priority=priority,
                endpoint_status="Enabled" if role == "primary" or dns.health_check_failover else "Disabled")
                for priority, (role, host) in enumerate(
                    (("primary", pair.primary_host), ("secondary", pair.secondary_host)), start=1)],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["endpoints"]))
        self.switch = {"profile_name": relative, "resource_group": resource_group,
                       "profile_id": self.profile.id, "endpoints": {"primary": "primary", "secondary": "secondary"}}
        tm_fqdn = self.profile.dns_config.apply(lambda c: c.fqdn if c and c.fqdn
                                                else f"{relative}.trafficmanager.net")
        if dns.route53_zone_id:
            self.records = {"CNAME": aws.route53.Record(
                f"{name}-cname", zone_id=dns.route53_zone_id, name=pair.fqdn, type="CNAME",
                ttl=dns.ttl, records=[tm_fqdn], opts=pulumi.ResourceOptions(parent=self, provider=provider))}
        return tm_fqdn

    def outputs(self) -> dict[str, pulumi.Input[object]]:
        """What clients resolve, where it points, and what ``mcrepl failover promote`` switches."""
        return {"fqdn": self.pair.fqdn, "routing": "route53" if self.kind == "dynamodb" else "traffic-manager",
                "target": self.target, "primary": self.pair.primary_host,
                "secondary": self.pair.secondary_host, "hosts": dict(self.pair.hosts),
                "switched_by": SWITCHED_BY, "health_check_failover": self.health_check_failover,
                "switch": self.switch}


def _zone_id(dns: DnsProvisioning, pair: WritePair) -> str:
    if not dns.route53_zone_id:
        raise ConfigError(f"dataset {pair.dataset!r} has an AWS primary, so its write record is a "
                          "Route 53 failover record and needs the hosted zone id",
                          path="provisioning.dns.route53_zone_id",
                          fix=f"set route53_zone_id to the hosted zone of {dns.zone}")
    return dns.route53_zone_id
