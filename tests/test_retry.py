"""The retry policy: retries only retryable errors, honours hints, stops at the deadline."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mcrepl.adapters.base import AdapterError, RetryPolicy, ThrottledError, call_with_retry
from mcrepl.adapters.base.retry import on_retry


def test_retryable_error_is_retried_until_success() -> None:
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ThrottledError("slow down", retry_after=0.05)
        return "ok"

    assert call_with_retry(flaky, RetryPolicy(deadline_s=5, initial_s=0.001)) == "ok"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.05, "the store's retry-after hint is a floor"


def test_non_retryable_error_is_raised_at_once() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise AdapterError("bad request", retryable=False)

    with pytest.raises(AdapterError, match="bad request"):
        call_with_retry(broken)
    assert calls == [1]


def test_deadline_bounds_the_wait_and_reraises_the_store_error() -> None:
    seen: list[AdapterError] = []
    on_retry(seen.append)
    start = time.monotonic()
    with pytest.raises(ThrottledError, match="still busy"):
        call_with_retry(lambda: (_ for _ in ()).throw(ThrottledError("still busy")),
                        RetryPolicy(deadline_s=0.3, initial_s=0.01, max_backoff_s=0.05))
    assert time.monotonic() - start < 2
    assert seen, "retry listeners are told about each retry"


def test_every_store_request_is_cut_at_the_retry_deadline_and_the_sdks_do_not_retry(local_stack: Any) -> None:
    """One retry layer, bounded: the SDKs' own retries are off and no single request (connect
    or read) can outlive ``sync.retry_deadline``, so a hung store costs a lane that long."""
    from mcrepl.adapters.base import KeyAttribute, KeySchema, ReplicaTarget
    from mcrepl.adapters.base.retry import policy_for, request_timeouts
    from mcrepl.adapters.cosmos.auth import make_client
    from mcrepl.adapters.dynamodb.clients import DynamoDBClients
    from mcrepl.adapters.gcs.bucket_io import BucketIO

    options = {"retry_deadline_s": 2.5, "endpoint": "http://127.0.0.1:9", "local": True}
    assert request_timeouts(policy_for(options)) == (2.5, 2.5)
    assert request_timeouts(policy_for({})) == (5.0, 60.0)
    schema = KeySchema(KeyAttribute("id"))
    ddb = DynamoDBClients(ReplicaTarget("dynamodb:eu-west-1", "dynamodb", "eu-west-1", "t", "document", schema, "t",
                                      options), policy_for(options))
    config = ddb.table.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.5, 2.5)
    assert config.retries["total_max_attempts"] == 1
    assert BucketIO(ReplicaTarget("gcs:europe-west1", "gcs", "europe-west1", "t", "document", schema, "b",
                                  options), policy_for(options)).timeout == (2.5, 2.5)
    cosmos = make_client({**options, "endpoint": local_stack.endpoint("cosmos")})   # it reads the account
    connection = cosmos.client_connection.connection_policy
    assert connection.RequestTimeout == 2.5 and connection.RetryOptions._max_retry_attempt_count == 0
