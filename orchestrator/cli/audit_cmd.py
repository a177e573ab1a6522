"""``mcrepl audit verify`` and ``mcrepl audit show``: check and read the hash-chained audit trail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from mcrepl.orchestrator.observability.audit import AUDIT_FILENAME, AuditTrail, audit_path

from .common import EXIT_FOUND, console, fail, load
from .output import cell, make_table

StateDirOption = typer.Option(None, "--state-dir", help="State directory holding audit.jsonl "
                              "(default: the config's state_dir).")
ConfigPathOption = typer.Option(None, "--config", "-c", help="Path of mcrepl.yaml (default: $MCREPL_CONFIG "
                                "or ./mcrepl.yaml); its state_dir is resolved against the file's folder.")


def resolve_audit_path(state_dir: Path | None, config: Path | None) -> Path:
    """The trail to read: ``--state-dir`` wins; else the config's ``state_dir``.

    A relative ``state_dir`` is taken relative to the folder of the config file, so
    the command gives the same answer from any working directory.
    """
    if state_dir is not None and config is not None:
        fail("give either --state-dir or --config, not both")
    if state_dir is not None:
        return audit_path(state_dir)
    import os
    path = config or Path(os.environ.get("MCREPL_CONFIG", "mcrepl.yaml"))
    cfg = load(path, checked=False)
    base = Path(cfg.state_dir)
    return audit_path(base if base.is_absolute() else path.resolve().parent / base)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group."""
    audit = typer.Typer(no_args_is_help=True, help="Check and read the append-only audit trail.")
    app.add_typer(audit, name="audit")

    @audit.command("verify")
    def verify(state_dir: Optional[Path] = StateDirOption, config: Optional[Path] = ConfigPathOption) -> None:
        """Walk the hash chain; exit 1 naming the first entry that was edited, deleted, moved or cut.

        Set MCREPL_AUDIT_KEY to the key the trail was written with to check HMAC-signed entries.
        """
        path = resolve_audit_path(state_dir, config)
        if not path.exists():
            fail(f"no audit trail at {path} (fix: run a sync first, or point --state-dir at the folder "
                 f"holding {AUDIT_FILENAME})")
        verdict = AuditTrail(path).verify()
        if verdict.ok:
            head = AuditTrail(path).head()
            anchor = f"; head seq {head['seq']} hash {head['hash'][:16]}…" if head else ""
            console.print(f"[green]ok[/]: {path}: {verdict.reason}{anchor}", highlight=False, soft_wrap=True)
            return
        console.print(f"[red]tampered[/]: {path}: first bad entry seq {verdict.first_bad_seq} — "
                      f"{verdict.reason} ({verdict.entries} entries before it check out)", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(EXIT_FOUND)

    @audit.command("show")
    def show(tail: int = typer.Option(20, "--tail", "-n", min=1, help="How many of the last entries."),
             state_dir: Optional[Path] = StateDirOption, config: Optional[Path] = ConfigPathOption,
             as_json: bool = typer.Option(False, "--json", help="Print entries as JSON lines."),
             output: str = typer.Option("table", "--format", "-f", help="table, json (one array) or jsonl "
                                        "(one entry a line, as --json).")) -> None:
        """Print the last entries of the trail (payloads were redacted when written)."""
        if output not in ("table", "json", "jsonl"):
            fail(f"--format {output!r} is not supported (fix: use table, json or jsonl)")
        path = resolve_audit_path(state_dir, config)
        if not path.exists():
            fail(f"no audit trail at {path} (fix: run a sync first, or point --state-dir at it)")
        entries = AuditTrail(path).tail(tail)
        if as_json or output == "jsonl":
            for entry in entries:
                typer.echo(json.dumps(entry, sort_keys=True))
            return
        if output == "json":
            typer.echo(json.dumps(entries, indent=2, sort_keys=True))
            return
        table = make_table(("seq", "time (UTC)", "kind", "payload"), title=str(path))
        for entry in entries:
            table.add_row(cell(entry.get("seq")), cell(entry.get("ts")), cell(entry.get("kind")),
                          cell(json.dumps(entry.get("payload") or {}, sort_keys=True, default=str)))
        console.print(table)
