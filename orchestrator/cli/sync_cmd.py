"""``mcrepl sync``, ``mcrepl status``, ``mcrepl conflicts list``, ``mcrepl quarantine list``.

Thin commands over :class:`mcrepl.orchestrator.sync.SyncEngine` and the state store.
The state file is ``<state_dir>/state.db`` (a relative ``state_dir`` is taken from the
config file's folder). ``--namespace`` (or ``$MCREPL_NAMESPACE``) prefixes every table,
container and bucket name so tests and benchmarks never collide with real data.

Exit codes of ``sync --once``: 0 every lane caught up (and, with ``--verify``, the copies
compared converged), 1 ``--verify`` found copies that still differ, 2 bad input, 3 a lane
did not catch up (store unreachable, breaker open) or the deadline passed — checkpoints intact.
"""

from __future__ import annotations

import json
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer


from .common import EXIT_FOUND, EXIT_INPUT, EXIT_STORE, ConfigOption, cli_errors, fail, load, local_endpoints

DatasetOpt = typer.Option(None, "--dataset", "-d", help="Only this dataset.")
FormatOpt = typer.Option("table", "--format", "-f", help="table or json.")
NamespaceOpt = typer.Option("", "--namespace", envvar="MCREPL_NAMESPACE",
                            help="Prefix for every resource name (tests, benchmarks).")


def state_path(config: Any) -> Path:
    """Where the sync state of ``config`` lives."""
    return Path(config.state_dir) / "state.db"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if ts else "-"


def _observability(config: Any, metrics_port: int | None, log_level: str) -> tuple[Any, Any]:
    """Redacting logs, the audit trail, and metrics when a port is given."""
    from mcrepl.orchestrator.observability.audit import AuditTrail, audit_path
    from mcrepl.orchestrator.observability.logging import configure_logging
    sensitive = sorted({f for ds in config.datasets.values() for f in ds.sensitive_fields})
    configure_logging(log_level, sensitive)
    metrics = None
    if metrics_port is not None:
        from mcrepl.orchestrator.observability.metrics import SyncMetrics
        metrics = SyncMetrics()
        metrics.serve(metrics_port)
    return metrics, AuditTrail(audit_path(config.state_dir))


def sync(config_file: Path = ConfigOption, once: bool = typer.Option(False, "--once", help="One pass, then exit."),
         schedule: bool = typer.Option(False, "--schedule", help="Run each dataset on its schedule until stopped."),
         dataset: Optional[str] = DatasetOpt,
         metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics here."),
         namespace: str = NamespaceOpt, output: str = FormatOpt,
         verify: bool = typer.Option(False, "--verify", help="With --once: compare the copies after the pass "
                                     "(anti-entropy, repairing up to sync.anti_entropy.repair_max keys)."),
         log_level: str = typer.Option("warning", "--log-level")) -> None:
    """Replicate every dataset (or one) from its primary to its replicas.

    Residency and field-encryption policies in the config are enforced on every record.
    A lane is reported "caught up" when it applied everything captured; "converged" is
    said only after a comparison of the copies (--verify, or the schedule's anti-entropy).
    """
    if once == schedule:
        fail("give exactly one of --once or --schedule", EXIT_INPUT)
    from mcrepl.orchestrator.state import StateStore
    from mcrepl.orchestrator.sync import SyncDeadlineExceeded, SyncEngine
    from mcrepl.policies.router import router_for
    config = load(config_file)
    with cli_errors():
        metrics, audit = _observability(config, metrics_port, log_level)
        state = StateStore(state_path(config))
        engine = SyncEngine(config, state, local_endpoints=local_endpoints(config), namespace=namespace,
                            router=router_for(config), metrics=metrics, audit=audit,
                            progress=once and output == "table" and sys.stderr.isatty())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: engine.request_stop())
    try:
        if schedule:
            from mcrepl.orchestrator.sync.schedule import run_scheduled
            with cli_errors():
                run_scheduled(engine, config, dataset)
            return
        with cli_errors():
            try:
                report = engine.run_once(dataset, verify=verify)
            except SyncDeadlineExceeded as exc:
                _print_report(exc.report, output)
                fail(str(exc), EXIT_STORE)
    finally:
        engine.close()
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
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"sync pass ({report.seconds:.1f}s)")
    for col in ("dataset", "replica", "captured", "applied", "replayed", "stale", "quarantined", "withheld",
                "conflicts", "errors", "caught up"):
        table.add_column(col)
    for ds in report.datasets.values():
        for lane in ds.lanes.values():
            table.add_row(ds.dataset, lane.replica, str(ds.captured), str(lane.applied), str(lane.replayed),
                          str(lane.stale), str(lane.quarantined), str(lane.withheld), str(lane.conflicts),
                          str(lane.errors), "yes" if lane.caught_up else f"no: {lane.reason or lane.last_error}")
    console = Console()
    console.print(table)
    for ds in report.datasets.values():
        if ds.capture_error:
            console.print(f"{ds.dataset}: capture from {ds.primary}: {ds.capture_error}", highlight=False)
        if ds.verify is not None:
            v = ds.verify
            word = "converged" if v.converged else f"NOT converged: {v.remaining} keys differ"
            console.print(f"{ds.dataset}: copies compared: {word} (repaired {v.repaired}, withheld by policy "
                          f"{v.withheld}){f' — {v.detail}' if v.detail else ''}", highlight=False)


def status(config_file: Path = ConfigOption, dataset: Optional[str] = DatasetOpt, output: str = FormatOpt) -> None:
    """Lag, checkpoints, backlog, conflicts, quarantine and errors per dataset and replica."""
    from mcrepl.orchestrator.state import StateStore
    from mcrepl.orchestrator.sync.status import lane_status
    config = load(config_file)
    with cli_errors():
        rows = lane_status(config, StateStore(state_path(config)), dataset)
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title="mcrepl status")
    for col in ("dataset", "replica", "lane", "lag (s)", "lag (changes)", "last checkpoint", "backlog (batches)",
                "conflicts", "quarantined", "breaker", "last verify", "last error"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["dataset"], r["replica"], r["lane"], f"{r['lag_seconds']:.1f}", str(r["lag_changes"]),
                      _when(r["last_checkpoint"]), str(r["backlog_batches"]), str(r["conflicts"]),
                      str(r["quarantined"]), r["breaker"], _verified(r["last_verify"]), (r["last_error"] or "-")[:120])
    Console().print(table)


def _verified(v: dict[str, Any] | None) -> str:
    if v is None:
        return "never"
    word = "converged" if v["converged"] else f"{v['divergent']} differ"
    return f"{word}, {v['age_seconds']:.0f}s ago"


def _list_rows(kind: str, config_file: Path, dataset: str | None, output: str) -> None:
    from mcrepl.orchestrator.state import StateStore
    config = load(config_file)
    with cli_errors():
        journal = StateStore(state_path(config)).journal
    rows = journal.conflicts(dataset) if kind == "conflicts" else journal.quarantined(dataset)
    if output == "json":
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{kind} ({len(rows)})")
    if kind == "conflicts":
        cols = ("at", "dataset", "key", "replica", "incoming", "stored", "winner", "resolver")
        cells = [(_when(r["at"]), r["dataset"], r["key_id"], r["replica"], r["incoming"]["v"],
                  r["stored"]["v"], r["winner"], r["resolver"]) for r in rows]
    else:
        cols = ("at", "dataset", "key", "replica", "version", "rule", "field", "message")
        cells = [(_when(r["at"]), r["dataset"], r["key_id"], r["replica"], r["version"], r["rule"],
                  r["field"] or "-", r["message"]) for r in rows]
    for col in cols:
        table.add_column(col)
    for row in cells:
        table.add_row(*row)
    Console().print(table)


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
