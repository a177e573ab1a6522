"""Prometheus metrics of the sync engine, all named ``mcrepl_*`` (see docs/observability.md).

:class:`SyncMetrics` owns its registry (a fresh one unless given), so several engines
in one process (tests, drills) never collide on metric registration. Every adapter
retry is counted by provider through the hook in :mod:`mcrepl.adapters.base.retry`:
one module-level listener fans out to every live :class:`SyncMetrics` (held weakly, so
a discarded engine's metrics are garbage-collected).
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from mcrepl.adapters.base import retry as retry_policy
from mcrepl.adapters.base.errors import AdapterError

OUTCOMES = ("applied", "replayed", "stale", "rejected", "quarantined", "withheld", "conflict",
            "echo_suppressed")
"""Change outcomes counted by ``mcrepl_changes_total``."""

BREAKER_STATES = {"closed": 0, "open": 1, "half_open": 2}
"""Value of ``mcrepl_breaker_state`` for each circuit-breaker state."""

_live: "weakref.WeakSet[SyncMetrics]" = weakref.WeakSet()
_hook_lock = threading.Lock()
_hook_installed = False


def _count_retry(exc: AdapterError) -> None:
    for metrics in list(_live):
        metrics.retry(exc.provider or "unknown")


def _install_retry_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            retry_policy.on_retry(_count_retry)
            _hook_installed = True


class MetricsServer:
    """A running ``/metrics`` endpoint; call it (or :meth:`stop`) to shut it down."""

    def __init__(self, server: object, thread: threading.Thread, port: int) -> None:
        self._server = server
        self._thread = thread
        self.port = port
        self.url = f"http://127.0.0.1:{port}/metrics"

    def stop(self) -> None:
        """Stop serving and join the server thread; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server.server_close()  # type: ignore[attr-defined]
            self._thread.join(timeout=5)

    __call__ = stop


class SyncMetrics:
    """Counters and gauges for replication: changes by outcome, lag, retries, breaker state."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        lane = ["dataset", "replica"]
        self._changes = Counter("mcrepl_changes", "Changes handled per replica lane, by outcome.",
                                [*lane, "outcome"], registry=self.registry)
        self._lag_seconds = Gauge("mcrepl_replica_lag_seconds",
                                  "Age of the oldest change not yet applied to the replica (0 when caught up).",
                                  lane, registry=self.registry)
        self._lag_changes = Gauge("mcrepl_replica_lag_changes",
                                  "Changes captured but not yet applied to the replica.",
                                  lane, registry=self.registry)
        self._retries = Counter("mcrepl_retries", "Adapter calls retried after a retryable error.",
                                ["provider"], registry=self.registry)
        self._breaker = Gauge("mcrepl_breaker_state",
                              "Circuit breaker per replica lane: 0 closed, 1 open, 2 half-open.",
                              lane, registry=self.registry)
        self._breaker_changes = Counter("mcrepl_breaker_transitions",
                                        "Circuit-breaker transitions per replica lane, by new state.",
                                        [*lane, "state"], registry=self.registry)
        self._breaker_last: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        _live.add(self)
        _install_retry_hook()

    def changes(self, dataset: str, replica: str, outcome: str, n: int = 1) -> None:
        """Count ``n`` changes with ``outcome`` (one of :data:`OUTCOMES`) on a replica lane."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown change outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
        if n:
            self._changes.labels(dataset, replica, outcome).inc(n)

    def lag(self, dataset: str, replica: str, seconds: float, changes: int) -> None:
        """Set how far a replica lane is behind, in seconds and in changes."""
        self._lag_seconds.labels(dataset, replica).set(max(0.0, seconds))
        self._lag_changes.labels(dataset, replica).set(max(0, changes))

    def retry(self, provider: str) -> None:
        """Count one retried adapter call for ``provider``."""
        self._retries.labels(provider).inc()

    def breaker(self, dataset: str, replica: str, state: str) -> None:
        """Record a lane's breaker state (closed, open or half_open); transitions are counted."""
        if state not in BREAKER_STATES:
            raise ValueError(f"unknown breaker state {state!r}; use closed, open or half_open")
        self._breaker.labels(dataset, replica).set(BREAKER_STATES[state])
        with self._lock:
            previous = self._breaker_last.get((dataset, replica))
            self._breaker_last[(dataset, replica)] = state
        if previous is not None and previous != state:
            self._breaker_changes.labels(dataset, replica, state).inc()

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (e.g. ``mcrepl_changes_total``), 0.0 if never set."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def serve(self, port: int) -> Callable[[], None]:
        """Serve ``/metrics`` on 127.0.0.1:``port`` (0: OS-picked) in a daemon thread.

        Returns a :class:`MetricsServer`: calling it stops the server; ``.port`` and
        ``.url`` say where it listens.
        """
        server, thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return MetricsServer(server, thread, server.server_address[1])
