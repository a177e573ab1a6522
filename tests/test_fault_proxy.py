"""The fault proxy in front of the real emulators: every mode does what drills rely on.

Each test talks to an emulator from the ``local_stack`` fixture through a
:class:`FaultProxy` with the provider's own SDK, short timeouts and no SDK retries, so
a fault shows up as a quick, specific failure and healing shows up as success again.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
import warnings
from typing import Iterator
from urllib.parse import urlparse

import pytest

from mcrepl.failover.faults import MODES, FaultProxy


def _proxied(endpoint: str) -> FaultProxy:
    url = urlparse(endpoint)
    return FaultProxy(url.hostname or "127.0.0.1", url.port or 80)


@pytest.fixture
def dynamo_proxy(local_stack) -> Iterator[FaultProxy]:
    with _proxied(local_stack.endpoint("dynamodb")) as proxy:
        yield proxy


def _dynamodb(port: int):
    import boto3
    from botocore.config import Config
    config = Config(connect_timeout=1, read_timeout=1, retries={"total_max_attempts": 1})
    return boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing", config=config)


def _fails_within(call, seconds: float) -> BaseException:
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        call()
    assert time.monotonic() - started < seconds, "the fault should fail the call by its timeout"
    return caught.value


def test_boto3_through_proxy_pass_blackhole_reset_then_heal(dynamo_proxy: FaultProxy) -> None:
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
    client = _dynamodb(dynamo_proxy.port)
    table = f"proxy-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    client.put_item(TableName=table, Item={"id": {"S": "a"}, "v": {"N": "1"}})

    dynamo_proxy.set_mode("blackhole")
    err = _fails_within(lambda: client.get_item(TableName=table, Key={"id": {"S": "a"}}), 5)
    assert isinstance(err, ReadTimeoutError)

    dynamo_proxy.set_mode("reset")
    err = _fails_within(lambda: client.get_item(TableName=table, Key={"id": {"S": "a"}}), 5)
    assert isinstance(err, (ConnectionClosedError, EndpointConnectionError))

    dynamo_proxy.set_mode("pass")
    item = client.get_item(TableName=table, Key={"id": {"S": "a"}})["Item"]
    assert item["v"] == {"N": "1"}
    assert dynamo_proxy.stats()["reset"] >= 1
    client.delete_table(TableName=table)


def test_one_way_loss_in_either_direction_times_out(dynamo_proxy: FaultProxy) -> None:
    from botocore.exceptions import ReadTimeoutError
    client = _dynamodb(dynamo_proxy.port)
    client.list_tables()
    for mode, counter in (("drop_upstream", "dropped_up"), ("drop_downstream", "dropped_down")):
        dynamo_proxy.set_mode(mode)
        assert isinstance(_fails_within(client.list_tables, 5), ReadTimeoutError)
        assert dynamo_proxy.stats()[counter] > 0, f"{mode} should have discarded bytes"
    dynamo_proxy.set_mode("pass")
    assert "TableNames" in _dynamodb(dynamo_proxy.port).list_tables()


def test_delay_adds_latency_to_each_direction(dynamo_proxy: FaultProxy) -> None:
    client = _dynamodb(dynamo_proxy.port)
    client.list_tables()
    dynamo_proxy.set_mode("delay", delay_s=0.15)
    started = time.monotonic()
    client.list_tables()
    # one chunk each way, each held 0.15 s: a lower bound, not a performance claim
    assert time.monotonic() - started >= 0.3


def test_cosmos_https_through_proxy(local_stack) -> None:
    from azure.cosmos import CosmosClient, PartitionKey
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError
    from mcrepl.orchestrator.localstack import EMULATOR_COSMOS_KEY
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    with _proxied(local_stack.endpoint("cosmos")) as proxy:
        # endpoint discovery off: the emulator advertises its own address, and an SDK
        # that followed it would bypass the proxy after the first call
        client = CosmosClient(f"https://127.0.0.1:{proxy.port}/", credential=EMULATOR_COSMOS_KEY,
                              connection_verify=False, enable_endpoint_discovery=False,
                              connection_timeout=1, read_timeout=1,
                              retry_total=0, retry_connect=0, retry_read=0)
        name = f"proxy{uuid.uuid4().hex[:8]}"
        container = client.create_database(name).create_container("c", PartitionKey("/id"))
        container.upsert_item({"id": "a", "v": 1})

        proxy.set_mode("blackhole")
        err = _fails_within(lambda: container.read_item("a", "a"), 5)
        assert isinstance(err, (ServiceRequestError, ServiceResponseError))
        proxy.set_mode("reset")
        err = _fails_within(lambda: container.read_item("a", "a"), 5)
        assert isinstance(err, (ServiceRequestError, ServiceResponseError))

        proxy.set_mode("pass")
        assert container.read_item("a", "a")["v"] == 1
        client.delete_database(name)


def test_gcs_through_proxy(local_stack) -> None:
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from requests.exceptions import RequestException
    with _proxied(local_stack.endpoint("gcs")) as proxy:
        client = storage.Client(project="mcrepl-test", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": f"http://127.0.0.1:{proxy.port}"})
        bucket = client.create_bucket(f"proxy-{uuid.uuid4().hex[:8]}")
        bucket.blob("k").upload_from_string(b"hello", timeout=2)

        proxy.set_mode("reset")
        err = _fails_within(lambda: bucket.blob("k").download_as_bytes(timeout=1, retry=None), 5)
        assert isinstance(err, (RequestException, GoogleAPIError, ConnectionError))

        proxy.set_mode("pass")
        assert bucket.blob("k").download_as_bytes(timeout=2) == b"hello"
        bucket.delete(force=True)


# -- behaviour that needs no emulator: a local echo server stands in for "any TCP peer" --

@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[:2]
    stop.set()
    thread.join()
    listener.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_blackholed_connection_stalls_then_resumes(echo_server: tuple[str, int]) -> None:
    with FaultProxy(*echo_server) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3)
        assert _roundtrip(sock, b"one") == b"one"
        proxy.set_mode("blackhole")
        sock.sendall(b"two")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        proxy.set_mode("pass")
        sock.settimeout(2)
        assert sock.recv(10) == b"two", "a healed partition delivers what was sent during it"
        sock.close()


def test_large_transfer_is_byte_exact(echo_server: tuple[str, int]) -> None:
    payload = bytes(range(256)) * 20_000          # 5 MB, more than the proxy buffers at once
    with FaultProxy(*echo_server) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            received: list[bytes] = []
            reader = threading.Thread(target=lambda: received.append(_read_exactly(sock, len(payload))))
            reader.start()
            sock.sendall(payload)
            reader.join(10)
        assert received and received[0] == payload


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def test_stop_closes_connections_and_leaves_no_thread(echo_server: tuple[str, int]) -> None:
    before = {t.ident for t in threading.enumerate()}
    proxy = FaultProxy(*echo_server)
    port = proxy.start()
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    assert _roundtrip(sock, b"x") == b"x"
    proxy.stop()
    proxy.stop()                            # idempotent
    try:
        data = sock.recv(10)                # stop aborts open connections: EOF or RST
    except ConnectionResetError:
        data = b""
    assert data == b""
    sock.close()
    assert {t.ident for t in threading.enumerate() if t.name.startswith("fault-proxy")} - before == set()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_upstream_refusing_resets_the_client() -> None:
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()                                # nothing listens there now
    with FaultProxy("127.0.0.1", port) as proxy:
        # the reset may reach the client while it connects or once it sends: either is the fault
        with pytest.raises(OSError):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
                sock.sendall(b"hello")
                if sock.recv(10) == b"":
                    raise ConnectionResetError("closed by proxy")


def test_rejects_unknown_mode_and_delay_without_duration() -> None:
    proxy = FaultProxy("127.0.0.1", 9)
    with pytest.raises(ValueError, match="unknown fault mode"):
        proxy.set_mode("partition")
    with pytest.raises(ValueError, match="delay_s"):
        proxy.set_mode("delay")
    assert set(MODES) == {"pass", "blackhole", "reset", "delay", "drop_upstream", "drop_downstream"}
