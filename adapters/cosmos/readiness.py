"""Cosmos DB readiness facts for ``mcrepl doctor``: the account's consistency and regions, the container.

The data plane answers the account's default consistency, its write and read regions
and the container's partition key. Whether local (key) auth is disabled and which role
assignments the identity holds are Azure Resource Manager properties, which mcrepl does
not call: those facts are unanswerable here (SKIP with the ``az`` command that shows
them), never passes.
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import AzureError

from ..base.interface import ReplicaTarget
from ..base.readiness import Fact
from .auth import close_client, make_client
from .errors import translate

ARM_ONLY = "an Azure Resource Manager property mcrepl does not read (check: az cosmosdb show / az cosmosdb sql " \
           "role assignment list)"


def inspect(target: ReplicaTarget) -> dict[str, Fact]:
    """Facts about ``target``'s account and container."""
    options = dict(target.options)
    facts: dict[str, Fact] = {"endpoint": Fact(options.get("endpoint"))}
    try:
        client = make_client(options)
    except Exception as exc:
        facts["identity"] = Fact(error=f"{type(exc).__name__}: {exc}")
        return facts
    try:
        account = _ask(target, "get_database_account", client.get_database_account)
        facts["identity"] = Fact(f"{options.get('auth', 'key')} auth accepted by the account") if account.known \
            else account
        if account.known:
            acct: Any = account.value
            facts["consistency"] = Fact((acct.ConsistencyPolicy or {}).get("defaultConsistencyLevel"))
            facts["regions"] = Fact(sorted({loc.get("name") for loc in
                                            (acct.WritableLocations or []) + (acct.ReadableLocations or [])}))
        database = client.get_database_client(str(options.get("database") or "mcrepl"))
        container = _ask(target, "read_container",
                         lambda: database.get_container_client(target.resource).read())
        facts["container"] = Fact({"partition_key": (container.value.get("partitionKey") or {}).get("paths")}) \
            if container.known else container
        facts["local_auth_disabled"] = Fact(unanswerable=ARM_ONLY)
        facts["permissions"] = Fact(unanswerable=ARM_ONLY)
    finally:
        close_client(client)
    return facts


def _ask(target: ReplicaTarget, operation: str, fn: Any) -> Fact:
    try:
        return Fact(fn())
    except AzureError as exc:
        err = translate(exc, target, operation)
        return Fact(error=f"{type(err).__name__}: {err}")


__all__ = ["ARM_ONLY", "inspect"]
