"""``mcrepl doctor``: is this topology ready to replicate and to fail over? Every check PASS/WARN/FAIL/SKIP.

For every location of every dataset: credentials resolve and cover what the adapters
call, the table/container/bucket is set up as sync and the policies need, the epoch
record writers are fenced by matches the pointer; for every store endpoint: clock skew
from HTTP ``Date``; for the orchestrator: the state file is writable and not locked,
each lane's lag and breaker, the last verify and its age. Facts come from the adapters
(:mod:`mcrepl.adapters.base.readiness`); a question a store cannot answer is SKIP with
the reason, never PASS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from mcrepl.orchestrator.clock import SYSTEM_CLOCK, Clock
from mcrepl.orchestrator.config import McreplConfig

from .local_state import state_checks
from .model import ORDER, Check
from .skew import skew_checks
from .stores import location_checks


def run_doctor(config: McreplConfig, state_path: Path, *, local_endpoints: Mapping[str, str] | None = None,
               clock: Clock = SYSTEM_CLOCK) -> list[Check]:
    """Every check, worst first within each place; the caller exits non-zero on any FAIL."""
    now = clock.time()
    checks, state = state_checks(config, state_path, now)
    endpoints: dict[str, str] = {}
    try:
        for name, ds in config.datasets.items():
            pointer = state.current_primary(name) if state is not None else None
            for ref in ds.locations:
                target = config.target(name, ref.at, local_endpoints)
                checks += location_checks(config, target, ref, pointer)
                url = str(target.options.get("endpoint") or _public_endpoint(ref.provider, ref.region))
                endpoints.setdefault(url, f"{ref.provider} {url}")
    finally:
        if state is not None:
            state.close()
    checks += skew_checks([(where, url) for url, where in endpoints.items()],
                          config.failover.max_clock_skew.total_seconds(), clock)
    return sorted(checks, key=lambda c: (c.where, ORDER[c.status]))


def _public_endpoint(provider: str, region: str) -> str:
    return {"dynamodb": f"https://dynamodb.{region}.amazonaws.com", "gcs": "https://storage.googleapis.com"}.get(
        provider, "https://management.azure.com")


__all__ = ["Check", "run_doctor"]
