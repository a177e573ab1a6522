"""Provider adapters behind one replication interface.

Adapters are found by entry point (group ``mcrepl.adapters``) and loaded lazily, as
fsspec's registry does (:mod:`.registry`): importing :mod:`mcrepl.adapters` loads no
cloud SDK, and a missing SDK gives an error that says what to install. Writing one:
docs/adapters.md.
"""

from __future__ import annotations

from .base import ConfigError, ReplicaAdapter, ReplicaTarget
from .registry import (GROUP, adapter_class, adapter_spec, open_adapter, open_fence, providers, refresh,
                       register_adapter, unregister_adapter)

__all__ = ["ConfigError", "GROUP", "ReplicaAdapter", "ReplicaTarget", "adapter_class", "adapter_spec",
           "open_adapter", "open_fence", "providers", "refresh", "register_adapter", "unregister_adapter"]
