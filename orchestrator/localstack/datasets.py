"""Seed a dataset's primary with sample records and peek at every location of it.

What ``mcrepl local seed`` and ``mcrepl local peek`` run. Both go through the adapters
(``open_adapter``), so they work for any provider and any endpoint the config names;
``endpoint: local`` resolves to the stack recorded by ``mcrepl local up``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import ConfigError, McreplError, NotFoundError, ReplicaTarget
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.sample import sample_records
from mcrepl.orchestrator.verify import user_digests
from mcrepl.testing.seeding import native_writer

from .lifecycle import read_endpoints

SEED_BATCH = 100


def dataset_targets(config: McreplConfig, dataset: str) -> list[ReplicaTarget]:
    """The dataset's targets, primary first, with ``endpoint: local`` resolved to the
    stack recorded by ``mcrepl local up`` (a clear error says to start it if it is not)."""
    if dataset not in config.datasets:
        raise ConfigError(f"no dataset named {dataset!r}", path="datasets",
                          fix=f"use one of {', '.join(sorted(config.datasets))}")
    return config.targets(dataset, local_endpoints=read_endpoints())


def seed_primary(config: McreplConfig, dataset: str, count: int, seed: int = 0,
                 on_progress: Callable[[int], None] | None = None) -> ReplicaTarget:
    """Write ``count`` sample records natively (no mcrepl metadata) to the primary.

    The primary's table/container/bucket is created first if missing. Records are those
    of :func:`sample_records` (deterministic for ``seed``); ``on_progress`` gets the size
    of each written batch.
    """
    target = dataset_targets(config, dataset)[0]
    ds = config.datasets[dataset]
    with open_adapter(target) as adapter:
        adapter.ensure_ready()
        for start in range(0, count, SEED_BATCH):
            batch = sample_records(ds.key_schema(), min(SEED_BATCH, count - start), seed,
                                   start=start, kind=ds.kind)
            native_writer(adapter).write_native(batch)
            if on_progress:
                on_progress(len(batch))
    return target


def create_resources(config: McreplConfig, datasets: list[str],
                     on_created: Callable[[ReplicaTarget], None] | None = None) -> list[ReplicaTarget]:
    """Create the table, container or bucket of every location of ``datasets``, with no data.

    For users who bring their own data: ``local seed`` writes samples, this only makes
    the places. Only local-stack locations are touched: a location that resolves to a
    real cloud endpoint is refused before anything is created (provision those with the
    Pulumi program). Creating what exists already is a no-op.
    """
    targets = [t for name in datasets for t in dataset_targets(config, name)]
    remote = [t.replica for t in targets if not t.options.get("local")]
    if remote:
        raise ConfigError(f"{', '.join(sorted(set(remote)))} is not on the local stack; 'local create' makes "
                          "resources on the emulators only", path="providers",
                          fix="set endpoint: local (or a loopback emulator URL with profile: local), or "
                              "provision real clouds with the Pulumi program in pulumi/")
    for target in targets:
        with open_adapter(target) as adapter:
            adapter.ensure_ready()
        if on_created:
            on_created(target)
    return targets


@dataclass(frozen=True)
class PeekRow:
    """One record as a location holds it: key, mcrepl version (None: native), hash."""

    key: str
    version: str | None
    content_hash: str
    tombstone: bool
    readable: bool


@dataclass
class LocationPeek:
    """What one location of a dataset holds: its record count and the first few records."""

    replica: str
    resource: str
    count: int | None = None
    rows: list[PeekRow] = field(default_factory=list)
    missing: bool = False             # the table/container/bucket does not exist (yet)
    error: str | None = None


def peek_locations(config: McreplConfig, dataset: str, limit: int = 5) -> list[LocationPeek]:
    """Count every location's records and read back the first ``limit`` (by key).

    A location that cannot be read is reported with its error (``missing`` when its
    table/container/bucket does not exist yet, e.g. before the first sync) rather than
    stopping the others. Nothing is created or written.
    """
    result = []
    for target in dataset_targets(config, dataset):
        peek = LocationPeek(target.replica, target.resource)
        try:
            with open_adapter(target) as adapter:
                digests = sorted(user_digests(adapter), key=lambda d: d.key_id)
                peek.count = len(digests)
                schema = target.key_schema
                for digest in digests[:limit]:
                    record = adapter.read(schema.parse_id(digest.key_id))
                    peek.rows.append(PeekRow(digest.key_id, digest.version, digest.content_hash,
                                             digest.tombstone, record is not None))
        except NotFoundError as exc:
            peek.missing, peek.error = True, str(exc)
        except McreplError as exc:
            peek.error = str(exc)
        result.append(peek)
    return result
