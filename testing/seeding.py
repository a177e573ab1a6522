"""Seeding a store as an application would: not a production role, so it lives with the tests.

The contract suite, ``mcrepl local seed``, the demo and the drills write records the way
an application does — plain writes without mcrepl metadata, physical deletes — so that
capture has native changes to find. An adapter that can do this implements
:class:`NativeWriter` beside its production roles; one that cannot (a read-only source,
a store mcrepl only writes to) simply doesn't, and the suite's tests that need seeding
are skipped for it with that reason.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from mcrepl.adapters.base import ConfigError, Record, RecordKey


@runtime_checkable
class NativeWriter(Protocol):
    """Writes and deletes as an application makes them, without mcrepl metadata."""

    def write_native(self, records: Sequence[Record]) -> None:
        """Plain writes of ``records``' bodies (their ``meta`` is ignored); capture must then
        report them with ``meta=None``. Idempotent; bounded by the retry deadline per request."""

    def delete_native(self, keys: Sequence[RecordKey]) -> None:
        """Physical deletes, no tombstone; a missing key is fine. Idempotent."""


def native_writer(adapter: object) -> NativeWriter:
    """``adapter`` as a :class:`NativeWriter`, or a :class:`ConfigError` saying it cannot seed."""
    if not isinstance(adapter, NativeWriter):
        provider = getattr(getattr(adapter, "target", None), "provider", type(adapter).__name__)
        raise ConfigError(f"the {provider} adapter cannot write as an application would (it does not "
                          "implement mcrepl.testing.seeding.NativeWriter)",
                          fix="seed this store with the application's own tools")
    return adapter


__all__ = ["NativeWriter", "native_writer"]
