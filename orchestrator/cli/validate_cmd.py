"""``mcrepl validate CONFIG``: every check and policy rule against the config, before a byte moves.

One line per finding, ``file:path: why (fix: …) [RULE-ID]``, or ``--format json``. The
checks are :mod:`mcrepl.orchestrator.validation`'s, the same every other command runs
before it opens a connection. Exit 0: clean; 1: rule violations; 2: the config itself is
invalid or holds credentials (printed the same way).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from .common import EXIT_FOUND, EXIT_INPUT, cli_errors, err_console, fail, load


def read_stack_outputs(path: Path) -> dict[str, Any]:
    """``pulumi stack output --json`` saved to a file (exit 2 when unreadable)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{path}: cannot read stack outputs ({exc.__class__.__name__}) "
             "(fix: save them with 'pulumi stack output --json > FILE')", EXIT_INPUT)
    if not isinstance(data, dict):
        fail(f"{path}: stack outputs must be a JSON object (fix: use 'pulumi stack output --json')")
    return data


def register(app: typer.Typer) -> None:
    """Add ``validate``."""

    @app.command("validate")
    def validate(
        config: Path = typer.Argument(..., help="Path of mcrepl.yaml."),
        format: str = typer.Option("text", "--format", help="text or json."),
        stack_outputs: Optional[Path] = typer.Option(
            None, "--stack-outputs", help="JSON from 'pulumi stack output --json': also check what was provisioned."),
    ) -> None:
        """Evaluate residency, IAM and encryption rules; exit 1 on violations."""
        from mcrepl.orchestrator.validation import config_findings, credential_findings

        if format not in ("text", "json"):
            fail(f"--format {format!r} is not supported (fix: use text or json)")
        cfg = load(config, checked=False)
        credentials = credential_findings(cfg, str(config))
        if credentials:
            fail("\n".join(f.line() for f in credentials), EXIT_INPUT)
        outputs = read_stack_outputs(stack_outputs) if stack_outputs else None
        with cli_errors():
            findings = config_findings(cfg, config, outputs, str(stack_outputs) if stack_outputs else None)
        rule_findings = [f for f in findings if f.rule]
        if len(rule_findings) < len(findings):          # the policy section itself is wrong
            fail("\n".join(f.line() for f in findings), EXIT_INPUT)
        violations = [f for f in rule_findings if f.severity == "error"]
        if format == "json":
            typer.echo(json.dumps({"config": str(config), "ok": not violations,
                                   "disabled": list(cfg.policies.disabled),
                                   "violations": [{"rule_id": f.rule, "resource": f.resource, "why": f.message,
                                                   "fix": f.fix, "severity": f.severity, "file": f.file,
                                                   "path": f.path} for f in rule_findings]}, indent=2))
        else:
            for f in rule_findings:
                typer.echo(f.line())
            for rule_id in cfg.policies.disabled:
                err_console.print(f"skipped: {rule_id} (disabled in policies.disabled)", highlight=False)
            locations = sum(len(ds.locations) for ds in cfg.datasets.values())
            summary = (f"{len(violations)} violation(s)" if violations else
                       f"ok: {len(cfg.datasets)} dataset(s), {locations} location(s), no violations")
            err_console.print(summary, highlight=False)
        raise typer.Exit(EXIT_FOUND if violations else 0)
