"""Processes of the local stack: launch in their own group, wait until they answer, stop.

Each emulator runs in a new session (its own process group), so stopping it kills
everything it spawned and a Ctrl-C in the terminal never half-kills it. A pid alone can
be reused by the OS after a process exits, so a :class:`ProcessRef` also records the
process's start time and every signal is sent only after that identity is re-checked.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import LocalStackError


_LAUNCH_MARK = "=== mcrepl local stack: launched "


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free on ``host`` right now (bind to 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), else ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 22; the command name (field 2) may contain spaces, so split after its ')'
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class ProcessRef:
    """A launched emulator process: pid, process group and start time (its identity)."""

    pid: int
    pgid: int
    started: int | None

    def alive(self) -> bool:
        """True while this very process (not a later one with the same pid) still runs."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        if self.started is not None and _start_ticks(self.pid) != self.started:
            return False
        return not _is_zombie(self.pid)

    def group_alive(self) -> bool:
        """True while any process of its group remains (our child may have forked)."""
        if self.alive():
            return True
        if self.started is not None and _start_ticks(self.pid) not in (None, self.started):
            return False  # the pid was reused: the group id now belongs to someone else
        return bool(group_members(self.pgid))

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ProcessRef:
        return cls(int(data["pid"]), int(data["pgid"]), data.get("started"))


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in process group ``pgid``.

    Reads ``/proc`` so an unreaped zombie does not count as running; elsewhere falls
    back to ``killpg(pgid, 0)``.
    """
    proc_dir = Path("/proc")
    if not (proc_dir / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def launch(argv: list[str], log_file: Path, cwd: Path) -> tuple[subprocess.Popen, ProcessRef]:
    """Start ``argv`` detached in a new session, stdout and stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"{_LAUNCH_MARK}{time.strftime('%Y-%m-%dT%H:%M:%S')} {argv[0]}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, ProcessRef(proc.pid, proc.pid, _start_ticks(proc.pid))


def answers(url: str, timeout: float = 2.0) -> bool:
    """True if ``url`` gives any HTTP answer (any status), TLS verification off.

    The Cosmos emulator's certificate is self-signed; we only ask "is it serving?".
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url + "/", timeout=timeout, context=context):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def log_tail(log_file: Path, lines: int = 20) -> str:
    """The last ``lines`` lines the latest launch wrote to ``log_file`` ('' if none).

    Logs are appended across launches; only what follows the last launch marker counts,
    so an error never shows an earlier run's output.
    """
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    latest = text.rsplit(_LAUNCH_MARK, 1)[-1].split("\n", 1)[-1] if _LAUNCH_MARK in text else text
    return "\n".join(latest.splitlines()[-lines:])


def wait_until_answers(name: str, url: str, proc: subprocess.Popen | None, ref: ProcessRef,
                       log_file: Path, deadline: float,
                       cancelled: Callable[[], bool] = lambda: False) -> None:
    """Poll ``url`` until it answers; raise :class:`LocalStackError` with the log tail if
    the process exits first, ``deadline`` (a ``time.monotonic()`` value) passes or
    ``cancelled()`` turns true."""
    delay = 0.05
    while True:
        if answers(url):
            return
        if cancelled():
            raise LocalStackError(f"start of {name} cancelled")
        exited = proc.poll() is not None if proc is not None else not ref.alive()
        if exited:
            code = proc.returncode if proc is not None else "?"
            raise LocalStackError(f"{name} exited (code {code}) before answering on {url}",
                                  fix=f"see the log {log_file}", log_tail=log_tail(log_file))
        if time.monotonic() > deadline:
            raise LocalStackError(f"{name} did not answer on {url} in time",
                                  fix=f"see the log {log_file}; a loaded machine may need a "
                                      "longer MCREPL_LOCAL_START_TIMEOUT",
                                  log_tail=log_tail(log_file))
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def stop(ref: ProcessRef, proc: subprocess.Popen | None = None, grace: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds; reap our child.

    Safe to call twice and on a process that already exited.
    """
    if ref.group_alive():
        _signal_group(ref, signal.SIGTERM)
        end = time.monotonic() + grace
        while time.monotonic() < end:
            if proc is not None:
                proc.poll()
            if not ref.group_alive():
                break
            time.sleep(0.05)
        else:
            _signal_group(ref, signal.SIGKILL)
    if proc is not None:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _signal_group(ref: ProcessRef, sig: signal.Signals) -> None:
    try:
        os.killpg(ref.pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
