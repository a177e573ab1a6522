"""Run ``mcrepl`` as a subprocess the way a test should: a timeout that explains itself.

A command that outlives its timeout is asked for every thread's stack first (the CLI
dumps them on ``SIGUSR1``), then killed, and the failure carries those stacks and the
output so far: a hang seen once under CI load is diagnosable from the CI log alone.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

CLI = [sys.executable, "-m", "mcrepl.orchestrator.cli"]


class CommandHung(AssertionError):
    """The command was still running at its timeout; the message holds its thread stacks."""


def run_cli(args: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``mcrepl ARGS`` to completion, capturing text output; :class:`CommandHung` past ``timeout``."""
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(env) if env is not None else None, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        try:
            out, err = proc.communicate(timeout=5)      # it goes on after the dump: give it a moment
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise CommandHung(f"mcrepl {' '.join(args)} still running after {timeout:.0f}s; its threads, "
                          f"then its output:\n{err[-20000:]}\n--- stdout ---\n{out[-4000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
