"""Provider name → :class:`~.base.spec.AdapterSpec`, found by entry point, loaded lazily.

Like fsspec's registry: a distribution publishes its adapters under the entry point group
``mcrepl.adapters`` (name = provider, value = ``"module:SPEC"``); discovery reads only
package metadata, and a spec module is imported the first time its provider is named,
so importing :mod:`mcrepl.adapters` loads no adapter and no cloud SDK.

Overwrite protection: mcrepl's own providers (:data:`BUILTIN`) cannot be replaced by
another distribution's entry point (it is ignored, with a warning naming both); two
other distributions claiming one name make that name unusable until one is uninstalled,
rather than one being picked silently; :func:`register_adapter` refuses to replace a
registration unless ``clobber=True``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from .base.errors import ConfigError
from .base.spec import AdapterSpec

if TYPE_CHECKING:
    from .base.fence import EpochFence
    from .base.interface import ReplicaAdapter, ReplicaTarget

log = logging.getLogger("mcrepl.adapters.registry")

GROUP = "mcrepl.adapters"
MCREPL_DIST = "mcrepl"
#: mcrepl's own providers, found even where the package metadata is missing (a source tree
#: on ``sys.path``); the same values are published as entry points
BUILTIN: dict[str, str] = {
    "dynamodb": "mcrepl.adapters.dynamodb:SPEC",
    "cosmos": "mcrepl.adapters.cosmos:SPEC",
    "gcs": "mcrepl.adapters.gcs:SPEC",
    "memory": "mcrepl.adapters.memory:SPEC",
}


@dataclass
class Registration:
    """One provider: where its spec lives (``"module:attr"`` until loaded) and who registered it."""

    name: str
    value: str | AdapterSpec
    origin: str                        # the distribution, "mcrepl (built in)" or "runtime"
    conflict: str | None = None        # set when another distribution claims the same name

    def spec(self) -> AdapterSpec:
        if self.conflict:
            raise ConfigError(f"provider {self.name!r} is claimed by two installed distributions: "
                              f"{self.conflict}", fix="uninstall one of them")
        if isinstance(self.value, str):
            module_name, _, attr = self.value.partition(":")
            spec = getattr(importlib.import_module(module_name), attr)
            if not isinstance(spec, AdapterSpec) or spec.name != self.name:
                raise ConfigError(f"entry point {self.name} = {self.value!r} ({self.origin}) is not the "
                                  f"AdapterSpec of provider {self.name!r}",
                                  fix=f"publish an AdapterSpec named {self.name!r} under {GROUP}")
            self.value = spec
        return self.value


_lock = threading.RLock()
_registry: dict[str, Registration] | None = None


def _discover() -> dict[str, Registration]:
    found = {name: Registration(name, value, f"{MCREPL_DIST} (built in)") for name, value in BUILTIN.items()}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        have = found.get(ep.name)
        if have is None:
            found[ep.name] = Registration(ep.name, ep.value, dist)
        elif have.value == ep.value:
            if have.origin.endswith("(built in)") and dist == MCREPL_DIST:
                have.origin = MCREPL_DIST
        elif ep.name in BUILTIN:
            log.warning("ignoring entry point %s = %r from %s: %r is one of mcrepl's own providers",
                        ep.name, ep.value, dist, ep.name)
        else:
            have.conflict = f"{have.origin} ({have.value}) and {dist} ({ep.value})"
    return found


def _entries() -> dict[str, Registration]:
    global _registry
    with _lock:
        if _registry is None:
            _registry = _discover()
        return _registry


def refresh() -> None:
    """Forget what was discovered, so distributions installed since are found on next use."""
    global _registry
    with _lock:
        _registry = None


def register_adapter(spec: AdapterSpec, *, clobber: bool = False) -> None:
    """Register ``spec`` under ``spec.name`` in this process (tests, embedding applications).

    Refuses to replace another registration unless ``clobber`` is true.
    """
    with _lock:
        entries = _entries()
        have = entries.get(spec.name)
        if have is not None and not clobber and have.value is not spec:
            raise ConfigError(f"provider {spec.name!r} is already registered (by {have.origin})",
                              fix="choose another name, or pass clobber=True to replace it on purpose")
        entries[spec.name] = Registration(spec.name, spec, "runtime")


def unregister_adapter(name: str) -> None:
    """Remove a runtime registration (a test's clean-up); rediscovery restores entry points."""
    with _lock:
        _entries().pop(name, None)


def providers() -> dict[str, str]:
    """Every known provider name → the distribution that provides it, without importing any."""
    return {name: reg.origin for name, reg in sorted(_entries().items())}


def adapter_spec(provider: str) -> AdapterSpec:
    """The spec of ``provider`` (imports its light spec module, never its SDK)."""
    reg = _entries().get(provider)
    if reg is None:
        raise ConfigError(f"unknown provider {provider!r}",
                          fix=f"use one of {', '.join(sorted(_entries()))}, or install the distribution "
                              f"that provides it (it registers under the {GROUP!r} entry points)")
    return reg.spec()


def adapter_class(provider: str) -> type["ReplicaAdapter"]:
    """The adapter class for ``provider``, importing its SDK only now."""
    return adapter_spec(provider).load()


def open_adapter(target: "ReplicaTarget") -> "ReplicaAdapter":
    """Instantiate the adapter for ``target.provider`` (no connection is made yet)."""
    return adapter_class(target.provider)(target)


def open_fence(target: "ReplicaTarget") -> "EpochFence":
    """The epoch record of ``target``'s dataset at its location (see :mod:`.base.fence`)."""
    fence: EpochFence = adapter_spec(target.provider).load_fence()(target)
    return fence


__all__ = ["BUILTIN", "GROUP", "Registration", "adapter_class", "adapter_spec", "open_adapter", "open_fence", "providers",
           "refresh", "register_adapter", "unregister_adapter"]
