"""Verify: find divergence between replicas fast and report it, never field values.

The library API the CLI and the failover drills share::

    report = verify_dataset(config, "customers", local_endpoints=eps, router=router_for(config))

Repairs are not made here: they go through the sync engine (``SyncEngine.repair`` and the
anti-entropy of a pass, :mod:`mcrepl.orchestrator.sync.antientropy`), so every repair
write takes the one policy-routed, conditional, audited path every other write takes.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from functools import partial
from itertools import zip_longest
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import ConfigError, Digest, ReplicaAdapter
from mcrepl.adapters.base.digest_ranges import DigestRange, list_part, ranges_of
from mcrepl.adapters.base.reserved import is_reserved
from mcrepl.orchestrator.config import McreplConfig, VerifyThresholds
from mcrepl.policies.routing import RecordRouter

from .alerts import breaches, send_alert
from .compare import Divergence, DivergenceKind, diff
from .merkle import DigestIndex
from .policy import apply_policy
from .report import PairReport, VerifyReport

Progress = Callable[[str, int], None]
"""Called with (replica, digests read since the last call) while listings stream."""


def open_dataset_adapters(config: McreplConfig, dataset: str, replicas: Sequence[str] | None = None, *,
                          local_endpoints: Mapping[str, str] | None = None, namespace: str = "",
                          stack: ExitStack) -> dict[str, ReplicaAdapter]:
    """Open adapters for ``replicas`` (default: primary then every replica), closed by ``stack``."""
    ds = config.datasets.get(dataset)
    if ds is None:
        raise ConfigError(f"no dataset {dataset!r}", path="datasets", fix=f"use one of {', '.join(config.datasets)}")
    names = list(replicas) if replicas else [r.at for r in ds.locations]
    adapters = {}
    for name in names:
        adapter = open_adapter(config.target(dataset, name, local_endpoints, namespace))
        stack.callback(adapter.close)
        adapters[name] = adapter
    return adapters


Job = tuple[str, DigestRange | None]
"""One listing a verify makes: a location and one of its ranges (``None``: the whole location)."""

Listing = Callable[[Sequence[Job]], Iterator[tuple[str, Iterable[Digest]]]]
"""Runs listing jobs, yielding ``(location, digests)`` as each finishes (the sync engine's: digest
units on its executor, :func:`mcrepl.orchestrator.sync.workers.digest_listing`); raises when one fails."""

#: ranges listed at once by this process's own threads (no ``listing`` given)
LIST_THREADS = 8


def without_reserved(digests: Iterable[Digest]) -> Iterator[Digest]:
    """``digests`` without mcrepl's reserved range (heartbeats are not user data: they are
    never compared, counted or repaired)."""
    return (d for d in digests if not is_reserved(d.key_id))


def user_digests(adapter: ReplicaAdapter) -> Iterator[Digest]:
    """The adapter's digests of user data (see :func:`without_reserved`)."""
    return without_reserved(adapter.list_digests())


def listing_jobs(adapters: Mapping[str, ReplicaAdapter]) -> list[Job]:
    """Every (location, range) to list, interleaved so that every location moves at once."""
    per_location = [[(name, part) for part in ranges_of(adapter)] for name, adapter in adapters.items()]
    return [job for row in zip_longest(*per_location) for job in row if job is not None]


def compare_adapters(dataset: str, adapters: Mapping[str, ReplicaAdapter], *,
                     progress: Progress | None = None, sample_size: int = 20,
                     listing: Listing | None = None) -> VerifyReport:
    """Compare every adapter with the first (the reference) by range digests.

    Each location is listed in its ranges (:mod:`mcrepl.adapters.base.digest_ranges`; one
    whole listing for a store without them), several at once — by this process's threads,
    or as digest units on an executor when ``listing`` is given — and every range's digests
    go into the on-disk index as it finishes, so memory holds the ranges in flight, never
    the dataset. A range whose listing fails fails the comparison: no report, never a clean one.
    """
    names = list(adapters)
    if len(names) < 2:
        raise ConfigError("verify needs at least two replicas to compare", path="--replicas",
                          fix="name two or more replicas, e.g. --replicas dynamodb:eu-west-1,gcs:europe-west1")
    start = time.monotonic()
    jobs = listing_jobs(adapters)
    with DigestIndex() as index:
        for name in names:
            index.start(name)

        def load(name: str, digests: Iterable[Digest]) -> None:
            index.load(name, without_reserved(digests), on_progress=partial(progress, name) if progress else None)
        if listing is not None:
            for name, digests in listing(jobs):
                load(name, digests)
        else:
            _list_on_threads(adapters, jobs, load)
        pairs = []
        for other in names[1:]:
            found, compared = diff(index, names[0], other)
            pairs.append(PairReport(names[0], other, compared, found))
        counts = dict(index.counts)
    return VerifyReport(dataset, names[0], counts, pairs, time.monotonic() - start, sample_size=sample_size)


def _list_on_threads(adapters: Mapping[str, ReplicaAdapter], jobs: Sequence[Job],
                     load: Callable[[str, Iterable[Digest]], None]) -> None:
    """Stream every job into the index from a thread each (up to :data:`LIST_THREADS` at once)."""
    def run(job: Job) -> None:
        name, part = job
        try:
            load(name, list_part(adapters[name], part))
        except Exception as exc:
            exc.add_note(f"while listing {part or 'everything'} at {name}")
            raise
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), LIST_THREADS)),
                            thread_name_prefix="verify-list") as pool:
        futures = [pool.submit(run, job) for job in jobs]
        try:
            for done in as_completed(futures):
                done.result()
        finally:
            for f in futures:
                f.cancel()


def verify_dataset(config: McreplConfig, dataset: str, replicas: Sequence[str] | None = None, *,
                   local_endpoints: Mapping[str, str] | None = None, namespace: str = "",
                   progress: Progress | None = None, alert: bool = True,
                   router: RecordRouter | None = None, listing: Listing | None = None) -> VerifyReport:
    """Verify one dataset, evaluate its thresholds and, on a breach, call the alert hook.

    With a ``router`` the residency policy is applied: records it keeps out of a replica
    are counted as withheld there, not reported missing (:mod:`.policy`). ``listing`` reads
    the digests instead of this process's threads (the sync engine's executors: digest units
    on worker processes or Dask, see :func:`mcrepl.orchestrator.sync.workers.digest_listing`).
    """
    with ExitStack() as stack:
        adapters = open_dataset_adapters(config, dataset, replicas, local_endpoints=local_endpoints,
                                         namespace=namespace, stack=stack)
        report = compare_adapters(dataset, adapters, progress=progress, sample_size=config.verify.sample_size,
                                  listing=listing)
        if router is not None:
            apply_policy(report, adapters, router)
    report.breaches = breaches(report, thresholds_for(config, dataset))
    if report.breaches and alert:
        send_alert(report, config.verify.alert)
    return report


def thresholds_for(config: McreplConfig, dataset: str) -> VerifyThresholds:
    """The global thresholds with the fields a dataset sets itself overriding them, one by one."""
    own = config.datasets[dataset].verify
    if own is None:
        return config.verify.thresholds
    return config.verify.thresholds.model_copy(update={f: getattr(own, f) for f in own.model_fields_set})


def iter_divergences(report: VerifyReport) -> Iterator[Divergence]:
    """Every divergence in every pair of a report."""
    for pair in report.pairs:
        yield from pair.divergences


__all__ = ["Divergence", "DivergenceKind", "Job", "Listing", "listing_jobs", "PairReport", "VerifyReport", "apply_policy", "compare_adapters",
           "iter_divergences", "open_dataset_adapters", "user_digests", "verify_dataset", "without_reserved"]
