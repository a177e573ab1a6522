"""The retry policy: retries only retryable errors, honours hints, stops at the deadline."""

from __future__ import annotations

import time

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
