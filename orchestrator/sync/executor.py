"""Where a pass's steps run: a thread pool by default, inline for the deterministic simulation.

A pass hands out *steps* — one capture page, one lane window — and collects their
futures. The coordinator never blocks on a single step: a step still running past its
deadline is abandoned (its thread finishes on its own; every commit it may still make is
conditional and idempotent), so one hung store costs only its own lane.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable, Protocol


class StepExecutor(Protocol):
    """Runs steps and reports their completion."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:  # type: ignore[type-arg]
        """Start ``fn(*args)``; its future completes with the result or the exception."""
        ...

    def wait_any(self, futures: Iterable[Future], timeout: float) -> set[Future]:  # type: ignore[type-arg]
        """Futures among ``futures`` that are done, waiting up to ``timeout`` seconds for one."""
        ...

    def shutdown(self) -> None:
        """Stop accepting steps; never waits for an abandoned one."""
        ...


class ThreadStepExecutor:
    """Steps on a thread pool of ``workers`` threads."""

    def __init__(self, workers: int, name: str = "sync") -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:  # type: ignore[type-arg]
        return self._pool.submit(fn, *args)

    def wait_any(self, futures: Iterable[Future], timeout: float) -> set[Future]:  # type: ignore[type-arg]
        done, _ = wait(list(futures), timeout=timeout, return_when=FIRST_COMPLETED)
        return set(done)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class InlineStepExecutor:
    """Runs each step at submission, on the caller's thread: deterministic, for the simulation.

    Exceptions that are not :class:`Exception` (a simulated process crash) propagate out of
    ``submit`` exactly as they would end a real process.
    """

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:  # type: ignore[type-arg]
        future: Future = Future()  # type: ignore[type-arg]
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - delivered through the future like a thread's
            future.set_exception(exc)
        return future

    def wait_any(self, futures: Iterable[Future], timeout: float) -> set[Future]:  # type: ignore[type-arg]
        return {f for f in futures if f.done()}

    def shutdown(self) -> None:
        pass
