"""``mcrepl iam render | lint`` and ``mcrepl keys init | rotate``.

Thin commands over :mod:`mcrepl.policies.iam` and :mod:`mcrepl.policies.encryption`: the
documents printed are the ones the Pulumi program attaches; lint exits 1 on findings.
Key files are created with mode 0600 and key material is never printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer
import yaml

from .common import EXIT_FOUND, ConfigOption, cli_errors, console, fail, load
from .validate_cmd import read_stack_outputs

iam_app = typer.Typer(no_args_is_help=True, help="Render and lint least-privilege IAM documents.")
keys_app = typer.Typer(no_args_is_help=True, help="Create and rotate field-encryption keys.")


def register(app: typer.Typer) -> None:
    """Add the ``iam`` and ``keys`` command groups."""
    app.add_typer(iam_app, name="iam")
    app.add_typer(keys_app, name="keys")


@iam_app.command("render")
def render(config: Path = ConfigOption,
           cloud: Optional[str] = typer.Option(None, "--cloud", help="aws, azure or gcp (default: all)."),
           role: Optional[str] = typer.Option(None, "--role", help="capture, apply, verify or admin (default: all)."),
           stack_outputs: Optional[Path] = typer.Option(None, "--stack-outputs",
                                                        help="Use provisioned ARNs/names from the stack.")) -> None:
    """Print the IAM documents for every dataset location as JSON: {cloud: {role: {DATASET@LOCATION: doc}}}."""
    from mcrepl.policies.iam import ROLES, ResourceIds, render_all

    cfg = load(config, checked=False)
    if role is not None and role not in ROLES:
        fail(f"unknown role {role!r} (fix: use one of {', '.join(ROLES)})")
    outputs = read_stack_outputs(stack_outputs) if stack_outputs else None
    with cli_errors():
        docs = render_all(cfg, ResourceIds.from_config(cfg, outputs))
    if cloud is not None:
        if cloud not in ("aws", "azure", "gcp"):
            fail(f"unknown cloud {cloud!r} (fix: use aws, azure or gcp)")
        docs = {cloud: docs.get(cloud, {})}
    if role is not None:
        docs = {c: {role: per_role.get(role, {})} for c, per_role in docs.items()}
    typer.echo(json.dumps(docs, indent=2, sort_keys=True))


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text("utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        fail(f"{path}: cannot read ({exc.__class__.__name__}) (fix: pass a JSON or YAML IAM document)")


@iam_app.command("lint")
def lint_files(files: List[Path] = typer.Argument(..., help="JSON or YAML IAM documents."),
               format: str = typer.Option("text", "--format", help="text or json.")) -> None:
    """Flag wildcards, broad admin roles, account-wide scopes and Cosmos key auth; exit 1 on findings."""
    from mcrepl.policies.iam import lint

    found = []
    for path in files:
        doc = _read_document(path)
        found.extend(lint(doc if isinstance(doc, dict) else {"document": doc}, str(path)))
    if format == "json":
        typer.echo(json.dumps([v.to_dict() for v in found], indent=2))
    else:
        for v in found:
            typer.echo(v.line())
        console.print(f"{len(found)} finding(s) in {len(files)} file(s)", highlight=False)
    raise typer.Exit(EXIT_FOUND if found else 0)


def _local_key_path(cfg: Any) -> Path:
    spec = cfg.policies.encryption.keyring
    return Path(spec.path) if spec.path else Path(cfg.state_dir) / "keyring.json"


@keys_app.command("init")
def keys_init(config: Path = ConfigOption) -> None:
    """Create the local key-encryption key file (mode 0600); refuses to overwrite one."""
    from mcrepl.policies.encryption import LocalKeyring

    cfg = load(config, checked=False)
    spec = cfg.policies.encryption.keyring
    if spec.type != "local":
        fail(f"keyring type {spec.type} keeps its key in the cloud KMS; nothing to create here "
             "(fix: create the key with Pulumi or the cloud console and set policies.encryption.keyring.key_id)")
    path = _local_key_path(cfg)
    if path.exists():
        fail(f"{path} already exists (fix: use 'mcrepl keys rotate' to add a key version)")
    with cli_errors():
        ring = LocalKeyring.create(path)
    console.print(f"created {path} (mode 0600), key {ring.current()}", highlight=False)


@keys_app.command("rotate")
def keys_rotate(config: Path = ConfigOption,
                keep_data_keys: bool = typer.Option(False, "--keep-data-keys",
                                                    help="Only re-wrap; do not start new data keys.")) -> None:
    """New KEK version; re-wrap every data key under it (old data stays readable)."""
    from mcrepl.policies.encryption import open_datakeys

    cfg = load(config, checked=False)
    with cli_errors():
        report = open_datakeys(cfg).rotate(new_data_keys=not keep_data_keys)
    console.print(f"key-encryption key now {report.kek}; re-wrapped {report.rewrapped} data key(s)",
                  highlight=False)
    for dataset, kid in sorted(report.new_data_keys.items()):
        console.print(f"  {dataset}: new data key {kid}", highlight=False)
