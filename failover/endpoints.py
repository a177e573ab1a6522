"""Where a drill finds its emulators: given endpoints, a running local stack, or its own.

Order: ``$MCREPL_LOCAL_ENDPOINTS`` (a JSON object ``{"dynamodb": URL, ...}``), then the stack
``mcrepl local up`` left running, then a stack started just for this drill with only the
services its topology needs, stopped when the drill ends.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from .spec import DrillSpec


def services_for(spec: DrillSpec) -> list[str]:
    """The local-stack services the drill's topology uses."""
    return sorted({loc.split(":", 1)[0] for loc in spec.topology.locations})


@contextmanager
def drill_endpoints(spec: DrillSpec) -> Iterator[dict[str, str]]:
    """``{service: url}`` for every service the drill needs, for the duration of the block."""
    from mcrepl.orchestrator.localstack import LocalStack, endpoints_from_env, read_endpoints

    needed = services_for(spec)
    given = endpoints_from_env()
    if given is not None:
        yield given
        return

    running = read_endpoints() or {}
    if all(name in running for name in needed):
        yield dict(running)
        return
    with LocalStack(needed) as stack:
        yield {name: stack.endpoint(name) for name in needed}
