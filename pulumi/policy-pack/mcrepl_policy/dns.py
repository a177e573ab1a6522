"""Rule ``mcrepl-dns``: write records route to applications, and move only when mcrepl promotes.

A write hostname that resolves to a store's own endpoint (``dynamodb.REGION.amazonaws.com``)
routes nothing an application can use. And traffic that a health check moves on its own
reaches a region whose data is not yet the primary's: unless the policy config says
``healthCheckFailover: true``, a Route 53 PRIMARY record carries no health check and a
Traffic Manager profile has one enabled endpoint (``mcrepl failover promote`` switches them).
Probes use HTTPS.
"""

from __future__ import annotations

from typing import Any, Mapping

from .subject import HEALTH_CHECK, RECORD, TRAFFIC_MANAGER, Subject, as_list, is_store_endpoint


def check_dns(subject: Subject, config: Mapping[str, Any]) -> list[str]:
    """Violations of one Route 53 record, health check or Traffic Manager profile."""
    props, automatic = subject.props, bool(config.get("healthCheckFailover"))
    out: list[str] = []
    if subject.type == RECORD:
        out += [f"record target {t} is a store's own endpoint; name the application that takes writes"
                for t in as_list(props.get("records")) if is_store_endpoint(t)]
        failover = [p.get("type") for p in as_list(props.get("failoverRoutingPolicies"))]
        if "PRIMARY" in failover and props.get("healthCheckId") and not automatic:
            out.append("the PRIMARY failover record has a health check, so Route 53 moves writes before "
                       "mcrepl promotes (drop healthCheckId, or set healthCheckFailover in the pack config)")
    elif subject.type == HEALTH_CHECK:
        if props.get("type") != "HTTPS":
            out.append("write endpoint health checks must use HTTPS")
        if is_store_endpoint(props.get("fqdn", "")):
            out.append(f"health check probes {props.get('fqdn')}, a store's own endpoint")
    elif subject.type == TRAFFIC_MANAGER:
        if (props.get("monitorConfig") or {}).get("protocol") != "HTTPS":
            out.append("Traffic Manager must probe with HTTPS")
        endpoints = as_list(props.get("endpoints"))
        out += [f"Traffic Manager endpoint {e.get('name')} targets {e.get('target')}, a store's own endpoint"
                for e in endpoints if is_store_endpoint(e.get("target", ""))]
        enabled = [e for e in endpoints if e.get("endpointStatus", "Enabled") == "Enabled"]
        if len(enabled) > 1 and not automatic:
            out.append("more than one enabled endpoint lets Traffic Manager move writes before mcrepl "
                       "promotes (disable the secondary, or set healthCheckFailover in the pack config)")
    return out
