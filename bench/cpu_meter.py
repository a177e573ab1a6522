"""CPU seconds used by a process tree (the bench, its engine child and every emulator).

On a 2-core machine shared with other work, records/s moves with the load; the CPU a
pass costs per record does not. Comparing CPU-ms per record of our pass with the raw
writer's shows what bounds the ratio when the cores are saturated: ours can reach at
most ``raw CPU per record / our CPU per record`` of the raw rate. Linux ``/proc`` only.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """``(parent pid, user+system seconds)`` of ``pid``, or ``None`` if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()      # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


#: a process of the local stack, by what its command line runs (the rest is the bench's own)
ROLES = (("moto_server", "moto"), ("fake-gcs-server", "fake-gcs"), ("cosmosdb-server", "cosmos"),
         ("DynamoDBLocal", "dynamodb-local"))


def _role(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "bench"
    return next((role for marker, role in ROLES if marker in cmdline), "bench")


def tree_cpu_by_role(root: int | None = None) -> dict[str, float]:
    """CPU seconds used so far by ``root``'s process tree, per role (``bench``, ``moto``, ``fake-gcs``,
    ``cosmos``, ``dynamodb-local``): which part of the local stack a figure's CPU went to."""
    root = os.getpid() if root is None else root
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                stats[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    totals: dict[str, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            role = _role(pid)
            totals[role] = totals.get(role, 0.0) + stats[pid][1]
        todo += children.get(pid, [])
    return totals


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds used so far by ``root`` (default: this process) and all its live descendants."""
    return sum(tree_cpu_by_role(root).values())


def per_record_ms(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per record of each role between two :func:`tree_cpu_by_role` readings."""
    return {role: (after.get(role, 0.0) - before.get(role, 0.0)) * 1000 / n for role in after}
