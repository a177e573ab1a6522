"""``mcrepl config from-stack``: fill connection settings from a Pulumi stack's outputs.

After ``pulumi up`` (program in ``pulumi/``), ``pulumi stack output --json > outputs.json``
holds the format ``mcrepl-stack/1``: per dataset location the provisioned resource name,
plus the Cosmos account endpoint and auth mode and the GCP project. This command merges
them into the config and prints the result (or writes it back with ``--write``), so the
sync engine opens exactly what Pulumi created. What is merged:

* each replica's ``resource`` (table, container or bucket name), written in long form
  ``{at: ..., resource: ...}``;
* ``providers.cosmos``: ``endpoint`` (the account URI), ``auth`` and ``database``;
* ``providers.gcs``: ``project`` (and ``auth: adc`` in place of ``anonymous``);
* ``endpoint: local`` is dropped for every provider the stack provisioned, and
  ``profile`` becomes ``cloud``: the stack is a real cloud deployment.

The merged file is validated with the same model as every other command before it is
printed or written; comments in the original file are not kept.
"""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path
from typing import Any, Mapping

import typer
import yaml

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import McreplConfig

from .common import ConfigOption, cli_errors, console

STACK_FORMAT = "mcrepl-stack/1"
config_app = typer.Typer(name="config", no_args_is_help=True,
                         help="Work on mcrepl.yaml itself (fill it from a Pulumi stack).")


def register(app: typer.Typer) -> None:
    """Add the ``config`` command group to ``app``."""
    app.add_typer(config_app, name="config")


def merge_stack_outputs(raw: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (a parsed mcrepl.yaml) with the connection settings of ``outputs`` filled in.

    Raises :class:`ConfigError` when the outputs are not ``mcrepl-stack/1`` or name a
    dataset or location the config does not have (they belong to another config).
    """
    if outputs.get("format") != STACK_FORMAT:
        raise ConfigError(f"stack outputs are not in format {STACK_FORMAT} (found "
                          f"{outputs.get('format')!r})", path="format",
                          fix="save the outputs of the mcrepl program in pulumi/ with "
                              "'pulumi stack output --json > outputs.json'")
    merged = deepcopy(dict(raw))
    datasets = merged.get("datasets") or {}
    for name, per_location in (outputs.get("datasets") or {}).items():
        if name not in datasets:
            raise ConfigError(f"the stack provisioned dataset {name!r}, which this config does not have",
                              path=f"datasets.{name}", fix="pass the config the stack was deployed from")
        for location, detail in per_location.items():
            _set_resource(datasets[name], name, location, detail["resource"])
    providers = merged.setdefault("providers", {}) or {}
    merged["providers"] = providers
    stack_providers = outputs.get("providers") or {}
    for provider in ("dynamodb", "cosmos", "gcs"):
        if provider in stack_providers:
            settings = providers.setdefault(provider, {}) or {}
            providers[provider] = settings
            if settings.get("endpoint") == "local":
                del settings["endpoint"]
    if "cosmos" in stack_providers:
        cosmos = stack_providers["cosmos"]
        providers["cosmos"].update({"endpoint": cosmos["endpoint"], "auth": cosmos["auth"],
                                    "database": cosmos["database"]})
    if "gcs" in stack_providers:
        providers["gcs"]["project"] = stack_providers["gcs"]["project"]
        if providers["gcs"].get("auth") == "anonymous":
            providers["gcs"]["auth"] = "adc"
    if stack_providers:
        merged["profile"] = "cloud"
    return merged


def _set_resource(dataset: dict[str, Any], name: str, location: str, resource: str) -> None:
    if _at(dataset.get("primary")) == location:
        dataset["primary"] = {**_long(dataset["primary"]), "resource": resource}
        return
    replicas = dataset.get("replicas") or []
    for i, ref in enumerate(replicas):
        if _at(ref) == location:
            replicas[i] = {**_long(ref), "resource": resource}
            return
    raise ConfigError(f"the stack provisioned {location} for dataset {name!r}, which the config "
                      "does not list", path=f"datasets.{name}",
                      fix="pass the config the stack was deployed from, or run 'pulumi up' again")


def _at(ref: Any) -> str | None:
    return ref if isinstance(ref, str) else (ref or {}).get("at")


def _long(ref: Any) -> dict[str, Any]:
    return {"at": ref} if isinstance(ref, str) else dict(ref)


def from_stack(config_path: Path, outputs_path: Path) -> tuple[dict[str, Any], McreplConfig]:
    """Read both files, merge, and validate; returns the merged mapping and its model."""
    try:
        outputs = json.loads(outputs_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read stack outputs ({exc.__class__.__name__})", file=str(outputs_path),
                          fix="save them with 'pulumi stack output --json > FILE'") from None
    try:
        raw = yaml.safe_load(config_path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the config ({exc.__class__.__name__})", file=str(config_path),
                          fix="pass --config with the mcrepl.yaml the stack was deployed from") from None
    if not isinstance(outputs, dict) or not isinstance(raw, dict):
        raise ConfigError("both files must hold a mapping", file=str(outputs_path),
                          fix="use 'pulumi stack output --json' and a valid mcrepl.yaml")
    merged = merge_stack_outputs(raw, outputs)
    try:
        model = McreplConfig.model_validate(merged)
    except ValueError as exc:
        raise ConfigError(f"the merged config is invalid: {exc}", file=str(config_path)) from None
    return merged, model


@config_app.command("policy-pack")
def policy_pack_command(config: Path = ConfigOption,
                        output: Path | None = typer.Option(None, "--output", "-o",
                                                           help="Write to this file (default: print).")) -> None:
    """Print the CrossGuard pack's policy config for this mcrepl.yaml (for --policy-pack-config)."""
    from mcrepl.orchestrator.validation import load_checked
    from mcrepl.policies.pack_config import pack_config

    with cli_errors():
        text = json.dumps(pack_config(load_checked(config)), indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}", highlight=False)


@config_app.command("from-stack")
def from_stack_command(
    outputs: Path = typer.Option(..., "--outputs", help="JSON from 'pulumi stack output --json'."),
    config: Path = ConfigOption,
    write: bool = typer.Option(False, "--write", help="Write the merged config back to --config "
                                                     "(default: print it)."),
) -> None:
    """Fill table/container/bucket names and endpoints from a Pulumi stack's outputs."""
    with cli_errors():
        merged, _ = from_stack(config, outputs)
    text = yaml.safe_dump(merged, sort_keys=False, default_flow_style=False)
    if write:
        config.write_text(text, encoding="utf-8")
        console.print(f"wrote {config}", highlight=False)
    else:
        typer.echo(text, nl=False)
