"""``python -m tests.cli_with_faults ARGS``: the ``mcrepl`` CLI, in a process a scenario test changed first.

Run from the repository root (``tests`` must be importable). Set in the environment:

* ``MCREPL_TEST_MUTANT`` — the name of a mutant of ``tests/simulation/mutants.py``: that fixed
  defect is put back for the whole run (a scenario shows it notices the defect);
* ``MCREPL_TEST_KILL_AT_AUDIT`` — ``N:before`` or ``N:after``: the process SIGKILLs itself
  while the N-th ``batch`` line of the audit trail is written (before it reaches the file, or
  just after): the window between a checkpoint's commit and its audit line.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

KILL_AT_AUDIT = "MCREPL_TEST_KILL_AT_AUDIT"
MUTANT = "MCREPL_TEST_MUTANT"


def _kill_at_audit_line(spec: str) -> None:
    from mcrepl.orchestrator.observability.audit import AuditTrail
    nth, _, when = spec.partition(":")
    original = AuditTrail.append
    batches = 0

    def append(self: AuditTrail, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal batches
        batches += kind == "batch"
        if batches == int(nth) and kind == "batch" and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        entry = original(self, kind, payload)
        if batches == int(nth) and kind == "batch":
            os.kill(os.getpid(), signal.SIGKILL)
        return entry

    def append_many(self: AuditTrail, entries: Any) -> list[dict[str, Any]]:
        return [append(self, kind, payload) for kind, payload in entries]    # line by line: each can be the N-th

    AuditTrail.append = append  # type: ignore[method-assign]
    AuditTrail.append_many = append_many  # type: ignore[method-assign]


def main() -> None:
    """Apply what the environment asks for, then run the CLI on ``sys.argv``."""
    if os.environ.get(KILL_AT_AUDIT):
        _kill_at_audit_line(os.environ[KILL_AT_AUDIT])
    patch: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if os.environ.get(MUTANT):
        from tests.simulation.mutants import MUTANTS
        patch = MUTANTS[os.environ[MUTANT]].patch()
    from mcrepl.orchestrator.cli import app
    with patch:
        app(prog_name="mcrepl")


if __name__ == "__main__":
    main()
