"""``mcrepl drill run|list|report``: failover drills on the local stack (see docs/failover.md)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

import typer

from .common import EXIT_FOUND, EXIT_INPUT, cli_errors, console, fail

DEFAULT_DRILLS = Path("examples/drills")


def register(app: typer.Typer) -> None:
    """Add the ``drill`` command group to ``app``."""
    drill = typer.Typer(help="Failover drills: lose a region or a cloud, promote, heal, fail back, prove convergence.",
                        no_args_is_help=True)
    app.add_typer(drill, name="drill")

    @drill.command("run")
    def run(file: Path = typer.Argument(..., help="A drill YAML (see examples/drills/)."),
            report_dir: Optional[Path] = typer.Option(None, "--report-dir",
                                                      help="Where report.json/report.html go "
                                                           "(default: .mcrepl/drills/NAME-TIME)."),
            fencing: Optional[bool] = typer.Option(None, "--fencing/--no-fencing",
                                                   help="Override the file's 'fencing' (--no-fencing shows "
                                                        "what split-brain does)."),
            verbose: bool = typer.Option(False, "--verbose", "-v",
                                         help="Show the sync engine's log (failed lanes are expected during faults).")
            ) -> None:
        """Run a drill; exit 1 when a threshold or the steady-state hypothesis fails."""
        if not verbose:
            # faults make lanes and captures fail on purpose; the report accounts for them
            for name in ("mcrepl.sync", "mcrepl.failover", "mcrepl.retry"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        from mcrepl.failover.endpoints import drill_endpoints
        from mcrepl.failover.report import summary
        from mcrepl.failover.runner import run_drill
        from mcrepl.failover.spec import load_drill

        from mcrepl.failover.spec import topology_findings

        with cli_errors():
            spec = load_drill(file, {"fencing": fencing} if fencing is not None else None)
            refused = topology_findings(spec, file)
        if refused:
            fail("\n".join(f.line() for f in refused), EXIT_INPUT)
        with cli_errors():
            out_dir = report_dir or Path(".mcrepl/drills") / f"{file.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
            console.print(f"drill [bold]{spec.title}[/] — running (fault_mode={spec.fault_mode}, "
                          f"fencing={spec.fencing})", highlight=False)
            with drill_endpoints(spec) as endpoints:
                outcome = run_drill(spec, endpoints, out_dir)
        console.print(summary(outcome.report), highlight=False, soft_wrap=True, markup=False)
        console.print(f"report: {outcome.json_path}\nhtml report: {outcome.html_path.resolve()}", highlight=False)
        if not outcome.passed:
            raise typer.Exit(EXIT_FOUND)

    @drill.command("list")
    def list_drills(directory: Path = typer.Argument(DEFAULT_DRILLS, help="A folder of drill files."),
                    output: str = typer.Option("table", "--format", "-f", help="table or json.")) -> None:
        """List the drills in DIRECTORY with their fault mode, fencing and topology."""
        from mcrepl.failover.spec import load_drill

        from .output import cell, make_table

        if output not in ("table", "json"):
            fail(f"--format {output!r} is not supported (fix: use table or json)")
        files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
        if not files:
            fail(f"no drill files (*.yaml) in {directory}")
        with cli_errors():
            specs = [(path, load_drill(path)) for path in files]
        rows: list[dict[str, Any]] = [{"file": str(path), "title": spec.title, "fault_mode": spec.fault_mode, "fencing": spec.fencing,
                 "zero_loss": spec.zero_loss, "primary": spec.topology.primary,
                 "replicas": list(spec.topology.replicas)} for path, spec in specs]
        if output == "json":
            typer.echo(json.dumps(rows, indent=2))
            return
        table = make_table(("file", "title", "fault mode", "fencing", "loss", "topology"), title="drills")
        for r in rows:
            table.add_row(cell(r["file"]), cell(r["title"]), cell(r["fault_mode"]), cell("on" if r["fencing"] else "off"),
                          cell("zero loss" if r["zero_loss"] else "bounded RPO"),
                          cell(f"{r['primary']} → {', '.join(r['replicas'])}"))
        console.print(table)

    @drill.command("report")
    def report(directory: Path = typer.Argument(..., help="A drill's report directory."),
               output: str = typer.Option("text", "--format", "-f", help="text or json (the whole report).")
               ) -> None:
        """Print the summary of a finished drill; exit 1 if it failed."""
        from mcrepl.failover.report import load_report, summary

        if output not in ("text", "json"):
            fail(f"--format {output!r} is not supported (fix: use text or json)")
        if not (directory / "report.json").exists():
            fail(f"{directory} holds no report.json (pass the --report-dir of a drill run)")
        data = load_report(directory)
        if output == "json":
            typer.echo(json.dumps(data, indent=2))
            if not data["passed"]:
                raise typer.Exit(EXIT_FOUND)
            return
        console.print(summary(data), highlight=False, soft_wrap=True, markup=False)
        console.print(f"html report: {(directory / 'report.html').resolve()}", highlight=False)
        if not data["passed"]:
            raise typer.Exit(EXIT_FOUND)
