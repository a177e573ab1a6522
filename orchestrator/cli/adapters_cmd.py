"""``mcrepl adapters list | show NAME``: what is installed, and each adapter's settings and capabilities.

Read from the registry (entry points) and each adapter's spec: the settings block is
documented from the adapter's own pydantic model (field, type, default, description),
so what this prints is what the config accepts. Nothing here imports a cloud SDK, except
to report whether it is installed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import typer

from .common import cli_errors

adapters_app = typer.Typer(no_args_is_help=True, help="List installed adapters; show one's settings and capabilities.")


def register(app: typer.Typer) -> None:
    """Add the ``adapters`` command group."""
    app.add_typer(adapters_app, name="adapters")


def _sdk_installed(spec: Any) -> bool:
    from mcrepl.adapters.base import ConfigError
    try:
        spec.load()
    except ConfigError:
        return False
    return True


def describe(name: str) -> dict[str, Any]:
    """Everything ``show`` prints about ``name``, as plain data."""
    from mcrepl.adapters import adapter_spec, providers
    spec = adapter_spec(name)
    fields = {}
    for field, info in spec.settings.model_fields.items():
        annotation = info.annotation
        fields[field] = {"type": getattr(annotation, "__name__", str(annotation)) if isinstance(annotation, type)
                         else str(annotation).replace("typing.", ""),
                         "default": None if info.is_required() else info.get_default(call_default_factory=True),
                         "description": info.description or ""}
    return {"name": spec.name, "distribution": providers()[name], "summary": spec.summary, "cloud": spec.cloud,
            "stores_dataset_in": spec.resource_kind, "adapter": spec.adapter, "installed": _sdk_installed(spec),
            "install": spec.install, "capabilities": dataclasses.asdict(spec.capabilities),
            "settings": {"block": f"providers.{spec.name}", "fields": fields,
                         "credentials": spec.settings.credential_home}}


@adapters_app.command("list")
def list_adapters(format: str = typer.Option("text", "--format", help="text or json.")) -> None:
    """Every adapter the entry points register: name, distribution, cloud, whether its SDK is installed."""
    from mcrepl.adapters import providers
    with cli_errors():
        rows = [describe(name) for name in providers()]
    if format == "json":
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        state = "ready" if row["installed"] else f"needs: {row['install']}"
        typer.echo(f"{row['name']:10} {row['cloud']:6} {row['distribution']:24} {state}")


@adapters_app.command("show")
def show(name: str = typer.Argument(..., help="A provider name, as in provider:region."),
         format: str = typer.Option("text", "--format", help="text or json.")) -> None:
    """One adapter's settings block (from its model), capabilities and where it comes from."""
    with cli_errors():
        info = describe(name)
    if format == "json":
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    typer.echo(f"{info['name']} ({info['distribution']}): {info['summary']}")
    typer.echo(f"  cloud {info['cloud']}; one {info['stores_dataset_in']} per dataset and location; "
               f"{'SDK installed' if info['installed'] else info['install']}")
    typer.echo(f"  {info['settings']['block']}:")
    for field, spec in info["settings"]["fields"].items():
        typer.echo(f"    {field}: {spec['type']} = {spec['default']!r}  {spec['description']}")
    typer.echo(f"  credentials come from {info['settings']['credentials']}")
    typer.echo("  capabilities: " + ", ".join(f"{k}={v}" for k, v in info["capabilities"].items()))
