"""Cosmos DB (NoSQL API) replica adapter.

Importing this package loads ``azure-cosmos``; :mod:`mcrepl.adapters` imports it only
when a target names the ``cosmos`` provider.
"""

from .adapter import CosmosAdapter

__all__ = ["CosmosAdapter"]
