"""``mcrepl sync``, ``mcrepl status``, ``mcrepl conflicts list``, ``mcrepl quarantine list``.

Thin commands over :class:`mcrepl.orchestrator.sync.SyncEngine` and the state store.
The state file is ``<state_dir>/state.db`` (a relative ``state_dir`` is taken from the
config file's folder). ``--namespace`` (or ``$MCREPL_NAMESPACE``) prefixes every table,
container and bucket name so tests and benchmarks never collide with real data.

Exit codes of ``sync --once``: 0 every lane caught up (and, with ``--verify``, the copies
compared converged), 1 ``--verify`` found copies that still differ, 2 bad input (any finding
of ``mcrepl validate``, before a connection is opened), 3 a lane did not catch up (store
unreachable, breaker open) or the deadline passed — checkpoints intact.
"""

from __future__ import annotations

import json
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer


from .common import (EXIT_FOUND, EXIT_INPUT, EXIT_STORE, ConfigOption, check_dataset, cli_errors, console,
                     err_console, fail, load, local_endpoints)
from .executor_opts import ExecutorOpt, SchedulerOpt, WorkersOpt, with_executor
from .follow_output import heartbeat_cells, lanes_table
from .output import cell, make_table

DatasetOpt = typer.Option(None, "--dataset", "-d", help="Only this dataset.")
FormatOpt = typer.Option("table", "--format", "-f", help="table or json.")
NamespaceOpt = typer.Option("", "--namespace", envvar="MCREPL_NAMESPACE",
                            help="Prefix for every resource name (tests, benchmarks).")


def state_path(config: Any) -> Path:
    """Where the sync state of ``config`` lives."""
    return Path(config.state_dir) / "state.db"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if ts else "-"


def _observability(config: Any, state: Any, metrics_port: int | None, log_level: str,
                   scheduled: list[str]) -> tuple[Any, Any, Any]:
    """Redacting logs (with trace ids), tracing from ``OTEL_*``, the audit trail, and — with a
    port — metrics, ``/healthz`` and ``/readyz`` with every series created up front."""
    from mcrepl.orchestrator.observability.audit import AuditTrail, audit_path
    from mcrepl.orchestrator.observability.logging import configure_logging
    from mcrepl.orchestrator.observability.tracing import setup_tracing
    sensitive = sorted({f for ds in config.datasets.values() for f in ds.sensitive_fields})
    configure_logging(log_level, sensitive)
    setup_tracing()
    metrics = server = None
    if metrics_port is not None:
        from mcrepl.orchestrator.observability.metrics import SyncMetrics
        from mcrepl.orchestrator.sync.schedule import schedule_period
        from mcrepl.orchestrator.sync.status import lane_status
        metrics = SyncMetrics()
        metrics.prepare({name: [r.at for r in ds.locations] for name, ds in config.datasets.items()},
                        sorted({r.provider for ds in config.datasets.values() for r in ds.locations}),
                        lane_status(config, state))
        for name, ds in config.datasets.items():
            if ds.sync.lag_objective is not None:
                metrics.lag_objective(name, ds.sync.lag_objective.total_seconds())
        if scheduled:
            metrics.schedule({name: schedule_period(config.datasets[name].schedule) for name in scheduled},
                             grace_s=config.sync.deadline.total_seconds())
        server = metrics.serve(metrics_port)
        err_console.print(f"serving {server.url} (and /healthz, /readyz)", highlight=False)
    return metrics, server, AuditTrail(audit_path(config.state_dir))


def sync(config_file: Path = ConfigOption, once: bool = typer.Option(False, "--once", help="One pass, then exit."),
         schedule: bool = typer.Option(False, "--schedule", help="Run each dataset on its schedule until stopped "
                                       "(datasets with sync.mode: follow are followed instead), writing each "
                                       "dataset's heartbeat every sync.heartbeat so status shows its lag and RPO."),
         follow: bool = typer.Option(False, "--follow", help="Replicate continuously until SIGINT/SIGTERM: capture "
                                     "follows the primary's change log, lanes apply in small batches, heartbeats "
                                     "measure lag; on stop, lanes drain what was captured."),
         dataset: Optional[str] = DatasetOpt,
         metrics_port: Optional[int] = typer.Option(None, "--metrics-port",
                                                    help="Serve Prometheus /metrics, /healthz and /readyz on "
                                                         "127.0.0.1:PORT (0: any free port)."),
         namespace: str = NamespaceOpt, output: str = FormatOpt,
         verify: bool = typer.Option(False, "--verify", help="With --once: compare the copies after the pass "
                                     "(anti-entropy, repairing up to sync.anti_entropy.repair_max keys)."),
         log_level: str = typer.Option("warning", "--log-level"),
         executor: Optional[str] = ExecutorOpt, workers: Optional[int] = WorkersOpt,
         scheduler: Optional[str] = SchedulerOpt) -> None:
    """Replicate every dataset (or one) from its primary to its replicas.

    The config is checked first exactly as 'mcrepl validate' checks it (exit 2 on any
    finding, before any connection). Residency and field-encryption policies are enforced
    on every record. A lane is reported "caught up" when it applied everything captured;
    "converged" is said only after a comparison of the copies (--verify, or the schedule's
    anti-entropy). OTEL_TRACES_EXPORTER=console (or otlp) traces every pass. Store calls
    run as work units on --executor (threads by default; processes; dask with --workers N
    for a local cluster or --scheduler to join one). --follow exits 0 when every lane
    drained what was captured before the stop, 3 when one did not.
    """
    if once + schedule + follow != 1:
        fail("give exactly one of --once, --schedule or --follow", EXIT_INPUT)
    config = with_executor(load(config_file), executor, workers, scheduler)
    names = check_dataset(config, dataset)
    from mcrepl.orchestrator.observability.tracing import shutdown_tracing
    from mcrepl.orchestrator.state import StateStore
    from mcrepl.orchestrator.sync import SyncDeadlineExceeded, SyncEngine
    from mcrepl.policies.router import router_for
    with cli_errors():
        state = StateStore(state_path(config))
        metrics, server, audit = _observability(config, state, metrics_port, log_level,
                                                [n for n in names if config.datasets[n].sync.mode != "follow"]
                                                if schedule else [])
        engine = SyncEngine(config, state, local_endpoints=local_endpoints(config), namespace=namespace,
                            router=router_for(config), metrics=metrics, audit=audit,
                            progress=once and output == "table" and sys.stderr.isatty())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: engine.request_stop())
    observe = metrics.observe_pass if metrics is not None else None
    try:
        if schedule:
            from mcrepl.orchestrator.sync.schedule import run_scheduled
            with cli_errors():
                run_scheduled(engine, config, dataset, observe=observe)
            return
        if follow:
            from .follow_output import run_follow
            run_follow(engine, names, output)
        with cli_errors():
            try:
                report = engine.run_once(dataset, verify=verify)
            except SyncDeadlineExceeded as exc:
                if observe:
                    observe(exc.report, exc, names)
                _print_report(exc.report, output)
                fail(str(exc), EXIT_STORE)
            if observe:
                observe(report, None, names)
    finally:
        engine.close()
        if server is not None:
            server.stop()
        shutdown_tracing()
    _print_report(report, output)
    if not all(d.caught_up for d in report.datasets.values()):
        raise typer.Exit(EXIT_STORE)
    raise typer.Exit(EXIT_FOUND if any(d.converged is False for d in report.datasets.values()) else 0)


def _print_report(report: Any, output: str) -> None:
    if report is None:
        return
    if output == "json":
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    console.print(lanes_table(report.datasets.values(), "caught up", f"sync pass ({report.seconds:.1f}s)"))
    for ds in report.datasets.values():
        if ds.capture_error:
            console.print(f"{ds.dataset}: capture from {ds.primary}: {ds.capture_error}", highlight=False,
                          markup=False)
        if ds.verify is not None:
            v = ds.verify
            word = "converged" if v.converged else f"NOT converged: {v.remaining} keys differ"
            console.print(f"{ds.dataset}: copies compared: {word} (repaired {v.repaired}, withheld by policy "
                          f"{v.withheld}){f' — {v.detail}' if v.detail else ''}", highlight=False, markup=False)


def status(config_file: Path = ConfigOption, dataset: Optional[str] = DatasetOpt, output: str = FormatOpt) -> None:
    """Lag, checkpoints, backlog, conflicts, quarantine and errors per dataset and replica.

    Reads the state file only (no store is contacted), so it answers while a store is down.
    """
    from mcrepl.orchestrator.state import StateStore
    from mcrepl.orchestrator.sync.status import lane_status
    _check_format(output)
    config = load(config_file, checked=False)
    with cli_errors():
        rows = lane_status(config, StateStore(state_path(config)), dataset)
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    table = make_table(("dataset", "replica", "lane", "lag (s)", "lag (changes)", "heartbeat lag p50/p99 (s)",
                        "RPO estimate (s)", "last checkpoint", "backlog (batches)", "conflicts", "quarantined",
                        "breaker", "last verify", "last error"), title="mcrepl status")
    for r in rows:
        table.add_row(cell(r["dataset"]), cell(r["replica"]), cell(r["lane"]), cell(f"{r['lag_seconds']:.1f}"),
                      cell(r["lag_changes"]), *heartbeat_cells(r["heartbeat_lag"]),
                      cell(_when(r["last_checkpoint"])), cell(r["backlog_batches"]),
                      cell(r["conflicts"]), cell(r["quarantined"]),
                      cell(r["breaker"], "red" if r["breaker"] == "open" else None), cell(_verified(r["last_verify"])),
                      cell(r["last_error"]))
    console.print(table)


def _check_format(output: str) -> None:
    if output not in ("table", "json"):
        fail(f"--format {output!r} is not supported (fix: use table or json)")


def _verified(v: dict[str, Any] | None) -> str:
    if v is None:
        return "never"
    word = "converged" if v["converged"] else f"{v['divergent']} differ"
    return f"{word}, {v['age_seconds']:.0f}s ago"


def _list_rows(kind: str, config_file: Path, dataset: str | None, output: str) -> None:
    from mcrepl.orchestrator.state import StateStore
    _check_format(output)
    config = load(config_file, checked=False)
    with cli_errors():
        journal = StateStore(state_path(config)).journal
    rows = journal.conflicts(dataset) if kind == "conflicts" else journal.quarantined(dataset)
    if output == "json":
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if kind == "conflicts":
        cols: tuple[str, ...] = ("at", "dataset", "key", "replica", "incoming", "stored", "winner", "resolver")
        cells = [(_when(r["at"]), r["dataset"], r["key_id"], r["replica"], r["incoming"]["v"],
                  r["stored"]["v"], r["winner"], r["resolver"]) for r in rows]
    else:
        cols = ("at", "dataset", "key", "replica", "version", "rule", "field", "message")
        cells = [(_when(r["at"]), r["dataset"], r["key_id"], r["replica"], r["version"], r["rule"],
                  r["field"] or "-", r["message"]) for r in rows]
    table = make_table(cols, title=f"{kind} ({len(rows)})")
    for row in cells:
        table.add_row(*(cell(v) for v in row))
    console.print(table)


def conflicts_list(config_file: Path = ConfigOption, dataset: Optional[str] = DatasetOpt,
                   output: str = FormatOpt) -> None:
    """Every logged conflict: both versions (metadata only) and the winner."""
    _list_rows("conflicts", config_file, dataset, output)


def quarantine_list(config_file: Path = ConfigOption, dataset: Optional[str] = DatasetOpt,
                    output: str = FormatOpt) -> None:
    """Records a replica could not hold: key, rule, field and why (never the values)."""
    _list_rows("quarantine", config_file, dataset, output)


def register(app: typer.Typer) -> None:
    """Add ``sync``, ``status``, ``conflicts list`` and ``quarantine list`` to ``app``."""
    app.command("sync")(sync)
    app.command("status")(status)
    conflicts = typer.Typer(help="Conflicts between concurrent versions.", no_args_is_help=True)
    conflicts.command("list")(conflicts_list)
    app.add_typer(conflicts, name="conflicts")
    quarantine = typer.Typer(help="Records a replica could not hold.", no_args_is_help=True)
    quarantine.command("list")(quarantine_list)
    app.add_typer(quarantine, name="quarantine")
