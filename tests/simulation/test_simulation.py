"""The deterministic simulation: thousands of seeded schedules through the real sync engine.

Each seed is one :class:`~.sim.Simulation`: a random schedule of writes, crashes, clock
steps, faults and topology changes on the in-memory reference adapter, then quiescence
and the checker (:mod:`.checker`). A failure prints the seed and the schedule's trace;
``MCREPL_SIM_SEED=N`` replays exactly that seed, ``MCREPL_SIM_SEEDS=N`` changes how many
run (CI runs the default).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .sim import Simulation

SEEDS = int(os.environ.get("MCREPL_SIM_SEEDS", "1200"))
ONLY = os.environ.get("MCREPL_SIM_SEED")
CHUNKS = 8


def run_seed(seed: int, tmp: Path) -> list[str]:
    sim = Simulation(seed, tmp)
    violations = sim.run()
    if violations:
        trace = "\n    ".join(sim.trace[-60:])
        return [f"seed {seed}: {v}" for v in violations[:8]] + [f"seed {seed} trace (last 60):\n    {trace}"]
    return []


@pytest.mark.parametrize("chunk", range(CHUNKS) if ONLY is None else [0])
def test_random_schedules_keep_every_promise(chunk: int, tmp_path: Path) -> None:
    seeds = [int(ONLY)] if ONLY is not None else range(chunk, SEEDS, CHUNKS)
    failures: list[str] = []
    for seed in seeds:
        tmp = tmp_path / f"s{seed}"
        tmp.mkdir()
        failures += run_seed(seed, tmp)
        if len(failures) > 20:
            break
    assert not failures, "\n".join(failures)
