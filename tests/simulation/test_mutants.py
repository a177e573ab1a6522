"""The simulation catches every defect of the sync-correctness issue when it is put back.

Each mutant (see :mod:`.mutants`) reverts one fix; the schedules that pass on the real
engine must fail with it in place, within a bounded number of seeds. The seed that
caught it is printed (``-s``) so it can be replayed with the mutant applied.
"""

from __future__ import annotations

import pytest

from .mutants import MUTANTS, first_failure

SEEDS = range(0, 150)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_simulation_catches_the_defect(name: str) -> None:
    mutant = MUTANTS[name]
    caught = first_failure(mutant, SEEDS)
    searched = len(mutant.seeds or SEEDS)
    assert caught is not None, f"{name} ({mutant.defect}) passed {searched} schedules: the simulation is blind to it"
    seed, violations = caught
    print(f"{name}: caught by seed {seed} ({mutant.steps} steps): {violations[0][:200]}")
