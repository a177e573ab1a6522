"""mcrepl's adapter contract suite and test helpers, shipped for any adapter's tests (``mcrepl.testing``).

* :mod:`.contract` — :class:`AdapterContract` and :class:`ChainContract`: subclass, override
  the ``open_store`` (or ``chain``) fixture, run pytest (needs the ``test`` extra: pytest,
  hypothesis);
* :mod:`.records` — record builders and hypothesis strategies of canonical values;
* :mod:`.seeding` — :class:`NativeWriter`, writes as an application makes them (no pytest
  needed: ``mcrepl local seed`` and the drills use it).

Importing this package imports neither pytest nor hypothesis; the names below load them
on first use.
"""

from typing import TYPE_CHECKING, Any

from .seeding import NativeWriter, native_writer

if TYPE_CHECKING:
    from .contract import BAD_INPUTS, AdapterContract, ChainContract, StoreFactory, dropping


def __getattr__(name: str) -> Any:
    if name in ("AdapterContract", "BAD_INPUTS", "ChainContract", "StoreFactory", "dropping"):
        from . import contract
        return getattr(contract, name)
    raise AttributeError(name)


__all__ = ["AdapterContract", "BAD_INPUTS", "ChainContract", "NativeWriter", "StoreFactory", "dropping",
           "native_writer"]
