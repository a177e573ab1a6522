"""Connection pools sized to the requests an engine keeps in flight.

The sync engine runs several write units of a lane at once (see the engine's in-flight
window), each fanning out over the adapter's own threads; a client whose pool is smaller
than that opens and drops a connection per surplus request — a TCP and often a TLS
handshake each time, the most expensive thing a request can do. The engine therefore
passes ``options["connections"]`` with every target, and each adapter sizes its SDK's
pool from it (never below its own default).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, Mapping

import requests.adapters

#: the target option the engine sets: requests one adapter instance may have in flight
CONNECTIONS_OPTION = "connections"


def pool_size(options: Mapping[str, Any], default: int) -> int:
    """Connections to keep per host for ``options``: the engine's figure, at least ``default``."""
    wanted = options.get(CONNECTIONS_OPTION)
    try:
        return max(default, int(wanted)) if wanted is not None else default
    except (TypeError, ValueError):
        return default


class UnverifiedTLSAdapter(requests.adapters.HTTPAdapter):
    """A pool for an emulator's self-signed TLS (``verify=False``) sharing one SSL context.

    Without a context of its own, urllib3 builds one per new connection and loads the
    system CA store into it (``load_default_certs``) even though nothing is verified: about
    6 % of a pass's CPU against the Cosmos DB emulator, which closes idle connections after
    5 s, so a pool keeps reopening them. The context is built once, with checks off, and
    requests' ``verify=False`` still decides (urllib3 sets ``CERT_NONE`` on it).
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = _unverified_context()
        super().init_poolmanager(*args, **kwargs)


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    """One context for every such pool of the process (no per-adapter state: a pool rebuilt
    from a pickle, as ``HTTPAdapter.__setstate__`` does, finds it too)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


__all__ = ["CONNECTIONS_OPTION", "UnverifiedTLSAdapter", "pool_size"]
