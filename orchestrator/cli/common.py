"""What every command shares: the ``--config`` option, loading it, and turning errors into exit codes.

Exit codes: 0 success, 1 the check found problems (divergence, violations), 2 bad input
(config, arguments), 3 a store failed (unreachable, refused credentials).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, NoReturn

import typer
from rich.console import Console

from mcrepl.adapters.base import AdapterError, McreplError
from mcrepl.orchestrator.config import McreplConfig, load_config

console = Console()
err_console = Console(stderr=True)

EXIT_FOUND, EXIT_INPUT, EXIT_STORE = 1, 2, 3

ConfigOption = typer.Option(
    Path(os.environ.get("MCREPL_CONFIG", "mcrepl.yaml")), "--config", "-c",
    help="Path of mcrepl.yaml (default: $MCREPL_CONFIG or ./mcrepl.yaml).", show_default=False)


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def exit_code_for(exc: McreplError) -> int:
    """2 for bad input (config, arguments, policy), 3 for a store that failed."""
    return EXIT_STORE if isinstance(exc, AdapterError) else EXIT_INPUT


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn mcrepl's errors into a one-line message and the documented exit code."""
    try:
        yield
    except McreplError as exc:
        fail(str(exc), exit_code_for(exc))


def load(path: Path) -> McreplConfig:
    """Load and validate the config, exiting 2 with the file/path/fix message on error."""
    with cli_errors():
        return load_config(path)


def local_endpoints(config: McreplConfig) -> Mapping[str, str] | None:
    """Endpoints of the local stack when any provider is set to ``endpoint: local``.

    ``$MCREPL_LOCAL_ENDPOINTS`` (a JSON object ``{"dynamodb": URL, ...}``) wins over the
    file ``mcrepl local up`` writes: test fixtures and supervisors that started the
    emulators themselves pass their endpoints this way.
    """
    if not config.uses_local_stack():
        return None
    from mcrepl.orchestrator.localstack import read_endpoints
    return read_endpoints()


def check_dataset(config: McreplConfig, dataset: str | None) -> list[str]:
    """The datasets a command works on: the one named (checked) or all of them."""
    if dataset is None:
        return list(config.datasets)
    if dataset not in config.datasets:
        fail(f"no dataset {dataset!r} in the config; use one of {', '.join(config.datasets)}")
    return [dataset]
