"""``mcrepl local up | status | down | create | seed | peek``: the emulator stack for demos and tests.

Thin commands over :mod:`mcrepl.orchestrator.localstack`, the same code the pytest
fixtures use. ``up`` leaves the emulators running in their own process groups and
records them in ``$MCREPL_LOCAL_DIR/endpoints.json`` (default ``./.mcrepl/local``);
``endpoint: local`` in a config then resolves to them.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import FrameType
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import ConfigOption, check_dataset, cli_errors, console, err_console, fail, load
from .output import cell, make_table, printable

local_app = typer.Typer(name="local", no_args_is_help=True,
                        help="Run the local emulator stack (DynamoDB, Cosmos DB, Cloud Storage).")
FormatOpt = typer.Option("table", "--format", "-f", help="table or json.")


def register(app: typer.Typer) -> None:
    """Add the ``local`` command group to ``app``."""
    app.add_typer(local_app, name="local")


def _fail(exc: Exception, code: int = 1) -> typer.Exit:
    from rich.text import Text
    from .output import printable
    err_console.print(Text.assemble(("error:", "red"), " ", printable(str(exc))), soft_wrap=True)
    return typer.Exit(code)


def _check_format(output: str) -> None:
    if output not in ("table", "json"):
        fail(f"--format {output!r} is not supported (fix: use table or json)")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _endpoint_table(rows: list[tuple[str, str, str, str]], title: str) -> Table:
    table = make_table(("service", "state", "endpoint", "pid"), title=title)
    for name, state, endpoint, pid in rows:
        table.add_row(cell(name), cell(state, "green" if state == "up" else "red"), cell(endpoint), cell(pid))
    return table


@local_app.command("up")
def up_command(
    services: str | None = typer.Option(
        None, "--services", help="Comma-separated: dynamodb,cosmos,gcs,dynamodb-local "
                                 "(default: dynamodb,cosmos,gcs)."),
) -> None:
    """Start the emulators detached on free 127.0.0.1 ports and wait until each answers.

    Services already running are left untouched, data and all. A service whose process
    died is started again on its own, and the command says what data that restart lost
    (DynamoDB and Cosmos DB emulators keep data in memory only). Interrupting (Ctrl-C) or a
    service failing to start stops everything this command started.
    """
    from mcrepl.orchestrator.localstack import (
        LocalStackError,
        local_dir,
        parse_services,
        status,
        up,
    )

    try:
        names = parse_services(services)
    except LocalStackError as exc:
        raise _fail(exc, 2) from None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with console.status(f"starting {', '.join(names)} …"):
            result = up(names)
    except LocalStackError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: stopped every service this command had started")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    pids = {s.name: str(s.pid) for s in status() or []}
    rows = [(name, "up", url, pids.get(name, "")) for name, url in result.endpoints.items()]
    changed = result.started or result.restarted
    console.print(_endpoint_table(rows, "local stack" if changed else "local stack already running"))
    for name, lost in result.restarted.items():
        what = f"its data is gone: {lost}" if lost else "its data was on disk and is kept"
        err_console.print(f"restarted {name}, which had stopped; {what}", highlight=False, soft_wrap=True)
    if result.restarted and result.kept:
        err_console.print(f"left running untouched: {', '.join(result.kept)}", highlight=False)
    console.print(f"state and logs: {local_dir()}   stop with: mcrepl local down", highlight=False)


@local_app.command("status")
def status_command(output: str = FormatOpt) -> None:
    """Show each service of the local stack as up or down; exit 1 if any is down."""
    from mcrepl.orchestrator.localstack import status

    _check_format(output)
    current = status()
    if not current:
        if output == "json":
            typer.echo("[]")
        err_console.print("the local stack is not running (start it with: mcrepl local up)")
        raise typer.Exit(1)
    if output == "json":
        typer.echo(json.dumps([{"service": s.name, "state": "up" if s.up else "down", "endpoint": s.endpoint,
                                "pid": s.pid, "log": s.log_file} for s in current], indent=2))
    else:
        rows = [(s.name, "up" if s.up else "down", s.endpoint, str(s.pid)) for s in current]
        console.print(_endpoint_table(rows, "local stack"))
    if not all(s.up for s in current):
        down_logs = ", ".join(s.log_file for s in current if not s.up)
        err_console.print(f"some services are down; see {down_logs}; restart them with: mcrepl local up "
                          "(healthy services are left running)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@local_app.command("down")
def down_command() -> None:
    """Stop every service of the local stack (SIGTERM, then SIGKILL); safe to repeat."""
    from mcrepl.orchestrator.localstack import down

    stopped = down()
    console.print(f"stopped {', '.join(stopped)}" if stopped else "the local stack was not running")


@local_app.command("create")
def create_command(
    config: Path = ConfigOption,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset (default: all)."),
) -> None:
    """Create the table, container and bucket of every location of each dataset, empty.

    For your own data: create the places, load them with your own tools, then sync. Only
    local-stack locations are created; creating what exists is a no-op.
    """
    from mcrepl.orchestrator.localstack.datasets import create_resources

    cfg = load(config)
    names = check_dataset(cfg, dataset)
    with cli_errors():
        create_resources(cfg, names, on_created=lambda t: console.print(
            f"ready: {t.dataset} at {t.replica} ({t.resource})", highlight=False))


@local_app.command("seed")
def seed_command(
    config: Optional[Path] = typer.Argument(None, dir_okay=False,
                                            help="Path of mcrepl.yaml (or give it with --config)."),
    config_option: Path = ConfigOption,
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset to seed."),
    count: int = typer.Option(100, "--count", "-n", min=1, help="How many records to write."),
    seed: int = typer.Option(0, "--seed", help="Seed for the generated values."),
) -> None:
    """Write COUNT sample records (~1 KB each) natively to the dataset's primary."""
    from mcrepl.orchestrator.localstack.datasets import dataset_targets, seed_primary
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    cfg = load(config or config_option)
    with cli_errors():
        dataset_targets(cfg, dataset)  # unknown dataset or stack not running: fail before the bar
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console) as progress:
            task = progress.add_task(f"seeding {dataset}", total=count)
            target = seed_primary(cfg, dataset, count, seed,
                                  on_progress=lambda n: progress.advance(task, n))
    console.print(f"wrote {count} records to {target.replica} ({target.resource})")


@local_app.command("peek")
def peek_command(
    config: Optional[Path] = typer.Argument(None, dir_okay=False,
                                            help="Path of mcrepl.yaml (or give it with --config)."),
    config_option: Path = ConfigOption,
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset to read back."),
    limit: int = typer.Option(5, "--limit", min=0, help="Records to show per location."),
    output: str = FormatOpt,
) -> None:
    """Read a few records back from every location (primary and replicas) of DATASET."""
    from dataclasses import asdict

    from mcrepl.orchestrator.localstack.datasets import peek_locations

    _check_format(output)
    cfg = load(config or config_option, checked=False)
    with cli_errors():
        peeks = peek_locations(cfg, dataset, limit)
    if output == "json":
        typer.echo(json.dumps([asdict(p) for p in peeks], indent=2))
        return
    for peek in peeks:
        title = f"{peek.replica} ({peek.resource})"
        if peek.missing:
            console.print(f"[bold]{title}[/bold]: [yellow]not created yet[/yellow] "
                          "(nothing has been synced to it)", highlight=False)
            continue
        if peek.error:
            console.print(f"[bold]{title}[/bold]: [red]unreadable[/red] — {escape(printable(peek.error))}",
                          highlight=False)
            continue
        table = make_table(("key", "version", "hash", "read"), title=f"{title}: {peek.count} records")
        for row in peek.rows:
            version = row.version or "native"
            if row.tombstone:
                version += " (tombstone)"
            table.add_row(cell(row.key), cell(version), cell(row.content_hash[:12]),
                          cell("ok" if row.readable else "missing"))
        console.print(table)
    summary = make_table(("location", "records"), title=f"{dataset}: records per location")
    for peek in peeks:
        shown = "not created" if peek.missing else "error" if peek.count is None else str(peek.count)
        summary.add_row(cell(peek.replica), cell(shown))
    console.print(summary)
