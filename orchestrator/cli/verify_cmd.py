"""``mcrepl verify`` and ``mcrepl repair``."""

from __future__ import annotations

import enum
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.markup import escape

from .common import EXIT_FOUND, ConfigOption, check_dataset, cli_errors, console, load, local_endpoints
from .executor_opts import ExecutorOpt, SchedulerOpt, WorkersOpt, with_executor
from .output import cell, make_table, printable


def _reference_first(cfg, dataset: str, replicas: list[str] | None) -> list[str] | None:  # type: ignore[no-untyped-def]
    """The replicas to compare: as given, else the recorded primary (after failovers) first."""
    if replicas:
        return replicas
    from mcrepl.orchestrator.state import StateStore
    from .sync_cmd import state_path
    path = state_path(cfg)
    if not path.exists():
        return None
    state = StateStore(path, audit=None)
    try:
        pointer = state.current_primary(dataset)
    finally:
        state.close()
    if pointer is None:
        return None
    return [pointer.location, *(r.at for r in cfg.datasets[dataset].locations if r.at != pointer.location)]


class Output(str, enum.Enum):
    """How results are printed."""

    text = "text"
    json = "json"


FormatOpt = typer.Option(Output.text, "--format", help="text or json.")
NamespaceOpt = typer.Option("", "--namespace", envvar="MCREPL_NAMESPACE",
                            help="Resource-name prefix, as given to 'mcrepl sync --namespace'.")


def _replicas(text: str | None) -> list[str] | None:
    return [r.strip() for r in text.split(",") if r.strip()] if text else None


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not enabled, transient=True)


def _advance_task(bar: Progress, task: TaskID) -> Callable[[str, int], None]:
    """A listing-progress callback that moves ``task`` on (bound now: each dataset has its own task)."""
    return lambda _replica, n: bar.advance(task, n)


@contextmanager
def _digest_units(cfg: Any) -> Iterator[Callable[[str, str], Any]]:
    """Per dataset, the listing on the configured executor; ``None`` (this process's threads) for threads."""
    if cfg.sync.executor.kind == "threads":
        yield lambda name, namespace: None
        return
    from mcrepl.adapters import open_adapter
    from mcrepl.orchestrator.sync.engine import executor_spec
    from mcrepl.orchestrator.sync.workers import digest_listing, open_executor
    units = open_executor(executor_spec(cfg), open_adapter)
    try:
        yield lambda name, namespace: digest_listing(units, {
            r.at: cfg.target(name, r.at, local_endpoints(cfg), namespace) for r in cfg.datasets[name].locations})
    finally:
        units.close()


def _print_report(report) -> None:  # type: ignore[no-untyped-def]
    status = "[green]clean[/]" if report.clean else f"[red]{report.divergent} divergent keys[/]"
    console.print(f"[bold]{report.dataset}[/]: {status} — {sum(report.keys.values())} digests in "
                  f"{report.seconds:.2f}s ({report.keys_per_second:,.0f} keys/s), reference {report.reference}")
    table = make_table(("replica", "keys", "divergent", "by kind", "ranges compared"))
    for pair in report.pairs:
        kinds = ", ".join(f"{k}={n}" for k, n in sorted(pair.by_kind().items())) or "-"
        table.add_row(*(cell(v) for v in (pair.other, report.keys.get(pair.other, 0), len(pair.divergences),
                                          kinds, pair.ranges_compared)))
    console.print(table)
    for pair in report.pairs:
        for d in pair.divergences[:report.sample_size]:
            newer = f" (newer: {d.newer})" if d.newer else ""
            console.print(escape(printable(f"  {d.kind.value:16} {d.key_id}  {d.reference} vs {d.other}{newer}")),
                          highlight=False)
    for breach in report.breaches:
        console.print(f"[red]threshold breached:[/] {escape(printable(breach))}")


def register(app: typer.Typer) -> None:
    """Add ``verify`` and ``repair``."""

    @app.command()
    def verify(config: Path = ConfigOption,
               dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset."),
               replicas: Optional[str] = typer.Option(None, help="Comma-separated replicas to compare; the "
                                                      "first is the reference (default: primary, then replicas)."),
               output: Output = FormatOpt, namespace: str = NamespaceOpt,
               alert: bool = typer.Option(True, help="Call the configured alert hook on a breach."),
               metrics_file: Optional[Path] = typer.Option(
                   None, "--metrics-file", help="Also write the result as Prometheus text to this file (for "
                   "node_exporter's textfile collector: divergent keys per replica, breach, run time)."),
               executor: Optional[str] = ExecutorOpt, workers: Optional[int] = WorkersOpt,
               scheduler: Optional[str] = SchedulerOpt) -> None:
        """Compare replicas by range digests; exit 1 when a divergence threshold is breached.

        Reports keys missing, extra, with different content, stale versions (and which side is
        newer) and tombstone mismatches — keys and versions only, never field values. Every
        replica is listed at once, in ranges (DynamoDB scan segments, GCS name ranges): by
        threads here, or as one digest unit per range on worker processes or a Dask cluster
        (--executor processes|dask). A range that cannot be listed fails the verify.
        """
        from mcrepl.orchestrator.verify import verify_dataset
        from mcrepl.policies.router import router_for
        cfg = with_executor(load(config), executor, workers, scheduler)
        reports = []
        with cli_errors(), _progress(output is Output.text) as bar, _digest_units(cfg) as units:
            router = router_for(cfg)
            for name in check_dataset(cfg, dataset):
                task = bar.add_task(f"listing {name}", total=None)
                reports.append(verify_dataset(cfg, name, _reference_first(cfg, name, _replicas(replicas)),
                                              local_endpoints=local_endpoints(cfg), namespace=namespace,
                                              alert=alert, progress=_advance_task(bar, task), router=router,
                                              listing=units(name, namespace)))
                bar.remove_task(task)
        if metrics_file is not None:
            from mcrepl.orchestrator.observability.metrics import VerifyMetrics
            exported = VerifyMetrics()
            for r in reports:
                exported.observe(r)
            exported.write(str(metrics_file))
        if output is Output.json:
            console.print_json(json.dumps([r.to_dict() for r in reports]))
        else:
            for r in reports:
                _print_report(r)
        if any(r.breaches for r in reports):
            raise typer.Exit(EXIT_FOUND)

    @app.command()
    def repair(config: Path = ConfigOption,
               dataset: str = typer.Option(..., "--dataset", "-d", help="The dataset to repair."),
               dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; write nothing."),
               output: Output = FormatOpt, namespace: str = NamespaceOpt,
               executor: Optional[str] = ExecutorOpt, workers: Optional[int] = WorkersOpt,
               scheduler: Optional[str] = SchedulerOpt) -> None:
        """Bring every replica to the primary's resolved state, then compare again; exit 1 if still divergent.

        Resolution follows the sync engine: the primary is the authority for what it holds, concurrent
        versions go to the dataset's resolver (logged as conflicts), deletes are never resurrected, and a
        record the residency policy keeps out of a replica is retracted there, never written. Repairs
        are written through the sync log and its lanes (conditional, policy-routed, audited), so
        re-running after success plans nothing.
        """
        from mcrepl.orchestrator.state import StateStore
        from mcrepl.orchestrator.sync import SyncEngine
        from mcrepl.policies.router import router_for

        from .sync_cmd import state_path
        cfg = with_executor(load(config), executor, workers, scheduler)
        check_dataset(cfg, dataset)
        with cli_errors():
            engine = SyncEngine(cfg, StateStore(state_path(cfg)), local_endpoints=local_endpoints(cfg),
                                namespace=namespace, router=router_for(cfg))
            try:
                plan, verdict = engine.repair(dataset, dry_run=dry_run)
            finally:
                engine.close()
        if output is Output.json:
            console.print_json(json.dumps({"plan": plan.to_dict(), "dry_run": dry_run,
                                           "converged": verdict.converged if not dry_run else None,
                                           "remaining": verdict.remaining}))
        else:
            _print_plan(dataset, plan, verdict, dry_run)
        if not dry_run and not verdict.converged:
            raise typer.Exit(EXIT_FOUND)


def _print_plan(dataset: str, plan, verdict, dry_run: bool) -> None:  # type: ignore[no-untyped-def]
    if not plan.writes:
        status = "converged" if verdict.converged else f"{verdict.remaining} keys still differ"
        console.print(f"{dataset}: nothing to repair ({status}; {plan.in_flight} differences in flight)")
        return
    table = make_table(("key", "write", "to", "retract from", "reason"))
    for w in plan.writes[:200]:
        table.add_row(cell(w.record.key.id), cell("tombstone" if w.record.tombstone else "record"),
                      cell(", ".join(w.writes) or "-"), cell(", ".join(w.retract) or "-"), cell(w.reason))
    console.print(table)
    if len(plan.writes) > 200:
        console.print(f"… and {len(plan.writes) - 200} more")
    if dry_run:
        console.print(f"[yellow]dry run:[/] {len(plan.writes)} keys would be repaired, nothing written")
    elif verdict.converged:
        console.print(f"[green]{dataset}: {verdict.repaired} keys repaired; compared again: converged[/]")
    else:
        console.print(f"[red]{dataset}: {verdict.repaired} keys repaired; {verdict.remaining} still differ[/] "
                      f"({verdict.detail})")
