"""Provider adapters behind one replication interface.

Backends are looked up lazily by provider name (as fsspec's registry does), so
importing :mod:`mcrepl.adapters` loads no cloud SDK and a missing SDK gives an error
that says what to install.
"""

from __future__ import annotations

import importlib

from .base import ConfigError, ReplicaAdapter, ReplicaTarget
from .base.fence import EpochFence

#: provider name → "module:Class" (relative to this package)
REGISTRY: dict[str, str] = {
    "dynamodb": ".dynamodb:DynamoDBAdapter",
    "cosmos": ".cosmos:CosmosAdapter",
    "gcs": ".gcs:GCSAdapter",
    "memory": ".memory:MemoryAdapter",
}

_SDK_HINT = {"dynamodb": "boto3", "cosmos": "azure-cosmos azure-identity", "gcs": "google-cloud-storage"}


def adapter_class(provider: str) -> type[ReplicaAdapter]:
    """The adapter class for ``provider``, importing its SDK only now."""
    try:
        spec = REGISTRY[provider]
    except KeyError:
        raise ConfigError(f"unknown provider {provider!r}", fix=f"use one of {sorted(REGISTRY)}") from None
    module_name, _, cls_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name, __name__)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"the {provider} adapter needs a package that is not installed ({exc.name})",
                          fix=f"pip install {_SDK_HINT.get(provider, exc.name)}") from exc
    return getattr(module, cls_name)


def open_adapter(target: ReplicaTarget) -> ReplicaAdapter:
    """Instantiate the adapter for ``target.provider``."""
    return adapter_class(target.provider)(target)


#: provider name → "module:Class" of its epoch record (see :mod:`.base.fence`)
FENCES: dict[str, str] = {
    "dynamodb": ".dynamodb.fence:DynamoDBFence",
    "cosmos": ".cosmos.fence:CosmosFence",
    "gcs": ".gcs.fence:GCSFence",
}


def open_fence(target: ReplicaTarget) -> "EpochFence":
    """The epoch record of ``target``'s dataset at its location, importing the SDK only now."""
    spec = FENCES.get(target.provider)
    if spec is None:
        raise ConfigError(f"provider {target.provider!r} keeps no epoch record", fix=f"use one of {sorted(FENCES)}")
    adapter_class(target.provider)                      # the same SDK check and hint
    module_name, _, cls_name = spec.partition(":")
    fence: EpochFence = getattr(importlib.import_module(module_name, __name__), cls_name)(target)
    return fence
