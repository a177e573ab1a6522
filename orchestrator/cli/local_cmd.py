"""``mcrepl local up | status | down | seed | peek``: the emulator stack for demos and tests.

Thin commands over :mod:`mcrepl.orchestrator.localstack`, the same code the pytest
fixtures use. ``up`` leaves the emulators running in their own process groups and
records them in ``$MCREPL_LOCAL_DIR/endpoints.json`` (default ``./.mcrepl/local``);
``endpoint: local`` in a config then resolves to them.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import ConfigOption, cli_errors, load

local_app = typer.Typer(name="local", no_args_is_help=True,
                        help="Run the local emulator stack (DynamoDB, Cosmos DB, Cloud Storage).")
console = Console()
err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the ``local`` command group to ``app``."""
    app.add_typer(local_app, name="local")


def _fail(exc: Exception, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _endpoint_table(rows: list[tuple[str, str, str, str]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("service", "state", "endpoint", "pid"):
        table.add_column(column)
    for name, state, endpoint, pid in rows:
        colour = "green" if state == "up" else "red"
        table.add_row(name, f"[{colour}]{state}[/{colour}]", endpoint, pid)
    return table


@local_app.command("up")
def up_command(
    services: str | None = typer.Option(
        None, "--services", help="Comma-separated: dynamodb,cosmos,gcs,dynamodb-local "
                                 "(default: dynamodb,cosmos,gcs)."),
) -> None:
    """Start the emulators detached on free 127.0.0.1 ports and wait until each answers.

    Interrupting (Ctrl-C) or a service failing to start stops everything this command
    started. If the stack is already running, says so and changes nothing.
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
            endpoints, started = up(names)
    except LocalStackError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: stopped every service this command had started")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    pids = {s.name: str(s.pid) for s in status() or []}
    rows = [(name, "up", url, pids.get(name, "")) for name, url in endpoints.items()]
    title = "local stack" if started else "local stack already running"
    console.print(_endpoint_table(rows, title))
    console.print(f"state and logs: {local_dir()}   stop with: mcrepl local down")


@local_app.command("status")
def status_command() -> None:
    """Show each service of the local stack as up or down; exit 1 if any is down."""
    from mcrepl.orchestrator.localstack import status

    current = status()
    if not current:
        err_console.print("the local stack is not running (start it with: mcrepl local up)")
        raise typer.Exit(1)
    rows = [(s.name, "up" if s.up else "down", s.endpoint, str(s.pid)) for s in current]
    console.print(_endpoint_table(rows, "local stack"))
    if not all(s.up for s in current):
        down_logs = ", ".join(s.log_file for s in current if not s.up)
        err_console.print(f"some services are down; see {down_logs}; restart with: "
                          "mcrepl local down && mcrepl local up")
        raise typer.Exit(1)


@local_app.command("down")
def down_command() -> None:
    """Stop every service of the local stack (SIGTERM, then SIGKILL); safe to repeat."""
    from mcrepl.orchestrator.localstack import down

    stopped = down()
    console.print(f"stopped {', '.join(stopped)}" if stopped else "the local stack was not running")


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
) -> None:
    """Read a few records back from every location (primary and replicas) of DATASET."""
    from mcrepl.orchestrator.localstack.datasets import peek_locations

    cfg = load(config or config_option)
    with cli_errors():
        peeks = peek_locations(cfg, dataset, limit)
    for peek in peeks:
        title = f"{peek.replica} ({peek.resource})"
        if peek.missing:
            console.print(f"[bold]{title}[/bold]: [yellow]not created yet[/yellow] "
                          "(nothing has been synced to it)", highlight=False)
            continue
        if peek.error:
            console.print(f"[bold]{title}[/bold]: [red]unreadable[/red] — {peek.error}",
                          highlight=False)
            continue
        table = Table(title=f"{title}: {peek.count} records", title_justify="left")
        for column in ("key", "version", "hash", "read"):
            table.add_column(column)
        for row in peek.rows:
            version = row.version or "native"
            if row.tombstone:
                version += " (tombstone)"
            table.add_row(row.key, version, row.content_hash[:12], "ok" if row.readable else "missing")
        console.print(table)
    summary = Table(title=f"{dataset}: records per location", title_justify="left")
    summary.add_column("location")
    summary.add_column("records", justify="right")
    for peek in peeks:
        shown = "not created" if peek.missing else "error" if peek.count is None else str(peek.count)
        summary.add_row(peek.replica, shown)
    console.print(summary)
