"""Prometheus metrics of the sync engine, all named ``mcrepl_*`` (see docs/observability.md).

What an SRE can alert on:

* every series exists from the start — :meth:`SyncMetrics.prepare` creates each
  counter at zero for every dataset, location and outcome of the config, and sets lag
  and breaker state from the state file, so ``rate()`` and ``absent()`` work before the
  first change and a restart does not reset a lagging lane to "0 behind";
* lag moves as work happens: the engine calls :meth:`SyncMetrics.lane_progress` after
  every committed batch, not only at the end of a pass;
* ``mcrepl_last_success_timestamp_seconds`` per dataset says when a pass last ended
  with capture and every lane caught up (0: never, since this process started);
* the breaker is a state set (``mcrepl_breaker_state{state="open"} 1``), not a number;
* ``/healthz`` and ``/readyz`` are served beside ``/metrics``: ready means every
  scheduled dataset finished a pass within its schedule period (plus the pass deadline)
  and no lane's breaker is open.

:class:`SyncMetrics` owns its registry (a fresh one unless given), so several engines in
one process (tests, drills) never collide. Adapter retries are counted through the hook
in :mod:`mcrepl.adapters.base.retry`: one module-level listener fans out to every live
:class:`SyncMetrics` (held weakly, so a discarded engine's metrics are garbage-collected).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable, Mapping
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, make_wsgi_app

from mcrepl.adapters.base import retry as retry_policy
from mcrepl.adapters.base.errors import AdapterError

OUTCOMES = ("applied", "replayed", "stale", "rejected", "quarantined", "withheld", "conflict",
            "echo_suppressed")
"""Change outcomes counted by ``mcrepl_changes_total``."""

BREAKER_STATES = ("closed", "open", "half_open")
"""States of ``mcrepl_breaker_state`` (a Prometheus state set)."""

PASS_OUTCOMES = ("ok", "not_caught_up", "capture_failed", "deadline", "error")
"""``outcome`` of ``mcrepl_passes_total``: ok means capture succeeded and every lane caught up."""

PROVIDERS = ("dynamodb", "cosmos", "gcs")

LAG_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Buckets of ``mcrepl_replication_lag_seconds``: fine below the one-second objectives follow mode serves."""

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


@dataclass
class Readiness:
    """What ``/readyz`` decides from: each dataset's schedule period and last finished pass."""

    periods: dict[str, float] = field(default_factory=dict)     # dataset → allowed seconds between passes
    grace_s: float = 0.0                                        # a pass may take up to sync.deadline
    last_pass: dict[str, float] = field(default_factory=dict)   # dataset → wall time the last pass ended
    open_breakers: set[tuple[str, str]] = field(default_factory=set)
    started: float = field(default_factory=time.time)

    def problems(self, now: float | None = None) -> list[str]:
        """Why the process is not ready (empty: ready)."""
        now = time.time() if now is None else now
        found = []
        for dataset, period in sorted(self.periods.items()):
            ended = self.last_pass.get(dataset)
            allowed = period + self.grace_s
            if ended is None:
                if now - self.started > allowed:
                    found.append(f"{dataset}: no pass has finished in {now - self.started:.0f}s "
                                 f"(schedule allows {allowed:.0f}s)")
                else:
                    found.append(f"{dataset}: first pass not finished yet")
            elif now - ended > allowed:
                found.append(f"{dataset}: last pass ended {now - ended:.0f}s ago (schedule allows {allowed:.0f}s)")
        for dataset, replica in sorted(self.open_breakers):
            found.append(f"{dataset} → {replica}: circuit breaker open")
        return found


class SyncMetrics:
    """Counters, gauges and the state set of replication; see the module docstring."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        lane = ["dataset", "replica"]
        r = self.registry
        self._changes = Counter("mcrepl_changes", "Changes handled per replica lane, by outcome.",
                                [*lane, "outcome"], registry=r)
        self._lag_seconds = Gauge("mcrepl_replica_lag_seconds",
                                  "Age of the oldest change not yet applied to the replica (0 when caught up).",
                                  lane, registry=r)
        self._lag_changes = Gauge("mcrepl_replica_lag_changes",
                                  "Changes captured but not yet applied to the replica.", lane, registry=r)
        self._last_commit = Gauge("mcrepl_lane_last_commit_timestamp_seconds",
                                  "Unix time of the lane's last committed batch.", lane, registry=r)
        self._retries = Counter("mcrepl_retries", "Adapter calls retried after a retryable error.",
                                ["provider"], registry=r)
        self._breaker = Enum("mcrepl_breaker_state", "Circuit breaker of each replica lane (state set).",
                             lane, states=list(BREAKER_STATES), registry=r)
        self._breaker_changes = Counter("mcrepl_breaker_transitions",
                                        "Circuit-breaker transitions per replica lane, by new state.",
                                        [*lane, "state"], registry=r)
        self._captured = Counter("mcrepl_captured_changes", "Changes captured from the primary and logged.",
                                 ["dataset"], registry=r)
        self._passes = Counter("mcrepl_passes", "Sync passes per dataset, by outcome.", ["dataset", "outcome"],
                               registry=r)
        self._pass_seconds = Histogram("mcrepl_pass_duration_seconds", "Duration of sync passes.", ["dataset"],
                                       buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
                                       registry=r)
        self._last_success = Gauge("mcrepl_last_success_timestamp_seconds",
                                   "Unix time the dataset's last pass ended with capture and every lane "
                                   "caught up (0: not since this process started).", ["dataset"], registry=r)
        self._last_pass = Gauge("mcrepl_last_pass_timestamp_seconds",
                                "Unix time the dataset's last pass ended, whatever its outcome.", ["dataset"],
                                registry=r)
        self._period = Gauge("mcrepl_schedule_period_seconds",
                             "Seconds between the dataset's scheduled passes (--schedule mode).", ["dataset"],
                             registry=r)
        self._replication_lag = Histogram(
            "mcrepl_replication_lag_seconds", "End-to-end lag of heartbeats: written to the primary, "
            "acknowledged by the replica.", lane, buckets=LAG_BUCKETS, registry=r)
        self._heartbeat_age = Gauge("mcrepl_heartbeat_age_seconds", "Age of the newest heartbeat the replica "
                                    "has received (follow mode; grows while nothing arrives).", lane, registry=r)
        self._lag_objective = Gauge("mcrepl_replication_lag_objective_seconds", "The dataset's configured p99 "
                                    "lag objective (sync.lag_objective).", ["dataset"], registry=r)
        self._breaker_last: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self.readiness = Readiness()
        _live.add(self)
        _install_retry_hook()

    # -- set-up ----------------------------------------------------------------------------

    def prepare(self, lanes: Mapping[str, Iterable[str]], providers: Iterable[str] = PROVIDERS,
                status_rows: Iterable[Mapping[str, Any]] = ()) -> None:
        """Create every series at zero: ``lanes`` maps each dataset to its locations.

        Every location gets the counters (a failover turns the primary into a replica);
        ``status_rows`` (:func:`mcrepl.orchestrator.sync.status.lane_status`) set lag and
        breaker state from the state file, so a restart reports what is really pending.
        """
        for dataset, locations in lanes.items():
            self._captured.labels(dataset)
            self._last_success.labels(dataset).set(0)
            for outcome in PASS_OUTCOMES:
                self._passes.labels(dataset, outcome)
            for replica in locations:
                for outcome in OUTCOMES:
                    self._changes.labels(dataset, replica, outcome)
                for state in BREAKER_STATES:
                    self._breaker_changes.labels(dataset, replica, state)
        for provider in providers:
            self._retries.labels(provider)
        for row in status_rows:
            self.lag(row["dataset"], row["replica"], float(row["lag_seconds"]), int(row["lag_changes"]))
            self.breaker(row["dataset"], row["replica"], str(row["breaker"]).replace("-", "_"))

    def schedule(self, periods: Mapping[str, float], grace_s: float) -> None:
        """Record each scheduled dataset's period; ``/readyz`` holds passes to it."""
        for dataset, period in periods.items():
            self._period.labels(dataset).set(period)
        self.readiness.periods = dict(periods)
        self.readiness.grace_s = grace_s

    # -- what the engine calls -----------------------------------------------------------------

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

    def lane_progress(self, dataset: str, replica: str, lag_changes: int, lag_seconds: float) -> None:
        """After a lane committed a batch: its lag now, and the commit time.

        The engine calls this at every batch commit, so lag gauges move while a long pass runs.
        """
        self.lag(dataset, replica, lag_seconds, lag_changes)
        self._last_commit.labels(dataset, replica).set(time.time())

    def replication_lag(self, dataset: str, replica: str, seconds: float) -> None:
        """One heartbeat arrived at ``replica`` ``seconds`` after it was written to the primary."""
        self._replication_lag.labels(dataset, replica).observe(seconds)

    def heartbeat_age(self, dataset: str, replica: str, seconds: float) -> None:
        """How old the newest heartbeat ``replica`` has received is, now."""
        self._heartbeat_age.labels(dataset, replica).set(max(0.0, seconds))

    def lag_objective(self, dataset: str, seconds: float) -> None:
        """Export the dataset's configured lag objective (the alert rules compare against it)."""
        self._lag_objective.labels(dataset).set(seconds)

    def retry(self, provider: str) -> None:
        """Count one retried adapter call for ``provider``."""
        self._retries.labels(provider).inc()

    def breaker(self, dataset: str, replica: str, state: str) -> None:
        """Record a lane's breaker state (closed, open or half_open); transitions are counted."""
        if state not in BREAKER_STATES:
            raise ValueError(f"unknown breaker state {state!r}; use closed, open or half_open")
        self._breaker.labels(dataset, replica).state(state)
        with self._lock:
            previous = self._breaker_last.get((dataset, replica))
            self._breaker_last[(dataset, replica)] = state
            if state == "open":
                self.readiness.open_breakers.add((dataset, replica))
            else:
                self.readiness.open_breakers.discard((dataset, replica))
        if previous is not None and previous != state:
            self._breaker_changes.labels(dataset, replica, state).inc()

    # -- what the command calls after each pass ----------------------------------------------

    def observe_pass(self, report: Any, error: BaseException | None = None,
                     datasets: Iterable[str] = ()) -> None:
        """Count a finished pass: outcome and time per dataset, captured changes, duration.

        ``report`` is a :class:`~mcrepl.orchestrator.sync.report.SyncReport` (``None`` when
        the pass raised before producing one: then ``datasets`` names what it was for).
        """
        now = time.time()
        ran = dict(report.datasets) if report is not None else {}
        names = list(ran) or list(datasets)
        for name in names:
            ds = ran.get(name)
            if ds is None or error is not None and name not in ran:
                outcome = "deadline" if type(error).__name__ == "SyncDeadlineExceeded" else "error"
            elif type(error).__name__ == "SyncDeadlineExceeded" and not _dataset_ok(ds):
                outcome = "deadline"
            elif ds.capture_error is not None:
                outcome = "capture_failed"
            elif not _dataset_ok(ds):
                outcome = "not_caught_up"
            else:
                outcome = "ok"
            self._passes.labels(name, outcome).inc()
            self._last_pass.labels(name).set(now)
            self.readiness.last_pass[name] = now
            if ds is not None and ds.captured:
                self._captured.labels(name).inc(ds.captured)
            if outcome == "ok":
                self._last_success.labels(name).set(now)
        if report is not None and names:
            self._pass_seconds.labels(names[0] if len(names) == 1 else "all").observe(report.seconds)

    # -- reading and serving -------------------------------------------------------------------

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (e.g. ``mcrepl_changes_total``), 0.0 if never set."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def serve(self, port: int) -> "MetricsServer":
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on 127.0.0.1:``port`` (0: OS-picked).

        Returns a :class:`MetricsServer`: calling it stops the server; ``.port`` and
        ``.url`` say where it listens.
        """
        return MetricsServer.start(self.registry, self.readiness, port)


def _dataset_ok(ds: Any) -> bool:
    return ds.capture_error is None and all(lane.caught_up for lane in ds.lanes.values())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Scrapes every few seconds would flood stderr; access logs are the proxy's job."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def health_app(registry: CollectorRegistry, readiness: Readiness) -> Callable[..., Any]:
    """The WSGI app: ``/metrics`` (Prometheus text), ``/healthz`` (alive), ``/readyz`` (200 or 503)."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        if path == "/readyz":
            problems = readiness.problems()
            body = json.dumps({"ready": not problems, "problems": problems}).encode() + b"\n"
            start_response("200 OK" if not problems else "503 Service Unavailable",
                           [("Content-Type", "application/json")])
            return [body]
        return list(metrics_app(environ, start_response))

    return app


class MetricsServer:
    """A running ``/metrics`` + ``/healthz`` + ``/readyz`` endpoint; call it (or :meth:`stop`) to stop."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, port: int) -> None:
        self._server = server
        self._thread = thread
        self.port = port
        self.url = f"http://127.0.0.1:{port}/metrics"

    @classmethod
    def start(cls, registry: CollectorRegistry, readiness: Readiness, port: int) -> "MetricsServer":
        """Bind 127.0.0.1:``port`` and serve in a daemon thread."""
        server = make_server("127.0.0.1", port, health_app(registry, readiness), _ThreadingServer,
                             handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="mcrepl-metrics", daemon=True)
        thread.start()
        return cls(server, thread, server.server_address[1])

    def stop(self) -> None:
        """Stop serving and join the server thread; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)

    __call__ = stop


class VerifyMetrics:
    """What ``mcrepl verify --metrics-file`` writes for node_exporter's textfile collector.

    verify is a one-shot command (cron, CI), so nothing could scrape it; the textfile
    collector exposes the last run's result until the next one replaces the file.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._divergent = Gauge("mcrepl_verify_divergent_keys", "Keys that differ from the reference replica "
                                "in the last verify run.", ["dataset", "replica"], registry=self.registry)
        self._breached = Gauge("mcrepl_verify_threshold_breached", "1 when the last verify run breached the "
                               "dataset's divergence threshold.", ["dataset"], registry=self.registry)
        self._last_run = Gauge("mcrepl_verify_last_run_timestamp_seconds", "Unix time of the last verify run.",
                               ["dataset"], registry=self.registry)

    def observe(self, report: Any) -> None:
        """Record one dataset's :class:`~mcrepl.orchestrator.verify.report.VerifyReport`."""
        for pair in report.pairs:
            self._divergent.labels(report.dataset, pair.other).set(len(pair.divergences))
        self._breached.labels(report.dataset).set(1 if report.breaches else 0)
        self._last_run.labels(report.dataset).set(time.time())

    def write(self, path: str) -> None:
        """Write the textfile atomically (the collector must never read half a file)."""
        from prometheus_client import write_to_textfile
        write_to_textfile(path, self.registry)
