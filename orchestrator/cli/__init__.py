"""The ``mcrepl`` command line: thin commands over the same library the tests call.

Each command group lives in its own module with a ``register(app)`` function; heavy
imports (cloud SDKs) happen inside the commands, so ``mcrepl --help`` stays fast.
"""

from __future__ import annotations

import faulthandler
import signal
import sys

import typer

from . import (adapters_cmd, audit_cmd, doctor_cmd, drill_cmd, failover_cmd, local_cmd, policy_cmd, stack_cmd,
               sync_cmd, validate_cmd, verify_cmd)

app = typer.Typer(
    name="mcrepl", no_args_is_help=True, add_completion=False,
    help="Replicate datasets across DynamoDB, Cosmos DB, Cloud Storage and S3, and prove the copies agree.")

for module in (local_cmd, validate_cmd, sync_cmd, audit_cmd, policy_cmd, stack_cmd, verify_cmd, doctor_cmd,
               failover_cmd, drill_cmd, adapters_cmd):
    module.register(app)


def main() -> None:
    """Console-script entry point: every byte written to stdout and stderr is redacted.

    ``kill -USR1 <pid>`` prints every thread's stack to stderr and lets the command go on:
    what an operator (or a test whose command outlived its timeout) needs to see where a
    long pass is waiting. Stacks name files and functions only, never values.
    """
    from .output import install_redaction
    if sys.__stderr__ is not None:              # a daemon started without a stderr has nowhere to print
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    install_redaction()
    app()
