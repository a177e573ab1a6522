"""``mcrepl doctor``: readiness of every location of every dataset, each check with evidence and fix.

Exit codes: 0 no check failed (WARN and SKIP are printed), 1 at least one FAIL, 2 bad
input (the config is refused exactly as 'mcrepl validate' refuses it).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import EXIT_FOUND, ConfigOption, cli_errors, console, load, local_endpoints
from .output import cell, json_ready, make_table

_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


def register(app: typer.Typer) -> None:
    """Add ``mcrepl doctor``."""

    @app.command("doctor")
    def doctor(config: Path = ConfigOption,
               output: str = typer.Option("table", "--format", "-f", help="table or json.")) -> None:
        """Is this topology ready? Credentials, permissions, streams, keys, epoch records, clocks, state, lanes.

        Checks a store cannot answer (an emulator) are SKIP with the reason, never PASS.
        """
        from mcrepl.orchestrator.doctor import run_doctor

        from .sync_cmd import state_path
        cfg = load(config)
        with cli_errors():
            checks = run_doctor(cfg, state_path(cfg), local_endpoints=local_endpoints(cfg))
        failed = sum(c.status == "FAIL" for c in checks)
        if output == "json":
            typer.echo(json.dumps(json_ready([c.to_dict() for c in checks]), indent=2))
        else:
            table = make_table(["status", "check", "where", "evidence", "fix"])
            for c in checks:
                table.add_row(cell(c.status, _STYLE[c.status]), cell(c.check), cell(c.where), cell(c.evidence),
                              cell(c.fix or ""))
            console.print(table)
            counts = {s: sum(c.status == s for c in checks) for s in _STYLE}
            console.print(", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)
        if failed:
            raise typer.Exit(EXIT_FOUND)
