"""Command group placeholder: its owner adds commands in ``register``."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
