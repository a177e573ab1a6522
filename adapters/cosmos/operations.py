"""Every Cosmos DB (NoSQL API) operation this adapter performs, for Entra ID role definitions.

Names are Cosmos DB data actions
(https://learn.microsoft.com/azure/cosmos-db/nosql/security/reference-data-plane-actions),
except creating and deleting databases and containers: data-plane RBAC cannot grant those
(they are Azure Resource Manager actions, ``plane="control"``), so on real accounts the
Pulumi program creates containers and the adapter only checks them; only the local
emulator, reached with its published key, lets ``ensure_ready`` create them.

:func:`classify_request` maps one HTTP request of the SDK to the action it needs; the
recording test uses it on every request azure-core's pipeline sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote, urlparse

from ..base.operations import Operation, OperationInventory

ACCOUNT = "Microsoft.DocumentDB/databaseAccounts"
CONTAINERS = f"{ACCOUNT}/sqlDatabases/containers"
ITEMS = f"{CONTAINERS}/items"

#: every method opens the client, which reads the account, database and partition-key ranges
_ALL_METHODS = ("ensure_ready", "capture_changes", "current_cursor", "apply_batch", "purge_tombstones",
                "list_digests", "read", "create", "drop", "write_native", "delete_native", "write_heartbeat")

OPERATIONS = OperationInventory("cosmos", "adapters/cosmos/operations.py", (
    Operation(f"{ACCOUNT}/readMetadata", "container", _ALL_METHODS,
              note="account, database, container and partition-key-range reads"),
    Operation(f"{CONTAINERS}/executeQuery", "container",
              ("capture_changes", "current_cursor", "apply_batch", "purge_tombstones", "list_digests", "read"),
              note="point reads are single-partition queries (the emulator answers a missing point read with 500)"),
    Operation(f"{CONTAINERS}/readChangeFeed", "container", ("capture_changes", "current_cursor"),
              note="real accounts only: the emulator has no incremental feed, capture uses the _ts query"),
    Operation(f"{ITEMS}/create", "container", ("apply_batch",)),
    Operation(f"{ITEMS}/replace", "container", ("apply_batch",), note="conditional on the etag"),
    Operation(f"{ITEMS}/upsert", "container", ("write_native", "write_heartbeat"),
              note="the application's writes (seeding); mcrepl's heartbeat at the primary"),
    Operation(f"{ITEMS}/delete", "container", ("purge_tombstones", "delete_native")),
    # the epoch record (container <container>-mcrepl-epoch, see fence.py)
    Operation(f"{CONTAINERS}/executeQuery@epoch", "epoch-container", ("publish_epoch", "doctor", "fenced_write"),
              permissions=(f"{CONTAINERS}/executeQuery",)),
    Operation(f"{ITEMS}/create@epoch", "epoch-container", ("publish_epoch",), permissions=(f"{ITEMS}/create",)),
    Operation(f"{ITEMS}/replace@epoch", "epoch-container", ("publish_epoch",), permissions=(f"{ITEMS}/replace",),
              note="conditional on the etag: never lowers the stored epoch"),
    Operation(f"{ACCOUNT}/sqlDatabases/write", "account", ("create",), plane="control",
              note="create_database_if_not_exists on the emulator"),
    Operation(f"{CONTAINERS}/write", "account", ("create",), plane="control"),
    Operation(f"{CONTAINERS}/delete", "account", ("drop",), plane="control"),
    Operation(f"{ACCOUNT}/sqlDatabases/delete", "account", ("drop",), plane="control"),
))

_FEED_CREATE = {"dbs": f"{ACCOUNT}/sqlDatabases/write", "colls": f"{CONTAINERS}/write"}
_DELETE = {"dbs": f"{ACCOUNT}/sqlDatabases/delete", "colls": f"{CONTAINERS}/delete"}


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    return str(lowered.get(name.lower(), "")).lower()


def classify_request(method: str, url: str, headers: Mapping[str, str]) -> str:
    """The Cosmos DB action an SDK request needs (``method``, full ``url``, request headers).

    The REST path alternates resource type and id (``/dbs/D/colls/C/docs/I``): an odd
    number of segments addresses a feed of the last type, an even number one resource.
    """
    parts = [unquote(p) for p in urlparse(url).path.strip("/").split("/") if p]
    method = method.upper()
    kind = parts[-1] if len(parts) % 2 else (parts[-2] if parts else "")
    one = bool(parts) and len(parts) % 2 == 0
    if kind == "docs":
        if not one and _header(headers, "x-ms-documentdb-isquery") == "true":
            return f"{CONTAINERS}/executeQuery"
        if _header(headers, "x-ms-cosmos-is-query-plan-request") == "true":
            return f"{CONTAINERS}/executeQuery"
        if method == "GET" and "incremental" in _header(headers, "a-im"):
            return f"{CONTAINERS}/readChangeFeed"
        if method == "POST" and not one:
            upsert = _header(headers, "x-ms-documentdb-is-upsert") == "true"
            return f"{ITEMS}/upsert" if upsert else f"{ITEMS}/create"
        return {"GET": f"{ITEMS}/read", "PUT": f"{ITEMS}/replace", "DELETE": f"{ITEMS}/delete"}.get(
            method, f"{ITEMS}/{method.lower()}")
    if method == "POST" and not one and kind in _FEED_CREATE \
            and _header(headers, "x-ms-documentdb-isquery") != "true":
        return _FEED_CREATE[kind]
    if method == "DELETE" and one and kind in _DELETE:
        return _DELETE[kind]
    if method in ("GET", "POST", "HEAD"):
        return f"{ACCOUNT}/readMetadata"          # account, databases, containers, pkranges, offers
    return f"{ACCOUNT}/{kind or 'account'}/{method.lower()}"   # undeclared on purpose: the test names it


__all__ = ["ACCOUNT", "CONTAINERS", "ITEMS", "OPERATIONS", "classify_request"]
