"""``mcrepl config from-stack``: fill connection settings from a Pulumi stack's outputs.

After ``pulumi up`` (program in ``pulumi/``) the stack's outputs, format ``mcrepl-stack/1``,
hold per dataset location the provisioned resource name, plus the Cosmos account
endpoint and auth mode and the GCP project. They are read through the Pulumi Automation
API (``--stack NAME``, :mod:`.stack_source`) or from a file saved with ``pulumi stack
output --json`` (``--outputs FILE``). This command merges them into the config and prints
the result (or writes it back with ``--write``), so the sync engine opens exactly what
Pulumi created. What is merged:

* each replica's ``resource`` (table, container or bucket name), written in long form
  ``{at: ..., resource: ...}``;
* ``providers.cosmos``: ``endpoint`` (the account URI), ``auth`` and ``database``;
* ``providers.gcs``: ``project`` (and ``auth: adc`` in place of ``anonymous``);
* ``endpoint: local`` is dropped for every provider the stack provisioned, and
  ``profile`` becomes ``cloud``: the stack is a real cloud deployment.

The file is edited as a YAML round trip (ruamel.yaml): comments, key order, quoting and
flow style of everything not merged stay as the user wrote them. The merged text is
validated with the same model as every other command before it is printed or written.

``mcrepl config policy-pack`` prints the CrossGuard pack's policy config for the file
(:mod:`mcrepl.policies.pack_config`).
"""

from __future__ import annotations

import io
import json
from copy import deepcopy
from pathlib import Path
from typing import Any, Mapping

import typer
import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError as RoundTripError

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import McreplConfig

from .common import ConfigOption, cli_errors, console

STACK_FORMAT = "mcrepl-stack/1"
config_app = typer.Typer(name="config", no_args_is_help=True,
                         help="Work on mcrepl.yaml itself (fill it from a Pulumi stack).")


def register(app: typer.Typer) -> None:
    """Add the ``config`` command group to ``app``."""
    app.add_typer(config_app, name="config")


def merge_stack_outputs(raw: dict[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (a parsed mcrepl.yaml) with the connection settings of ``outputs`` filled in.

    Raises :class:`ConfigError` when the outputs are not ``mcrepl-stack/1`` or name a
    dataset or location the config does not have (they belong to another config).
    """
    if outputs.get("format") != STACK_FORMAT:
        raise ConfigError(f"stack outputs are not in format {STACK_FORMAT} (found "
                          f"{outputs.get('format')!r})", path="format",
                          fix="save the outputs of the mcrepl program in pulumi/ with "
                              "'pulumi stack output --json > outputs.json'")
    merged: dict[str, Any] = deepcopy(raw)      # a ruamel CommentedMap stays one, comments and all
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
        settings = providers.get(provider)
        if provider in stack_providers and settings and settings.get("endpoint") == "local":
            del settings["endpoint"]
    if "cosmos" in stack_providers:
        cosmos = stack_providers["cosmos"]
        _update(providers, "cosmos", {"endpoint": cosmos["endpoint"], "auth": cosmos["auth"],
                                      "database": cosmos["database"]})
    if "gcs" in stack_providers:
        _update(providers, "gcs", {"project": stack_providers["gcs"]["project"]})
        if providers["gcs"].get("auth") == "anonymous":
            providers["gcs"]["auth"] = "adc"
    if stack_providers and merged.get("profile") != "cloud":
        merged["profile"] = "cloud"
    return merged


def _update(parent: dict[str, Any], key: str, values: Mapping[str, Any]) -> None:
    """Set ``values`` in ``parent[key]`` (made if missing), touching only keys whose value changes,
    so a value already right keeps its quoting and comment."""
    section = parent.get(key)
    if not isinstance(section, dict):
        section = parent[key] = {}
    for name, value in values.items():
        if section.get(name) != value:
            section[name] = value


def _set_resource(dataset: dict[str, Any], name: str, location: str, resource: str) -> None:
    if _at(dataset.get("primary")) == location:
        dataset["primary"] = _with_resource(dataset["primary"], resource)
        return
    replicas = dataset.get("replicas") or []
    for i, ref in enumerate(replicas):
        if _at(ref) == location:
            replicas[i] = _with_resource(ref, resource)
            _keep_item_comment(replicas, i)
            return
    raise ConfigError(f"the stack provisioned {location} for dataset {name!r}, which the config "
                      "does not list", path=f"datasets.{name}",
                      fix="pass the config the stack was deployed from, or run 'pulumi up' again")


def _at(ref: Any) -> str | None:
    return ref if isinstance(ref, str) else (ref or {}).get("at")


def _with_resource(ref: Any, resource: str) -> Any:
    """``ref`` in long form with ``resource`` set; a mapping is edited in place (keeping its
    comments and style), a short ``provider:region`` becomes ``{at: ..., resource: ...}``."""
    if isinstance(ref, str):
        return CommentedMap([("at", ref), ("resource", resource)])
    if ref.get("resource") != resource:
        ref["resource"] = resource
    return ref


def _layout(text: str) -> tuple[int, int]:
    """The file's mapping indent and the offset of its sequence dashes under their key."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    indents = [len(ln) - len(ln.lstrip()) for ln in lines if not ln.lstrip().startswith("- ")]
    mapping = min((i for i in indents if i > 0), default=2)
    for before, line in zip(lines, lines[1:]):
        if line.lstrip().startswith("- ") and before.rstrip().endswith(":"):
            return mapping, max(0, (len(line) - len(line.lstrip())) - (len(before) - len(before.lstrip())))
    return mapping, 0


def _keep_item_comment(sequence: Any, index: int) -> None:
    """A ``- provider:region  # comment`` item turned into a mapping keeps its comment on ``at``."""
    comments = getattr(getattr(sequence, "ca", None), "items", {})
    token = (comments.get(index) or [None])[0]
    item = sequence[index]
    if token is not None and hasattr(item, "yaml_add_eol_comment"):
        del comments[index]
        item.yaml_add_eol_comment(token.value.strip(), "at")


def _read_round_trip(config_path: Path) -> tuple[Any, YAML]:
    """The file as ruamel's commented tree, and a YAML instance set to the file's own layout."""
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096                    # never re-wrap a user's long lines
    try:
        text = config_path.read_text("utf-8")
        raw = rt.load(text)
    except (OSError, RoundTripError) as exc:
        raise ConfigError(f"cannot read the config ({exc.__class__.__name__})", file=str(config_path),
                          fix="pass --config with the mcrepl.yaml the stack was deployed from") from None
    mapping, dash = _layout(text)
    rt.indent(mapping=mapping, sequence=dash + 2, offset=dash)
    return raw, rt


def from_stack(config_path: Path, outputs: Mapping[str, Any]) -> tuple[str, McreplConfig]:
    """The config with ``outputs`` merged, as YAML text keeping the file's comments and layout,
    and its validated model."""
    raw, dumper = _read_round_trip(config_path)
    if not isinstance(raw, dict):
        raise ConfigError("the config must hold a mapping", file=str(config_path),
                          fix="pass --config with a valid mcrepl.yaml")
    stream = io.StringIO()
    dumper.dump(merge_stack_outputs(raw, outputs), stream)
    text = stream.getvalue()
    try:
        model = McreplConfig.model_validate(yaml.safe_load(text))
    except ValueError as exc:
        raise ConfigError(f"the merged config is invalid: {exc}", file=str(config_path)) from None
    return text, model


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
    outputs: Path | None = typer.Option(None, "--outputs", help="JSON from 'pulumi stack output --json'."),
    stack: str | None = typer.Option(None, "--stack", help="Read this stack's outputs through the Pulumi "
                                                           "Automation API (needs the pulumi CLI)."),
    work_dir: Path = typer.Option(Path("pulumi"), "--work-dir", help="Folder of the Pulumi program (with --stack)."),
    config: Path = ConfigOption,
    write: bool = typer.Option(False, "--write", help="Write the merged config back to --config, keeping its "
                                                     "comments and layout (default: print it)."),
) -> None:
    """Fill table/container/bucket names and endpoints from a Pulumi stack's outputs."""
    from .stack_source import outputs_from_file, outputs_from_stack

    with cli_errors():
        if (outputs is None) == (stack is None):
            raise ConfigError("name the stack's outputs once: --stack NAME or --outputs FILE",
                              path="--stack/--outputs", fix="pass exactly one of them")
        values = outputs_from_file(outputs) if outputs is not None else \
            outputs_from_stack(stack or "", work_dir)
        text, _ = from_stack(config, values)
    if write:
        config.write_text(text, encoding="utf-8")
        console.print(f"wrote {config}", highlight=False)
    else:
        typer.echo(text, nl=False)
