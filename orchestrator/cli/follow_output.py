"""``mcrepl sync --follow``: run the followers until stopped, then say what each lane did.

The table printed at exit has each lane's counts and whether it *drained* — applied
everything captured before the stop (the same test as a pass's "caught up"). Exit 0 when
every lane drained, 3 when one did not (its store unreachable, or the drain timeout
passed): every checkpoint is saved either way and the next run resumes from it.
:func:`heartbeat_cells` renders the heartbeat lag and RPO estimate that ``status`` and
``failover status`` show (:mod:`mcrepl.orchestrator.sync.rpo`).
"""

from __future__ import annotations

import json
from typing import Any

import typer

from .common import EXIT_STORE, cli_errors, console, err_console
from .output import cell, make_table


def run_follow(engine: Any, names: list[str], output: str) -> None:
    """Follow ``names`` until SIGINT/SIGTERM; print the report; exit 0 (drained) or 3."""
    from mcrepl.orchestrator.sync.follow_runner import Follower
    err_console.print(f"following {', '.join(names)} (SIGINT/SIGTERM: drain and stop)", highlight=False)
    with cli_errors():
        report = Follower(engine, names).run()
    if output == "json":
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print(report)
    raise typer.Exit(0 if report.drained else EXIT_STORE)


def _print(report: Any) -> None:
    console.print(lanes_table(report.datasets.values(), "drained", "sync --follow (stopped)"))


def lanes_table(datasets: Any, verdict: str, title: str) -> Any:
    """One row per lane: its counts and ``verdict`` ("caught up", "drained"): yes, or no and why."""
    table = make_table(("dataset", "replica", "captured", "applied", "replayed", "stale", "quarantined",
                        "withheld", "conflicts", "errors", verdict), title=title)
    for ds in datasets:
        for lane in ds.lanes.values():
            said = cell("yes", "green") if lane.caught_up else \
                cell(f"no: {lane.reason or lane.last_error or ds.capture_error or 'stopped'}", "red")
            table.add_row(cell(ds.dataset), cell(lane.replica), *(cell(n) for n in (
                ds.captured, lane.applied, lane.replayed, lane.stale, lane.quarantined, lane.withheld,
                lane.conflicts, lane.errors)), said)
    return table


def heartbeat_cells(hb: dict[str, Any]) -> tuple[Any, Any]:
    """The heartbeat lag percentiles and the RPO estimate against the objective (see sync/rpo.py)."""
    if hb["lag_samples"]:
        lags = cell(f"{hb['lag_p50']:.3f} / {hb['lag_p99']:.3f} (n={hb['lag_samples']})")
    else:
        lags = cell("-" if hb["heartbeat"] == "off" else "none arrived")
    if hb["rpo_estimate"] is None:
        if hb["heartbeat"] == "off":
            return lags, cell("-")
        why = "none arrived" if hb["heartbeat"].startswith("every") else f"heartbeats {hb['heartbeat']}"
        return lags, cell(f"unknown: {why}", "red")
    objective = f" (objective {hb['lag_objective']:g})" if hb["lag_objective"] is not None else ""
    style = None if hb["objective_met"] is None else "green" if hb["objective_met"] else "red"
    return lags, cell(f"{hb['rpo_estimate']:.3f}{objective}", style)
