"""One operator at a time: an advisory lock beside the state file for commands that move a primary.

``mcrepl failover promote | failback | fence`` hold ``<state_dir>/failover.lock`` (an
``flock`` on Linux and macOS) for their whole run, so two on-call engineers cannot
promote two different locations at once from one state file; the lock holder's pid and
command are written in the file for the one who is refused. The kernel drops the lock
when the process dies, even by SIGKILL, so a killed promotion never leaves it stuck.
``mcrepl doctor`` reports whether it is held.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from mcrepl.adapters.base import McreplError

LOCK_NAME = "failover.lock"


class LockHeld(McreplError):
    """Another process holds the failover lock of this state directory."""


def lock_path(state_dir: str | Path) -> Path:
    """Where the lock of ``state_dir`` lives."""
    return Path(state_dir) / LOCK_NAME


def holder(state_dir: str | Path) -> str | None:
    """Who holds the lock (``pid N: command``), or ``None`` when it is free."""
    path = lock_path(state_dir)
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


@contextmanager
def failover_lock(state_dir: str | Path, command: str) -> Iterator[None]:
    """Hold the lock for the block; raise :class:`LockHeld` naming the holder when it is taken."""
    path = lock_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            who = handle.read().strip() or "another process"
            raise LockHeld(f"another failover command holds {path} ({who}); wait for it to finish "
                           "(a killed one releases the lock at once)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {command}\n")
        handle.flush()
        yield
    finally:
        handle.close()


__all__ = ["LOCK_NAME", "LockHeld", "failover_lock", "holder", "lock_path"]
