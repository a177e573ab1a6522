"""Connection pools sized to the requests an engine keeps in flight.

The sync engine runs several write units of a lane at once (see the engine's in-flight
window), each fanning out over the adapter's own threads; a client whose pool is smaller
than that opens and drops a connection per surplus request — a TCP and often a TLS
handshake each time, the most expensive thing a request can do. The engine therefore
passes ``options["connections"]`` with every target, and each adapter sizes its SDK's
pool from it (never below its own default).
"""

from __future__ import annotations

from typing import Any, Mapping

#: the target option the engine sets: requests one adapter instance may have in flight
CONNECTIONS_OPTION = "connections"


def pool_size(options: Mapping[str, Any], default: int) -> int:
    """Connections to keep per host for ``options``: the engine's figure, at least ``default``."""
    wanted = options.get(CONNECTIONS_OPTION)
    try:
        return max(default, int(wanted)) if wanted is not None else default
    except (TypeError, ValueError):
        return default


__all__ = ["CONNECTIONS_OPTION", "pool_size"]
