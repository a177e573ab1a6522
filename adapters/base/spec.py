"""What mcrepl knows about an adapter before it imports the adapter's SDK: its :class:`AdapterSpec`.

A distribution publishes one spec per provider name under the ``mcrepl.adapters`` entry
point group (see :mod:`mcrepl.adapters.registry`)::

    [project.entry-points."mcrepl.adapters"]
    s3 = "mcrepl.adapters.s3:SPEC"

The module holding the spec must import no cloud SDK: the config loader, ``validate``,
residency and IAM read specs for every location in a config, and a user who never uses
S3 need not install boto3 to validate a config that doesn't name it. The adapter class
itself is named as ``"module:Class"`` and imported only when a store is opened; a
missing SDK then raises a :class:`ConfigError` whose fix is :attr:`AdapterSpec.install`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

from .errors import ConfigError
from .interface import Capabilities
from .settings import AdapterSettings

if TYPE_CHECKING:
    from .interface import ReplicaAdapter

Cloud = Literal["aws", "azure", "gcp", "local"]


@dataclass(frozen=True)
class AdapterSpec:
    """A provider: its name, settings model, capabilities, cloud, and where its class lives.

    Subclass it to override :meth:`capabilities_for` (capabilities that depend on
    settings), :meth:`resource_name` (how a dataset's table/container/bucket is named)
    or :meth:`location_options` (options that depend on the location).
    """

    name: str
    """The provider part of ``provider:region`` in a config."""
    adapter: str
    """``"package.module:Class"`` of the :class:`~.interface.ReplicaAdapter`; imported lazily."""
    settings: type[AdapterSettings]
    """The pydantic model of ``providers.<name>`` in ``mcrepl.yaml``."""
    capabilities: Capabilities
    """What the store can do with default settings (see :meth:`capabilities_for`)."""
    cloud: Cloud
    """The cloud whose region catalogue (residency) and IAM the locations belong to."""
    install: str
    """What to install when the adapter's SDK is missing, e.g. ``pip install 'mcrepl[aws]'``."""
    summary: str = ""
    resource_kind: str = "store"
    """What one dataset is stored in: ``table``, ``container``, ``bucket`` (for messages)."""
    operations: str | None = None
    """``"module:NAME"`` of the adapter's IAM :class:`~.operations.OperationInventory`, if any."""
    local_service: str | None = None
    """The local-stack service (``mcrepl local up``) that emulates this store, if any."""
    fence: str | None = None
    """``"module:Class"`` of the store's :class:`~.fence.EpochFence` (the epoch record fenced
    writers check), if it keeps one; a location without one cannot be promoted with fencing."""
    extras: Mapping[str, Any] = field(default_factory=dict)

    # -- behaviour a subclass may override ----------------------------------------------

    def capabilities_for(self, options: Mapping[str, Any]) -> Capabilities:
        """The capabilities of a store opened with ``options`` (a target's options).

        The default is :attr:`capabilities`; adapters whose abilities depend on a setting
        (Cosmos DB's capture mode) override this, and their instances must agree.
        """
        return self.capabilities

    def resource_name(self, settings: AdapterSettings, base: str, region: str) -> str:
        """The table/container/bucket name for dataset ``base`` (namespace included) at ``region``."""
        return base

    def location_options(self, options: dict[str, Any], region: str, namespace: str) -> dict[str, Any]:
        """Options for one location, from the provider's dumped settings plus ``endpoint``/``local``."""
        return options

    # -- loading --------------------------------------------------------------------------

    def load(self) -> type["ReplicaAdapter"]:
        """The adapter class, importing its module (and so its SDK) now.

        A missing SDK raises :class:`ConfigError` naming the package and :attr:`install`.
        """
        module_name, _, cls_name = self.adapter.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
                raise                              # the adapter module itself is missing: a packaging bug
            raise ConfigError(f"the {self.name} adapter needs a package that is not installed ({exc.name})",
                              fix=self.install) from exc
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise ConfigError(f"the {self.name} adapter names {self.adapter!r}, which does not exist",
                              fix="reinstall the distribution that provides it")
        return cls  # type: ignore[no-any-return]

    def load_fence(self) -> Any:
        """The store's epoch-record class, importing its SDK now (``ConfigError`` when it keeps none)."""
        if not self.fence:
            raise ConfigError(f"provider {self.name!r} keeps no epoch record, so writers there cannot be fenced",
                              fix="promote a location whose store keeps one (see 'mcrepl adapters show')")
        self.load()                                         # the same SDK check and install hint
        module_name, _, cls_name = self.fence.partition(":")
        return getattr(importlib.import_module(module_name), cls_name)

    def inventory(self) -> Any:
        """The IAM operation inventory (``None`` when the adapter declares none)."""
        if not self.operations:
            return None
        module_name, _, attr = self.operations.partition(":")
        return getattr(importlib.import_module(module_name), attr)


__all__ = ["AdapterSpec", "Cloud"]
