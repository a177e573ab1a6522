"""Cosmos DB (NoSQL API) replica adapter.

Importing this package loads no SDK: ``azure-cosmos`` comes with :class:`CosmosAdapter`,
which :mod:`mcrepl.adapters` imports only when a target names the ``cosmos`` provider;
:mod:`.operations` (the IAM inventory) never needs it.
"""

from typing import TYPE_CHECKING, Any

from .settings import SPEC

if TYPE_CHECKING:
    from .adapter import CosmosAdapter


def __getattr__(name: str) -> Any:
    # lazy (PEP 562): ``.operations`` (the IAM inventory) is importable without the SDK
    if name == "CosmosAdapter":
        from .adapter import CosmosAdapter
        return CosmosAdapter
    raise AttributeError(name)


__all__ = ["CosmosAdapter", "SPEC"]
