"""Route 53 failover records of one write hostname, re-pointed with ``ChangeResourceRecordSets``.

A failover pair is two records of one name and type with ``Failover: PRIMARY`` and
``Failover: SECONDARY``; Route 53 answers with PRIMARY while its health check passes.
Re-pointing is one change batch of two UPSERTs (atomic in Route 53) plus an
``UpdateHealthCheck`` so the health check probes the host PRIMARY now names. Every step
compares first, so running it again changes nothing (a resumed promotion).
See https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/dns-failover-types.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base.errors import AdapterError, ConfigError
from ..base.retry import call_with_retry, policy_for
from ..aws.session import is_local, make_session, plain_config
from ..dynamodb.errors import is_sdk_error, translate

ROLES = ("PRIMARY", "SECONDARY")


@dataclass(frozen=True)
class FailoverPair:
    """The two records of ``fqdn``: the host each role points at, and PRIMARY's health check."""

    fqdn: str
    hosts: dict[str, str]
    health_check_id: str | None
    health_check_host: str | None


@dataclass(frozen=True)
class SwitchResult:
    """What :meth:`Route53Records.point_primary` found and did (``changed=False``: already so)."""

    fqdn: str
    before: dict[str, str]
    after: dict[str, str]
    changed: bool
    change_id: str | None = None


class Route53Records:
    """The failover records of one hosted zone.

    ``options`` as a DynamoDB target's: ``endpoint`` (moto in tests), ``profile``,
    ``local``. Credentials come from the standard AWS chain, never from the config.
    """

    def __init__(self, zone_id: str, options: dict[str, Any]) -> None:
        self.zone_id = zone_id
        self.options = options
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            session = make_session(self.options, "us-east-1")        # Route 53 is global
            self._client = session.client("route53", endpoint_url=self.options.get("endpoint") or None,
                                          config=plain_config())
        return self._client

    def _call(self, operation: str, fn: Any) -> Any:
        def attempt() -> Any:
            try:
                return fn()
            except Exception as exc:
                if not is_sdk_error(exc):
                    raise
                raise translate(exc, replica="route53", operation=operation, resource=self.zone_id) from exc
        return call_with_retry(attempt, policy_for(self.options))

    def pair(self, fqdn: str) -> FailoverPair:
        """The PRIMARY and SECONDARY records of ``fqdn`` (raises when the zone lacks either)."""
        name = fqdn.rstrip(".") + "."
        resp = self._call("list_resource_record_sets", lambda: self.client.list_resource_record_sets(
            HostedZoneId=self.zone_id, StartRecordName=name, MaxItems="20"))
        records = {r["Failover"]: r for r in resp.get("ResourceRecordSets", [])
                   if r.get("Name") == name and r.get("Failover") in ROLES}
        missing = [role for role in ROLES if role not in records]
        if missing:
            raise ConfigError(f"the hosted zone {self.zone_id} has no {' or '.join(missing)} failover record "
                              f"named {fqdn}", path="provisioning.dns",
                              fix="create the pair with the Pulumi program (pulumi up), or correct dns.zone "
                                  "and dns.records")
        hosts = {role: r["ResourceRecords"][0]["Value"] for role, r in records.items()}
        check_id = records["PRIMARY"].get("HealthCheckId")
        check_host = None
        if check_id:
            check = self._call("get_health_check", lambda: self.client.get_health_check(HealthCheckId=check_id))
            check_host = check["HealthCheck"]["HealthCheckConfig"].get("FullyQualifiedDomainName")
        return FailoverPair(fqdn, hosts, check_id, check_host)

    def point_primary(self, fqdn: str, primary_host: str, secondary_host: str) -> SwitchResult:
        """Make PRIMARY answer ``primary_host`` (health-checked) and SECONDARY ``secondary_host``."""
        pair = self.pair(fqdn)
        want = {"PRIMARY": primary_host, "SECONDARY": secondary_host}
        change_id = None
        if pair.hosts != want:
            name = fqdn.rstrip(".") + "."
            resp = self._call("list_resource_record_sets", lambda: self.client.list_resource_record_sets(
                HostedZoneId=self.zone_id, StartRecordName=name, MaxItems="20"))
            changes = []
            for record in resp.get("ResourceRecordSets", []):
                role = record.get("Failover")
                if record.get("Name") != name or role not in want:
                    continue
                updated = {**record, "ResourceRecords": [{"Value": want[role]}]}
                changes.append({"Action": "UPSERT", "ResourceRecordSet": updated})
            change = self._call("change_resource_record_sets", lambda: self.client.change_resource_record_sets(
                HostedZoneId=self.zone_id, ChangeBatch={
                    "Comment": f"mcrepl failover: writes for {fqdn} to {primary_host}", "Changes": changes}))
            change_id = change.get("ChangeInfo", {}).get("Id")
        if pair.health_check_id and pair.health_check_host != primary_host:
            check_id = pair.health_check_id
            self._call("update_health_check", lambda: self.client.update_health_check(
                HealthCheckId=check_id, FullyQualifiedDomainName=primary_host))
        return SwitchResult(fqdn, pair.hosts, want, pair.hosts != want or pair.health_check_host != primary_host,
                            change_id)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def options_for(dynamodb_options: dict[str, Any], endpoint: str | None) -> dict[str, Any]:
    """Route 53 connection options: the DynamoDB provider's profile, and ``endpoint`` (None: AWS)."""
    options = {"endpoint": endpoint, "profile": dynamodb_options.get("profile")}
    options["local"] = is_local(options)
    return options


__all__ = ["AdapterError", "FailoverPair", "Route53Records", "SwitchResult", "options_for"]
