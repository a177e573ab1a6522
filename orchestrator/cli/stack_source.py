"""Where ``mcrepl config from-stack`` reads a stack's outputs: the Automation API, or a saved file.

With ``--stack NAME`` the outputs come from the Pulumi Automation API
(``pulumi.automation.select_stack(...).outputs()``, the stack of the program in
``--work-dir``, default ``pulumi/``), which drives the ``pulumi`` CLI: it needs the CLI on
``PATH`` and the backend the project is logged in to. Without the CLI the command says so
and names the fallback: ``pulumi stack output --json --stack NAME > outputs.json`` wherever
the CLI is, then ``--outputs outputs.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping

from mcrepl.adapters.base import ConfigError


def outputs_from_file(path: Path) -> dict[str, Any]:
    """Outputs saved with ``pulumi stack output --json``."""
    try:
        outputs = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read stack outputs ({exc.__class__.__name__})", file=str(path),
                          fix="save them with 'pulumi stack output --json > FILE'") from None
    if not isinstance(outputs, dict):
        raise ConfigError("stack outputs must be a JSON object", file=str(path),
                          fix="save them with 'pulumi stack output --json > FILE'")
    return outputs


def plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """An Automation API ``OutputMap`` (name → ``OutputValue``) as plain values."""
    return {name: getattr(value, "value", value) for name, value in outputs.items()}


def outputs_from_stack(stack: str, work_dir: Path) -> dict[str, Any]:
    """The outputs of ``stack`` of the Pulumi project in ``work_dir``, through the Automation API."""
    fallback = (f"run 'pulumi stack output --json --stack {stack} > outputs.json' in {work_dir} "
                "where the Pulumi CLI is installed, then pass --outputs outputs.json")
    if shutil.which("pulumi") is None:
        raise ConfigError("the Pulumi CLI is not on PATH, and the Automation API drives it", path="--stack",
                          fix=fallback)
    if not (work_dir / "Pulumi.yaml").is_file():
        raise ConfigError(f"{work_dir} holds no Pulumi project (Pulumi.yaml)", path="--work-dir",
                          fix="pass --work-dir with the folder of the mcrepl Pulumi program (pulumi/)")
    from pulumi import automation as auto

    try:
        selected = auto.select_stack(stack_name=stack, work_dir=str(work_dir))
        return plain_outputs(selected.outputs())
    except auto.CommandError as exc:
        first = str(exc).strip().splitlines()[:1] or ["failed"]
        raise ConfigError(f"pulumi could not read stack {stack!r}: {first[0]}", path="--stack",
                          fix=fallback) from None


__all__ = ["outputs_from_file", "outputs_from_stack", "plain_outputs"]
