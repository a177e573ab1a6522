"""``mcrepl failover status | promote | failback | fence``: move a dataset's primary on a real topology.

Thin commands over :mod:`mcrepl.failover.operations` — the code the drills run — so a
drill rehearses exactly what on-call runs (runbook: docs/failover.md). ``promote``,
``failback`` and ``fence`` hold the state directory's failover lock.

Exit codes: 0 done (warnings, such as a fence still pending at an unreachable location,
are printed); 1 ``fence`` left a location pending; 2 refused or bad input (a target
behind the lag bound, changes it could not take, not confirmed); 3 a store failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from .common import EXIT_FOUND, EXIT_INPUT, ConfigOption, check_dataset, cli_errors, console, fail, load, \
    local_endpoints
from .follow_output import heartbeat_cells
from .output import cell, json_ready, make_table

DatasetOpt = typer.Option(..., "--dataset", "-d", help="The dataset whose primary moves.")
FormatOpt = typer.Option("text", "--format", "-f", help="text or json.")
DryRunOpt = typer.Option(False, "--dry-run", help="Say what would be done; change nothing.")
YesOpt = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (scripts).")


def register(app: typer.Typer) -> None:
    """Add the ``failover`` command group."""
    failover = typer.Typer(help="Move a dataset's primary under a new fencing epoch, fence stale writers, "
                                "fail back (runbook: docs/failover.md).", no_args_is_help=True)
    app.add_typer(failover, name="failover")

    @failover.command("status")
    def status(config: Path = ConfigOption,
               dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset."),
               output: str = FormatOpt) -> None:
        """Primary, epoch, each replica's lag and RPO estimate, readiness, pending fences (state file only)."""
        from mcrepl.failover.status import failover_status
        cfg = load(config, checked=False)
        check_dataset(cfg, dataset)
        with cli_errors():
            state = _state(cfg)
            rows = failover_status(cfg, state, dataset)
        if output == "json":
            typer.echo(json.dumps(json_ready(rows), indent=2))
            return
        for row in rows:
            _print_status(row)

    @failover.command("promote")
    def promote(location: str = typer.Argument(..., help="The location to make primary, e.g. dynamodb:eu-central-1."),
                config: Path = ConfigOption, dataset: str = DatasetOpt,
                force: bool = typer.Option(False, "--force", help="Promote even past the lag bound or with logged "
                                           "changes the target could not take (they are delivered later)."),
                fence: bool = typer.Option(True, "--fence/--no-fence", help="Record the end of the old epoch and "
                                           "publish the new one to the stores' epoch records. Keep it on."),
                dry_run: bool = DryRunOpt, yes: bool = YesOpt, output: str = FormatOpt) -> None:
        """Promote LOCATION to primary: drain, switch the epoch, fence old writers, re-point DNS, record RPO."""
        from mcrepl.failover import operations
        cfg = load(config)
        check_dataset(cfg, dataset)
        _confirm(yes or dry_run, f"Promote {location} to primary of {dataset!r}?")
        report = _run(cfg, f"failover promote {location} -d {dataset}", dry_run, lambda engine: operations.promote(
            engine, dataset, location, force=force, fence=fence, dry_run=dry_run))
        _print_promote(report, output)

    @failover.command("failback")
    def failback(config: Path = ConfigOption, dataset: str = DatasetOpt,
                 to: Optional[str] = typer.Option(None, "--to", help="Where to move the primary back to "
                                                  "(default: the config's primary:)."),
                 force: bool = typer.Option(False, "--force", help="Switch back even past the lag bound."),
                 dry_run: bool = DryRunOpt, yes: bool = YesOpt, output: str = FormatOpt) -> None:
        """Reconcile the original primary's unreplicated writes, catch it up, and promote it back."""
        from mcrepl.failover import operations
        cfg = load(config)
        check_dataset(cfg, dataset)
        where = to or cfg.datasets[dataset].primary.at
        _confirm(yes or dry_run, f"Fail {dataset!r} back to {where}?")
        report = _run(cfg, f"failover failback -d {dataset}", dry_run, lambda engine: operations.failback(
            engine, dataset, to=to, force=force, dry_run=dry_run))
        if output == "json":
            typer.echo(json.dumps(json_ready(report.to_dict()), indent=2, default=str))
            return
        if report.already:
            console.print(f"{dataset}: {where} is already the primary", highlight=False)
        elif not dry_run:
            rec = report.reconciled
            console.print(f"{dataset}: reconciled {where}: {rec.get('recovered', 0)} unreplicated writes recovered, "
                          f"{rec.get('conflicts', 0)} conflicts settled; caught up: "
                          f"{'yes' if report.catch_up.get('caught_up') else 'no — ' + str(report.catch_up.get('reason'))}",
                          highlight=False)
        if report.switch is not None:
            _print_promote(report.switch, "text")

    @failover.command("fence")
    def fence(location: Optional[str] = typer.Argument(None, help="Only this location (default: every location)."),
              config: Path = ConfigOption, dataset: str = DatasetOpt, dry_run: bool = DryRunOpt,
              output: str = FormatOpt) -> None:
        """Publish the current epoch to the epoch records, so the stores refuse writers of older epochs.

        Run it with no LOCATION to arm fencing before applications use mcrepl.client, and
        with the lost location once it is reachable again after a promotion.
        """
        from mcrepl.failover.fencing import publish
        cfg = load(config)
        check_dataset(cfg, dataset)
        with cli_errors():
            targets = [t for t in cfg.targets(dataset, local_endpoints(cfg)) if location in (None, t.replica)]
        if not targets:
            fail(f"{location} is not a location of {dataset!r}; use one of "
                 f"{', '.join(r.at for r in cfg.datasets[dataset].locations)}")

        def run(engine: Any) -> Any:
            engine.pointer(dataset)
            return publish(engine.state, targets, dataset, dry_run=dry_run)
        outcomes = _run(cfg, f"failover fence -d {dataset}", dry_run, run)
        if output == "json":
            typer.echo(json.dumps(json_ready([o.to_dict() for o in outcomes]), indent=2))
        else:
            for o in outcomes:
                console.print(f"{dataset} {o.location}: {o.status} (epoch {o.epoch})"
                              + (f" — {o.error}" if o.error else ""), highlight=False)
        if any(o.status == "pending" for o in outcomes):
            raise typer.Exit(EXIT_FOUND)


def _state(cfg: Any) -> Any:
    from mcrepl.orchestrator.state import StateStore

    from .sync_cmd import state_path
    return StateStore(state_path(cfg))


def _confirm(skip: bool, question: str) -> None:
    if not skip and not typer.confirm(question):
        fail("not confirmed (pass --yes in scripts)", EXIT_INPUT)


def _run(cfg: Any, command: str, dry_run: bool, action: Any) -> Any:
    """Run ``action(engine)`` under the failover lock (not for a dry run); refusals exit 2."""
    import contextlib

    from mcrepl.orchestrator.runlock import failover_lock
    from mcrepl.orchestrator.sync import PromotionRefused, SyncEngine
    from mcrepl.policies.router import router_for
    with cli_errors():
        lock = contextlib.nullcontext() if dry_run else failover_lock(cfg.state_dir, command)
        with lock:
            engine = SyncEngine(cfg, _state(cfg), local_endpoints=local_endpoints(cfg), router=router_for(cfg))
            try:
                return action(engine)
            except PromotionRefused as exc:
                fail(str(exc), EXIT_INPUT)
            finally:
                engine.close()


def _print_promote(report: Any, output: str) -> None:
    if output == "json":
        typer.echo(json.dumps(json_ready(report.to_dict()), indent=2, default=str))
        return
    ds, loc = report.dataset, report.location
    if report.dry_run:
        console.print(f"{ds}: would promote {loc} (epoch {report.epoch_before} → {report.epoch}); lag "
                      f"{report.lag['changes']} changes / {report.lag['seconds']}s to drain first", highlight=False)
    elif report.already:
        console.print(f"{loc} is already the primary of {ds} (epoch {report.epoch}): promotion complete; "
                      "fencing and routing re-applied", highlight=False)
    else:
        p = report.promotion or {}
        console.print(f"{ds}: {loc} is primary (epoch {report.epoch}, was {report.previous}); "
                      f"{p.get('drained', 0)} logged changes drained into it, {p.get('undrained', 0)} still to deliver",
                      highlight=False)
    rpo = report.rpo
    if rpo.get("count"):
        console.print(f"  RPO: {rpo['count']} captured changes not applied to {loc} yet (delivered when it can take "
                      "them)", highlight=False)
        for key in rpo.get("keys", [])[:20]:
            console.print(f"  undelivered: {key}", highlight=False)
    for f in report.fences:
        console.print(f"  fence {f['location']}: {f['status']} (epoch {f['epoch']})"
                      + (f" — run 'mcrepl failover fence {f['location']} -d {ds}' once it is reachable"
                         if f["status"] == "pending" else ""), highlight=False)
    dns = report.dns
    console.print(f"  write routing: {dns.get('status')}"
                  + (f" {dns.get('fqdn')}" if dns.get("fqdn") else "")
                  + (f" — {dns.get('detail')}" if dns.get("detail") else ""), highlight=False)


def _print_status(row: dict[str, Any]) -> None:
    console.print(f"{row['dataset']}: primary {row['primary']} (epoch {row['epoch']}; configured "
                  f"{row['configured_primary']}); log head {row['log_head']}, last capture "
                  f"{_ago(row['last_capture_age_seconds'])}", highlight=False)
    table = make_table(["replica", "lag (changes)", "lag (s)", "RPO: to drain", "RPO: uncaptured (s)",
                        "heartbeat lag p50/p99 (s)", "RPO estimate (s)", "breaker", "ready"])
    for r in row["replicas"]:
        table.add_row(cell(r["location"]), cell(r["lag_changes"]), cell(r["lag_seconds"]),
                      cell(r["rpo_estimate"]["to_drain"]), cell(r["rpo_estimate"]["uncaptured_seconds"]),
                      *heartbeat_cells(r["heartbeat_lag"]),
                      cell(r["breaker"]), cell("yes" if r["ready"] else "no: " + "; ".join(r["blockers"]),
                                               None if r["ready"] else "yellow"))
    console.print(table)
    if row["fencing_pending"]:
        console.print(f"  fencing pending at: {', '.join(row['fencing_pending'])} (run 'mcrepl failover fence -d "
                      f"{row['dataset']}')", highlight=False)
    verify = row["last_verify"]
    console.print("  last verify: " + ("never" if verify is None else
                                       f"{'converged' if verify['converged'] else 'DIVERGENT'} "
                                       f"({verify['divergent']} keys), {_ago(verify['age_seconds'])}"),
                  highlight=False)
    if row["dns"]:
        console.print(f"  write record: {row['dns']['fqdn']} ({row['dns']['routing']})", highlight=False)


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f}s ago"
