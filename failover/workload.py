"""A small, seeded, rate-limited workload of inserts, updates and deletes.

The same seed gives the same sequence of choices; what actually happens depends on the
faults, and is what the history records. The workload keeps its own view of which keys
are live (from acknowledged writes only), so it updates and deletes keys it believes
exist and inserts keys it believes absent, as an application would.
"""

from __future__ import annotations

import random
import string
import threading
import time

from .router import OpKind, WriteRouter
from .spec import WorkloadSpec


def key_name(index: int) -> str:
    """The drill's key for key number ``index``."""
    return f"k{index:05d}"


class Workload:
    """Runs ``router.write`` at ``spec.rate`` operations per second on a background thread."""

    def __init__(self, spec: WorkloadSpec, router: WriteRouter) -> None:
        self.spec = spec
        self.router = router
        self._rng = random.Random(spec.seed)
        self._live: set[int] = set()
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start writing (a no-op when already running)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="drill-workload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the operation in flight (each is bounded by the router's call deadline)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._thread = None

    def next_op(self) -> tuple[OpKind, int]:
        """The next operation and key number, from the seeded generator and the live-key view."""
        spec = self.spec
        kind: OpKind = self._rng.choices(("insert", "update", "delete"),
                                         weights=(spec.insert, spec.update, spec.delete))[0]  # type: ignore[assignment]
        absent = [i for i in range(spec.keys) if i not in self._live]
        if kind == "insert" and not absent:
            kind = "update"
        if kind in ("update", "delete") and not self._live:
            kind = "insert"
        pool = absent if kind == "insert" else sorted(self._live)
        return kind, self._rng.choice(pool)

    def step(self) -> str:
        """Run one operation now; returns its status."""
        kind, index = self.next_op()
        self._seq += 1
        body = {"seq": self._seq, "writer": self.router.name,
                "note": "".join(self._rng.choice(string.ascii_lowercase) for _ in range(24))}
        status = self.router.write(kind, key_name(index), body if kind != "delete" else None)
        if status == "ok":
            (self._live.discard if kind == "delete" else self._live.add)(index)
        return status

    def _run(self) -> None:
        interval = 1.0 / self.spec.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.step()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()      # fell behind (a slow write): don't burst to catch up
