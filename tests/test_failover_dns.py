"""Route 53 failover-record switching, on moto server (issue 14).

The zone holds the pair the Pulumi program creates for an AWS primary (``pulumi/
mcrepl_infra/dns_failover.py``): a health check on the primary host and two CNAMEs of
one name with failover routing. Switching must point PRIMARY and its health check at
the new primary and SECONDARY at the old one, change nothing when run again, and refuse
clearly when the pair is missing.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from mcrepl.adapters.base import ConfigError
from mcrepl.failover.dns import switch_writes
from mcrepl.orchestrator.config import McreplConfig

WEST, CENTRAL, GCS = "dynamodb:eu-west-1", "dynamodb:eu-central-1", "gcs:europe-west1"


def _route53(endpoint: str) -> Any:
    return boto3.client("route53", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _config(zone: str, zone_id: str, records: dict[str, Any]) -> McreplConfig:
    return McreplConfig.model_validate({
        "version": 1, "profile": "local", "state_dir": "/tmp/unused",
        "providers": {"dynamodb": {"endpoint": "local"}, "gcs": {"endpoint": "local", "auth": "anonymous"}},
        "datasets": {"orders": {"key": {"partition": "id"}, "primary": WEST, "replicas": [CENTRAL, GCS]}},
        "provisioning": {"dns": {"zone": zone, "route53_zone_id": zone_id, "records": records,
                                 "endpoints": {WEST: "app.eu-west-1.example.net",
                                               CENTRAL: "app.eu-central-1.example.net"}}}})


@pytest.fixture()
def zone(local_stack: Any) -> Any:
    endpoint = local_stack.endpoint("dynamodb")
    client = _route53(endpoint)
    name = f"z{uuid.uuid4().hex[:8]}.example.net"
    zone_id = client.create_hosted_zone(Name=name, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    zone_id = zone_id.split("/")[-1]
    check = client.create_health_check(CallerReference=uuid.uuid4().hex, HealthCheckConfig={
        "Type": "HTTPS", "FullyQualifiedDomainName": "app.eu-west-1.example.net", "Port": 443,
        "ResourcePath": "/", "RequestInterval": 30, "FailureThreshold": 3})["HealthCheck"]["Id"]
    fqdn = f"orders.{name}"
    changes = [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": fqdn, "Type": "CNAME", "TTL": 60, "SetIdentifier": f"mcrepl-orders-{role.lower()}",
        "Failover": role, "ResourceRecords": [{"Value": host}], **({"HealthCheckId": check} if role == "PRIMARY" else {})}}
        for role, host in (("PRIMARY", "app.eu-west-1.example.net"), ("SECONDARY", "app.eu-central-1.example.net"))]
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return {"client": client, "name": name, "id": zone_id, "check": check, "fqdn": fqdn,
            "endpoints": {"dynamodb": endpoint}}


def _hosts(zone: Any) -> dict[str, str]:
    sets = zone["client"].list_resource_record_sets(HostedZoneId=zone["id"])["ResourceRecordSets"]
    return {r["Failover"]: r["ResourceRecords"][0]["Value"] for r in sets
            if r["Name"].rstrip(".") == zone["fqdn"] and "Failover" in r}


def test_promotion_points_the_failover_pair_and_its_health_check_at_the_new_primary(zone: Any) -> None:
    config = _config(zone["name"], zone["id"], {"orders": "orders"})
    switched = switch_writes(config, "orders", CENTRAL, WEST, local_endpoints=zone["endpoints"])
    assert switched.status == "switched" and switched.routing == "route53"
    assert switched.before == {"PRIMARY": "app.eu-west-1.example.net", "SECONDARY": "app.eu-central-1.example.net"}
    assert _hosts(zone) == {"PRIMARY": "app.eu-central-1.example.net", "SECONDARY": "app.eu-west-1.example.net"}
    check = zone["client"].get_health_check(HealthCheckId=zone["check"])["HealthCheck"]["HealthCheckConfig"]
    assert check["FullyQualifiedDomainName"] == "app.eu-central-1.example.net"
    again = switch_writes(config, "orders", CENTRAL, WEST, local_endpoints=zone["endpoints"])
    assert again.status == "already", "a resumed promotion changes nothing"
    planned = switch_writes(config, "orders", WEST, CENTRAL, dry_run=True, local_endpoints=zone["endpoints"])
    assert planned.status == "would switch" and _hosts(zone)["PRIMARY"] == "app.eu-central-1.example.net"
    back = switch_writes(config, "orders", WEST, CENTRAL, local_endpoints=zone["endpoints"])
    assert back.status == "switched" and _hosts(zone)["PRIMARY"] == "app.eu-west-1.example.net"


def test_a_missing_pair_or_dataset_without_a_record(zone: Any) -> None:
    none = switch_writes(_config(zone["name"], zone["id"], {}), "orders", CENTRAL, WEST,
                         local_endpoints=zone["endpoints"])
    assert none.status == "none" and "nothing to switch" in none.detail
    with pytest.raises(ConfigError) as missing:
        switch_writes(_config(zone["name"], zone["id"], {"orders": "nosuch"}), "orders", CENTRAL, WEST,
                      local_endpoints=zone["endpoints"])
    assert "PRIMARY or SECONDARY" in str(missing.value) and "pulumi up" in str(missing.value)
