"""The one retry policy: full-jitter exponential backoff, honouring the store's hint, under a deadline.

Adapters wrap each SDK call in :func:`call_with_retry`; it retries only errors whose
``retryable`` bit is set and never sleeps past the deadline, so throttling slows a job
down but never drops data and never hangs it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from .errors import AdapterError

T = TypeVar("T")
log = logging.getLogger("mcrepl.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how hard to retry a retryable store error."""

    deadline_s: float = 60.0
    initial_s: float = 0.05
    max_backoff_s: float = 5.0


DEFAULT_POLICY = RetryPolicy()


def request_timeouts(policy: RetryPolicy) -> tuple[float, float]:
    """(connect, read) seconds for one request: never longer than the retry deadline.

    The retry loop is the only one (SDK retries are off), and a request that hangs past
    the deadline would hold its lane past it; cut at the deadline, it is one more
    retryable failure the loop accounts for.
    """
    return min(5.0, policy.deadline_s), min(60.0, max(policy.deadline_s, 1.0))


def policy_for(options: Mapping[str, object]) -> RetryPolicy:
    """The retry policy a target asks for: ``options['retry_deadline_s']`` (set from
    ``sync.retry_deadline`` on every target the configuration resolves), else the default 60 s."""
    deadline = options.get("retry_deadline_s")
    return RetryPolicy(deadline_s=float(deadline)) if deadline else DEFAULT_POLICY  # type: ignore[arg-type]
_listeners: list[Callable[[AdapterError], None]] = []


def on_retry(listener: Callable[[AdapterError], None]) -> None:
    """Register a callback run before each retry (the metrics module counts retries here)."""
    _listeners.append(listener)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, AdapterError) and exc.retryable


class _HintedWait:
    """Full jitter, but never shorter than the store's own ``retry_after`` hint."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._jitter = wait_random_exponential(multiplier=policy.initial_s, max=policy.max_backoff_s)

    def __call__(self, state: RetryCallState) -> float:
        wait = self._jitter(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, AdapterError) and exc.retry_after:
            wait = max(wait, exc.retry_after)
        return wait


def _before_sleep(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, AdapterError):
        log.debug("retrying after %s (attempt %d)", exc, state.attempt_number)
        for listener in _listeners:
            listener(exc)


def call_translated(fn: Callable[[], T], policy: RetryPolicy, is_sdk_error: Callable[[BaseException], bool],
                    translate: Callable[[BaseException], BaseException]) -> T:
    """:func:`call_with_retry` over ``fn``, turning the SDK's exceptions into mcrepl's first.

    What each adapter's guarded call is: its ``errors.py`` says which exceptions are the
    SDK's (``is_sdk_error``) and what they mean (``translate``, which sets the retry bit);
    anything else is a programming error and propagates unchanged.
    """
    def attempt() -> T:
        try:
            return fn()
        except Exception as exc:
            if not is_sdk_error(exc):
                raise
            raise translate(exc) from exc
    return call_with_retry(attempt, policy)


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """Run ``fn``, retrying retryable :class:`AdapterError` until ``policy.deadline_s``.

    The last error is re-raised unchanged when the deadline passes, so callers see the
    store's real complaint rather than a wrapper.
    """
    retrying = Retrying(retry=retry_if_exception(_retryable), wait=_HintedWait(policy),
                        stop=stop_after_delay(policy.deadline_s), reraise=True,
                        before_sleep=_before_sleep, sleep=time.sleep)
    return retrying(fn)
