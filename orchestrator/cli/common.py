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

from mcrepl.adapters.base import AdapterError, McreplError
from mcrepl.orchestrator.config import McreplConfig, load_config

from .output import make_console

console = make_console()
err_console = make_console(stderr=True)

EXIT_FOUND, EXIT_INPUT, EXIT_STORE = 1, 2, 3

ConfigOption = typer.Option(
    Path(os.environ.get("MCREPL_CONFIG", "mcrepl.yaml")), "--config", "-c",
    help="Path of mcrepl.yaml (default: $MCREPL_CONFIG or ./mcrepl.yaml).", show_default=False)


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    """Print ``message`` to stderr (each line of it prefixed ``error:``) and exit with ``code``."""
    from rich.text import Text
    for line in str(message).splitlines() or [""]:
        err_console.print(Text.assemble(("error:", "bold red"), " ", printable_line(line)), soft_wrap=True)
    raise typer.Exit(code)


def printable_line(text: str) -> str:
    """One line of a message with its control characters escaped and secrets masked."""
    from .output import printable
    return printable(text)


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


def load(path: Path, *, checked: bool = True) -> McreplConfig:
    """Load the config, exiting 2 with one ``file:path: message (fix: …)`` line per problem.

    ``checked`` (the default) runs the whole of ``mcrepl validate`` first
    (:func:`~mcrepl.orchestrator.validation.load_checked`): every command that reaches a
    store refuses what ``validate`` refuses, before any I/O. Commands that only read the
    local state (``status``, ``audit``) pass ``checked=False`` and get the model checks only.
    """
    with cli_errors():
        if not checked:
            return load_config(path)
        from mcrepl.orchestrator.validation import load_checked
        return load_checked(path)


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
