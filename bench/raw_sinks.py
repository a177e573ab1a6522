"""Baselines: each store written directly with its own SDK, the way a skilled user would.

These are the ceilings the sync engine is compared with, measured in the same run on
the same records. Every writer uses a thread pool over one shared, thread-safe client
(the SDKs' default pools hold 10 connections, enough for the default 8 threads):

* Cosmos DB: ``upsert_item`` per document (the emulator has no bulk API);
* Cloud Storage: ``upload_from_string`` per object;
* DynamoDB: ``BatchWriteItem`` in batches of 25 through boto3's ``batch_writer``
  (which resends unprocessed items).
"""

from __future__ import annotations

import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Sequence

from cpu_meter import tree_cpu_by_role, tree_cpu_seconds
from mcrepl.adapters.base import Record


def json_safe(value: Any) -> Any:
    """Decimals → float, datetimes → ISO strings: what a user would store in a JSON store."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


#: CPU seconds (this process, its emulators) of the last timed write loop, set by each writer
last_cpu_seconds = 0.0
#: CPU seconds per role of the stack (see cpu_meter.tree_cpu_by_role) of the last copier run
last_cpu_by_role: dict[str, float] = {}


def _timed_pool(items: Sequence[Any], write: Callable[[Any], None], threads: int) -> float:
    global last_cpu_seconds
    cpu = tree_cpu_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(write, items):
            pass
    rate = len(items) / (time.perf_counter() - started)
    last_cpu_seconds = tree_cpu_seconds() - cpu
    return rate


def cosmos_upserts(endpoint: str, key: str, database: str, records: Sequence[Record], threads: int) -> float:
    """Documents per second written with ``upsert_item`` from ``threads`` threads."""
    from azure.cosmos import CosmosClient, PartitionKey
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    client = CosmosClient(endpoint, credential=key, connection_verify=False)
    db = client.create_database_if_not_exists(database)
    container = db.create_container_if_not_exists("raw", PartitionKey("/id"))
    docs = [{"id": r.key.id, **json_safe(r.body)} for r in records]
    try:
        return _timed_pool(docs, container.upsert_item, threads)
    finally:
        client.delete_database(database)


def gcs_uploads(endpoint: str, bucket_name: str, records: Sequence[Record], threads: int) -> float:
    """Objects per second written with ``upload_from_string`` from ``threads`` threads."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    client = storage.Client(project="mcrepl-bench", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    bucket = client.create_bucket(bucket_name)
    payloads = [(f"{r.key.id}.json", json.dumps(json_safe(r.body)).encode()) for r in records]

    def upload(item: tuple[str, bytes]) -> None:
        bucket.blob(item[0]).upload_from_string(item[1], content_type="application/json")

    try:
        return _timed_pool(payloads, upload, threads)
    finally:
        _empty_and_delete(bucket, threads)


def _empty_and_delete(bucket: Any, threads: int) -> None:
    names = [b.name for b in bucket.list_blobs()]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda n: bucket.blob(n).delete(), names))
    bucket.delete()


def dynamodb_batch_writes(endpoint: str, table_name: str, key_field: str, records: Sequence[Record],
                          threads: int) -> float:
    """Items per second written with ``BatchWriteItem`` (25 per call) from ``threads`` threads."""
    import boto3
    from botocore.config import Config
    dynamodb = boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench",
                              config=Config(max_pool_connections=max(10, threads)))
    table = dynamodb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST",
                                  AttributeDefinitions=[{"AttributeName": key_field, "AttributeType": "S"}],
                                  KeySchema=[{"AttributeName": key_field, "KeyType": "HASH"}])
    table.wait_until_exists()
    items = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.body.items()} for r in records]
    slices = [items[i:i + 500] for i in range(0, len(items), 500)]

    def write_slice(chunk: list[dict[str, Any]]) -> None:
        with table.batch_writer() as writer:
            for item in chunk:
                writer.put_item(Item=item)

    try:
        global last_cpu_seconds
        cpu = tree_cpu_seconds()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(write_slice, slices))
        rate = len(items) / (time.perf_counter() - started)
        last_cpu_seconds = tree_cpu_seconds() - cpu
        return rate
    finally:
        table.delete()


def copier(dynamodb_endpoint: str, table_name: str, cosmos_endpoint: str, key: str, database: str,
           gcs_endpoint: str, bucket_name: str, threads: int, segments: int = 4,
           prepare_only: bool = False) -> float:
    """Records/s of a hand-written DynamoDB → Cosmos DB + GCS copier, the peer of a sync pass.

    A parallel Scan (``segments`` segments) of the whole table, then every item sent with
    ``upsert_item`` and ``upload_from_string`` from one ``threads``-thread pool per sink,
    both sinks at once: unconditional writes, no metadata, no change log. ``prepare_only``
    creates the targets and returns 0 (so a first timed run is not charged for them).
    """
    import boto3
    from azure.cosmos import CosmosClient, PartitionKey
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    cosmos = CosmosClient(cosmos_endpoint, credential=key, connection_verify=False,
                          connection_timeout=60)
    container = cosmos.create_database_if_not_exists(database).create_container_if_not_exists(
        "raw", PartitionKey("/id"))
    gcs = storage.Client(project="mcrepl-bench", credentials=AnonymousCredentials(),
                         client_options={"api_endpoint": gcs_endpoint})
    bucket = gcs.lookup_bucket(bucket_name) or gcs.create_bucket(bucket_name)
    if prepare_only:
        return 0.0
    _grow_pool(gcs._http, threads)
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1",
                            aws_access_key_id="bench", aws_secret_access_key="bench")
    from boto3.dynamodb.types import TypeDeserializer
    plain = TypeDeserializer()
    global last_cpu_seconds, last_cpu_by_role
    by_role = tree_cpu_by_role()
    cpu = sum(by_role.values())
    started = time.perf_counter()

    def segment(n: int) -> list[dict[str, Any]]:
        items, start = [], None
        while True:
            page = dynamodb.scan(TableName=table_name, Segment=n, TotalSegments=segments,
                                 **({"ExclusiveStartKey": start} if start else {}))
            items += [{k: plain.deserialize(v) for k, v in item.items() if not k.startswith("_mcrepl")}
                      for item in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if not start:
                return items

    with ThreadPoolExecutor(max_workers=segments) as pool:
        items = [item for part in pool.map(segment, range(segments)) for item in part]
    docs = [{"id": str(item["customer_id"]), **json_safe(item)} for item in items]

    def upload(doc: dict[str, Any]) -> None:
        bucket.blob(f"{doc['id']}.json").upload_from_string(json.dumps(doc), content_type="application/json")

    with ThreadPoolExecutor(max_workers=threads) as to_cosmos, ThreadPoolExecutor(max_workers=threads) as to_gcs:
        waits = [to_cosmos.submit(container.upsert_item, d) for d in docs]
        waits += [to_gcs.submit(upload, d) for d in docs]
        for w in waits:
            w.result()
    rate = len(docs) / (time.perf_counter() - started)
    after = tree_cpu_by_role()
    last_cpu_seconds = sum(after.values()) - cpu
    last_cpu_by_role = {role: after[role] - by_role.get(role, 0.0) for role in after}
    return rate


def drop_copier_targets(cosmos_endpoint: str, key: str, database: str, gcs_endpoint: str, bucket_name: str) -> None:
    """Remove what :func:`copier` created."""
    from azure.cosmos import CosmosClient
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    CosmosClient(cosmos_endpoint, credential=key, connection_verify=False).delete_database(database)
    gcs = storage.Client(project="mcrepl-bench", credentials=AnonymousCredentials(),
                         client_options={"api_endpoint": gcs_endpoint})
    _empty_and_delete(gcs.bucket(bucket_name), 16)


def _grow_pool(session: Any, size: int) -> None:
    """Give a ``requests`` session a connection pool as large as the thread pool using it."""
    import requests.adapters
    for prefix in ("http://", "https://"):
        session.mount(prefix, requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size))
