"""The drill's own topology on the local stack: one dataset in a unique namespace.

Every location gets its own endpoint: in ``proxy`` mode a :class:`FaultProxy` in front of
its emulator (two DynamoDB regions share one moto server, each behind its own proxy, so
one region can be lost alone); in ``fence`` mode the emulator itself. Resource names
carry a random namespace, so drills never collide with each other or with a demo, and
:meth:`DrillTopology.close` drops them and stops the proxies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from typing import Any, Mapping
from urllib.parse import urlparse

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import ConfigError, ReplicaAdapter, ReplicaTarget
from mcrepl.orchestrator.config import McreplConfig

from .faults import FaultProxy
from .spec import DrillSpec

log = logging.getLogger("mcrepl.failover")
SERVICE_OF = {"dynamodb": "dynamodb", "cosmos": "cosmos", "gcs": "gcs"}


class DrillTopology:
    """Config, proxies and direct adapters for one drill run."""

    def __init__(self, spec: DrillSpec, endpoints: Mapping[str, str], state_dir: str) -> None:
        self.spec = spec
        self.namespace = f"dr{uuid.uuid4().hex[:6]}-"
        self.dataset = spec.topology.dataset
        self.proxies: dict[str, FaultProxy] = {}
        self.direct: dict[str, str] = {}
        locations: dict[str, dict[str, Any]] = {}
        for location in spec.topology.locations:
            provider = location.split(":", 1)[0]
            url = endpoints.get(SERVICE_OF[provider])
            if not url:
                raise ConfigError(f"the drill needs the {provider} emulator but the local stack has none",
                                  path="topology", fix=f"start it: mcrepl local up --services {provider}")
            self.direct[location] = url.rstrip("/")
            endpoint = self.direct[location]
            if spec.fault_mode == "proxy":
                parsed = urlparse(endpoint)
                proxy = FaultProxy(parsed.hostname or "127.0.0.1", int(parsed.port or 80))
                port = proxy.start()
                self.proxies[location] = proxy
                endpoint = f"{parsed.scheme}://127.0.0.1:{port}"
            locations[location] = {"at": location, "endpoint": endpoint}
        topo = spec.topology
        self.config = McreplConfig.model_validate({
            "version": 1, "profile": "local", "state_dir": state_dir,
            "providers": {"gcs": {"auth": "anonymous"}},
            "datasets": {self.dataset: {"kind": "document", "key": {"partition": "id"},
                                        "primary": locations[topo.primary],
                                        "replicas": [locations[r] for r in topo.replicas]}},
            "sync": {"batch_size": topo.batch_size, "max_in_flight": 2, "deadline": "60s",
                     "retry_deadline": "2s", "breaker_failures": 3, "breaker_reset": "1s"},
        })
        self._opened: list[ReplicaAdapter] = []

    @property
    def locations(self) -> list[str]:
        return self.spec.topology.locations

    def target(self, location: str) -> ReplicaTarget:
        """The target as the orchestrator reaches it (through the proxy in proxy mode)."""
        return self.config.target(self.dataset, location, None, self.namespace)

    def direct_target(self, location: str) -> ReplicaTarget:
        """The same store reached around any proxy: for the checker and writers inside the region."""
        target = self.target(location)
        return dataclasses.replace(target, options={**target.options, "endpoint": self.direct[location]})

    def open_direct(self, location: str) -> ReplicaAdapter:
        """A ready adapter on the store itself, closed (and its resource dropped) by :meth:`close`."""
        adapter = open_adapter(self.direct_target(location))
        self._opened.append(adapter)
        adapter.ensure_ready()
        return adapter

    # -- faults -----------------------------------------------------------------------------

    def set_proxy(self, location: str, mode: str, delay_s: float = 0.0) -> None:
        proxy = self.proxies.get(location)
        if proxy is None:
            raise ConfigError(f"no fault proxy in front of {location}", path="fault_mode",
                              fix="use fault_mode: proxy for proxy faults")
        proxy.set_mode(mode, delay_s)

    def heal_proxies(self, location: str | None = None) -> None:
        for name, proxy in self.proxies.items():
            if location is None or name == location:
                proxy.set_mode("pass")

    def close(self, drop: bool = True) -> None:
        """Drop the drill's tables/containers/buckets, close adapters, stop proxies."""
        self.heal_proxies()
        for adapter in self._opened:
            if drop:
                with contextlib.suppress(Exception):
                    adapter.drop()
            with contextlib.suppress(Exception):
                adapter.close()
        self._opened.clear()
        for proxy in self.proxies.values():
            proxy.stop()
