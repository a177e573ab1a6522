"""``mcrepl.yaml``: one file drives sync, validate, Pulumi and drills.

Validated by pydantic; every error names the file, the path inside it and the fix.
The model keeps provider connection settings apart from datasets so a dataset says only
*where* it lives (``provider:region``) and the providers block says *how to reach* it.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcrepl.adapters import adapter_spec, providers
from mcrepl.adapters.base import Capabilities, ConfigError, KeyAttribute, KeySchema, ReplicaTarget
from mcrepl.adapters.base.naming import bucket_name  # noqa: F401 - re-exported (tests, callers of the config module)
from mcrepl.adapters.base.settings import USERINFO as _USERINFO
from mcrepl.adapters.base.settings import AdapterSettings, credential_problem
from mcrepl.adapters.cosmos.settings import CosmosSettings
from mcrepl.adapters.dynamodb.settings import DynamoDBSettings
from mcrepl.adapters.gcs.settings import GCSSettings
from mcrepl.policies.model import OrchestratorSpec, Policies, with_paths_from
from mcrepl.orchestrator.provisioning import Provisioning
from mcrepl.orchestrator.yaml_model import LocatedValueError, read_mapping, validate

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int | float) -> timedelta:
    """``"30s"``, ``"5m"``, ``"7d"`` or plain seconds → :class:`timedelta`."""
    if isinstance(text, (int, float)):
        return timedelta(seconds=float(text))
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 7d")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


Duration = timedelta

def known_providers() -> tuple[str, ...]:
    """Every provider a location may name: those registered under the ``mcrepl.adapters`` entry points."""
    return tuple(providers())


def credential_home(provider: str) -> str:
    """Where ``provider``'s credentials belong instead of the config file (its settings model says)."""
    try:
        return adapter_spec(provider).settings.credential_home
    except ConfigError:
        return "an environment variable of the process that needs it"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_timedelta="float")

    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, v: Any, info: Any) -> Any:
        field = cls.model_fields.get(info.field_name)
        if field is not None and field.annotation in (timedelta, timedelta | None) and v is not None \
                and not isinstance(v, timedelta):
            return parse_duration(v)
        return v


class Providers(BaseModel):
    """``providers:``: one block per provider, each validated by the model its adapter owns.

    mcrepl's own three are typed fields (``config.providers.cosmos.database``); any other
    registered provider (``s3``, a third party's) is validated through the registry and
    read with :meth:`settings_for`. An unknown block is refused with the known names.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    dynamodb: DynamoDBSettings = DynamoDBSettings()
    cosmos: CosmosSettings = CosmosSettings()
    gcs: GCSSettings = GCSSettings()

    @model_validator(mode="before")
    @classmethod
    def _registered_blocks(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            return raw
        out = dict(raw)
        for name, block in raw.items():
            if name in cls.model_fields:
                continue
            if name not in providers():
                raise LocatedValueError(f"unknown provider {name!r}", at=str(name),
                                        fix=f"use one of {', '.join(known_providers())}, or install the "
                                            "distribution that provides it")
            out[name] = adapter_spec(name).settings.model_validate(block if block is not None else {})
        return out

    def settings_for(self, provider: str) -> AdapterSettings:
        """The validated settings block of ``provider`` (its model's defaults when absent)."""
        found = getattr(self, provider, None) if provider in type(self).model_fields else \
            (self.model_extra or {}).get(provider)
        return found if isinstance(found, AdapterSettings) else adapter_spec(provider).settings()


class KeyField(_Strict):
    name: str
    type: Literal["S", "N", "B"] = "S"


class KeySpec(_Strict):
    """``partition: customer_id`` or ``partition: {name: id, type: N}``, optional ``sort``."""

    partition: KeyField
    sort: KeyField | None = None

    @field_validator("partition", "sort", mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    def key_schema(self) -> KeySchema:
        return KeySchema(KeyAttribute(self.partition.name, self.partition.type),
                         KeyAttribute(self.sort.name, self.sort.type) if self.sort else None)


class ReplicaRef(_Strict):
    """A replica location ``provider:region`` with optional resource-name and endpoint overrides.

    A per-location endpoint lets two regions of one provider be reached separately (each
    behind its own fault proxy in drills, or a regional endpoint in real clouds).
    """

    at: str
    resource: str | None = None
    endpoint: str | None = None       # overrides providers.<provider>.endpoint for this location only
    kms_key: str | None = None        # CMK: KMS key ARN, Key Vault key URI or GCP KMS key name (pulumi/)

    @field_validator("at")
    @classmethod
    def _provider_region(cls, v: str) -> str:
        provider, sep, region = v.partition(":")
        if not sep or not region:
            raise ValueError(f"{v!r} is not provider:region; write e.g. dynamodb:eu-west-1, "
                             "cosmos:westeurope or gcs:europe-west1")
        if provider not in known_providers():
            raise ValueError(f"unknown provider {provider!r} in {v!r}; use one of {', '.join(known_providers())}")
        return v

    @model_validator(mode="after")
    def _no_credentials(self) -> "ReplicaRef":
        problem = credential_problem(self.endpoint, credential_home(self.provider)) if self.endpoint else None
        if problem is not None:
            problem.at = "endpoint"
            raise problem
        return self

    @property
    def provider(self) -> str:
        return self.at.split(":", 1)[0]

    @property
    def region(self) -> str:
        return self.at.split(":", 1)[1]


class Schedule(_Strict):
    """When the dataset's sync job runs: ``every: 30s`` or ``cron: "*/5 * * * *"``."""

    every: timedelta | None = None
    cron: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "Schedule":
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' (e.g. 30s) or 'cron' (e.g. '*/5 * * * *')")
        if self.cron is not None:
            # the parser `sync --schedule` uses: what passes here runs there
            from apscheduler.triggers.cron import CronTrigger
            try:
                CronTrigger.from_crontab(self.cron, timezone="UTC")
            except ValueError as exc:
                raise LocatedValueError(f"{self.cron!r} is not a valid cron expression: {exc}", at="cron",
                                        fix="write 5 fields: minute hour day month weekday, e.g. "
                                            "'*/5 * * * *'") from None
        return self


class ConflictSpec(_Strict):
    """``resolver: lww`` (default) or ``resolver: merge`` with ``function: module:callable``."""

    resolver: Literal["lww", "merge"] = "lww"
    function: str | None = None

    @model_validator(mode="after")
    def _needs_function(self) -> "ConflictSpec":
        if self.resolver == "merge" and not self.function:
            raise ValueError("resolver 'merge' needs 'function: package.module:callable'")
        return self


class DatasetSync(_Strict):
    """How a dataset replicates: ``mode: scheduled`` (passes on ``schedule``) or ``mode: follow``.

    Follow mode keeps a follower on the primary's change log and applies continuously
    (``mcrepl sync --schedule`` follows these datasets and schedules the others;
    ``mcrepl sync --follow`` follows every dataset). ``heartbeat`` is how often a heartbeat
    record is written to the primary by a follower or by ``sync --schedule`` (``null``:
    never) so lag is measured end to end even when applications write nothing; ``lag_objective`` is the p99 heartbeat lag
    the dataset promises (its RPO objective): ``status`` and the alert rules hold it to that.
    """

    mode: Literal["scheduled", "follow"] = "scheduled"
    heartbeat: timedelta | None = timedelta(seconds=1)
    lag_objective: timedelta | None = None

    @model_validator(mode="after")
    def _positive(self) -> "DatasetSync":
        if self.heartbeat is not None and self.heartbeat.total_seconds() < 0.05:
            raise LocatedValueError("is shorter than 50ms", at="heartbeat",
                                    fix="write an interval such as 1s (or null to write no heartbeats)")
        if self.lag_objective is not None and self.lag_objective.total_seconds() <= 0:
            raise LocatedValueError("must be positive", at="lag_objective", fix="write e.g. 1s")
        return self


class Dataset(_Strict):
    """One replicated dataset: where its primary and replicas live and how it syncs."""

    kind: Literal["document", "blob"] = "document"
    key: KeySpec | None = None
    primary: ReplicaRef
    replicas: list[ReplicaRef] = Field(min_length=1)
    schedule: Schedule = Schedule(every=timedelta(seconds=60))
    sync: DatasetSync = DatasetSync()
    conflict: ConflictSpec = ConflictSpec()
    classification: str = "internal"
    sensitive_fields: list[str] = Field(default_factory=list)
    fields: dict[str, str] = Field(default_factory=dict, description="field → classification")
    verify: VerifyThresholds | None = None
    anti_entropy: AntiEntropy | None = None

    @field_validator("primary", mode="before")
    @classmethod
    def _primary_short(cls, v: Any) -> Any:
        return {"at": v} if isinstance(v, str) else v

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas_short(cls, v: Any) -> Any:
        return [{"at": r} if isinstance(r, str) else r for r in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _check(self) -> "Dataset":
        if self.kind == "document" and self.key is None:
            raise ValueError("a document dataset needs 'key: {partition: FIELD}'")
        first: dict[str, int] = {}
        for i, r in enumerate(self.replicas):
            if r.at == self.primary.at:
                raise LocatedValueError(f"{r.at} is the primary and is also listed as a replica",
                                        at=f"replicas[{i}]",
                                        fix=f"remove replicas[{i}]: the primary is never its own replica")
            if r.at in first:
                raise LocatedValueError(f"{r.at} is listed twice, as replicas[{first[r.at]}] and replicas[{i}]",
                                        at=f"replicas[{i}]", fix=f"remove replicas[{i}]")
            first[r.at] = i
        if self.sync.mode == "follow" and self.sync.heartbeat is not None and self.key is not None \
                and self.key.partition.type != "S":
            raise LocatedValueError("heartbeats need a string partition key (their reserved key is "
                                    "'_mcrepl:heartbeat'), and this dataset's partition key is not a string",
                                    at="sync.heartbeat", fix="set sync.heartbeat: null for this dataset")
        return self

    def key_schema(self) -> KeySchema:
        return self.key.key_schema() if self.key else KeySchema(KeyAttribute("name", "S"))

    @property
    def locations(self) -> list[ReplicaRef]:
        return [self.primary, *self.replicas]


class VerifyThresholds(_Strict):
    """How much divergence ``verify`` tolerates before it exits non-zero and alerts.

    ``max_divergent`` counts distinct differing keys; ``max_ratio`` is that count over the
    reference replica's key count. Either one breached is a breach.
    """

    max_divergent: int | None = Field(0, ge=0)
    max_ratio: float | None = Field(None, ge=0, le=1)


class AlertHook(_Strict):
    """Where a threshold breach is reported: a command (report JSON on stdin) and/or a webhook (POST)."""

    command: str | None = None
    webhook: str | None = None

    @field_validator("webhook")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http(s) URL")
        if v is not None and _USERINFO.match(v):
            raise LocatedValueError("holds credentials in the URL (user:password@host)",
                                    fix="use a webhook URL without user and password (a receiver that needs "
                                        "auth can be reached through 'command:' with the secret in its own "
                                        "environment)")
        return v


class VerifySettings(_Strict):
    """Defaults for ``mcrepl verify``; a dataset's own ``verify:`` thresholds override them."""

    thresholds: VerifyThresholds = VerifyThresholds()
    alert: AlertHook = AlertHook()
    sample_size: int = Field(20, ge=0, le=10_000)


class AntiEntropy(_Strict):
    """How often copies are compared and how much a comparison may repair on its own.

    ``every`` runs a verify of each dataset on that interval in ``sync --schedule`` mode
    (``null`` turns it off; ``sync --once --verify`` runs one at the end of the pass). When
    at most ``repair_max`` keys differ, they are repaired through the lanes and compared
    again; above that nothing is written and the dataset is reported not converged.
    """

    every: timedelta | None = timedelta(hours=1)
    repair_max: int = Field(1000, ge=0)


class ExecutorSettings(_Strict):
    """Where a pass's work units run (``sync.executor``; ``--executor``/``--workers``/``--scheduler``).

    ``threads`` (default) runs units in the orchestrator's process; ``processes`` on
    ``workers`` spawned processes; ``dask`` on Dask distributed — a local cluster of
    ``workers`` processes, or the existing cluster at ``scheduler`` (``tcp://HOST:8786``),
    whose workers need mcrepl installed and reach the stores themselves.
    ``threads_per_worker`` units run at once per worker; ``max_in_flight_units`` caps the
    write units one lane keeps in flight (the adaptive window grows up to it and halves
    when a store throttles).

    .. code-block:: yaml

        sync:
          executor: {kind: dask, workers: 4, scheduler: "tcp://10.0.0.5:8786"}
    """

    kind: Literal["threads", "processes", "dask"] = "threads"
    workers: int = Field(4, ge=1, le=1024)
    threads_per_worker: int = Field(8, ge=1, le=256)
    scheduler: str | None = None
    max_in_flight_units: int = Field(8, ge=1, le=256)

    @field_validator("scheduler")
    @classmethod
    def _scheduler_address(cls, v: str | None) -> str | None:
        if v is not None and "://" not in v:
            raise ValueError("scheduler must be an address such as tcp://HOST:8786")
        return v


class FollowSettings(_Strict):
    """Tuning of follow mode (``mcrepl sync --follow``), shared by every followed dataset.

    A lane applies as soon as ``sync.batch_size`` changes are pending or the oldest pending
    one has waited ``max_delay``, whichever comes first; capture asks the primary for more
    every ``poll_interval`` once it has read everything. When the slowest lane that is
    still answering is ``max_backlog`` changes behind, capture pauses (the primary's change
    log keeps the changes) until it catches up: the log on disk stays bounded. A lane whose
    store does not answer is left out of that count, so it never slows the others.
    On SIGTERM lanes keep applying what was captured for up to ``drain_timeout``.
    """

    max_delay: timedelta = timedelta(milliseconds=20)
    poll_interval: timedelta = timedelta(milliseconds=100)
    max_backlog: int = Field(20_000, ge=1)
    drain_timeout: timedelta = timedelta(seconds=10)
    lag_window: timedelta = timedelta(minutes=5)


class SyncSettings(_Strict):
    """Tuning shared by every sync job."""

    batch_size: int = Field(200, ge=1, le=1000)
    max_in_flight: int = Field(4, ge=1, le=64)
    deadline: timedelta = timedelta(minutes=10)
    retry_deadline: timedelta = timedelta(seconds=60)
    tombstone_retention: timedelta = timedelta(days=7)
    max_replica_outage: timedelta = timedelta(days=3)
    #: how long after its demotion a former primary's change log is still read for late writes
    late_write_watch: timedelta = timedelta(hours=24)
    breaker_failures: int = Field(5, ge=1)
    breaker_reset: timedelta = timedelta(seconds=30)
    anti_entropy: AntiEntropy = AntiEntropy()
    executor: ExecutorSettings = ExecutorSettings()
    follow: FollowSettings = FollowSettings()

    @model_validator(mode="after")
    def _retention_outlives_outage(self) -> "SyncSettings":
        if self.tombstone_retention <= self.max_replica_outage:
            raise ValueError("tombstone_retention must be longer than max_replica_outage, or a "
                             "replica that comes back after a long outage could resurrect deletes")
        return self


class FailoverSettings(_Strict):
    """Safeguards of ``mcrepl failover`` and the margins ``mcrepl doctor`` holds the stores to.

    A planned promotion (and a failback) refuses a target whose lane is further behind
    than ``max_lag_changes`` logged changes or ``max_lag`` (age of the oldest change it has
    not applied) unless ``--force``: draining that much is the outage the operator is
    trying to end. ``null`` turns a bound off. ``max_clock_skew`` is how far this host's
    clock may be from a store's before ``doctor`` fails (half of it warns): tombstone
    purges, breaker timers and the lag and RPO figures read wall clocks. ``verify_max_age``:
    ``doctor`` warns when the copies were last compared longer ago.
    """

    max_lag_changes: int | None = Field(10_000, ge=0)
    max_lag: timedelta | None = timedelta(minutes=15)
    max_clock_skew: timedelta = timedelta(seconds=5)
    verify_max_age: timedelta = timedelta(hours=24)


class McreplConfig(_Strict):
    """The whole ``mcrepl.yaml``."""

    version: Literal[1] = 1
    profile: Literal["local", "cloud"] = "cloud"
    state_dir: str = ".mcrepl"
    providers: Providers = Providers()
    datasets: dict[str, Dataset] = Field(min_length=1)
    sync: SyncSettings = SyncSettings()
    policies: Policies = Policies()
    orchestrator: OrchestratorSpec = OrchestratorSpec()   # where it runs (policies: residency.capture-log)
    verify: VerifySettings = VerifySettings()
    failover: FailoverSettings = FailoverSettings()
    provisioning: Provisioning = Provisioning()   # read only by pulumi/ (orchestrator/provisioning.py)

    @model_validator(mode="after")
    def _cosmos_locations_apart(self) -> "McreplConfig":
        if self.profile == "local":
            return self            # one emulator: a database per region keeps them apart
        for name, ds in self.datasets.items():
            cosmos = [r for r in ds.locations if r.provider == "cosmos"]
            places = {(r.endpoint or self.providers.cosmos.endpoint, r.resource or name) for r in cosmos}
            if len(places) < len(cosmos):
                raise ValueError(f"dataset {name!r} has {len(cosmos)} Cosmos DB locations that resolve to the "
                                 "same account, database and container; give each its own 'endpoint' (one "
                                 "account per region; a multi-region account replicates itself) or 'resource'")
        return self

    @field_validator("datasets")
    @classmethod
    def _names(cls, v: dict[str, Dataset]) -> dict[str, Dataset]:
        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9-]{1,40}", name):
                raise ValueError(f"dataset name {name!r} must be 2-41 lowercase letters, digits or "
                                 "'-', starting with a letter (it becomes table, container and "
                                 "bucket names)")
        return v

    # -- resolution into adapter targets ------------------------------------------------

    def target(self, dataset: str, location: str, local_endpoints: Mapping[str, str] | None = None,
               namespace: str = "") -> ReplicaTarget:
        """The adapter target for ``dataset`` at ``location`` (``provider:region``)."""
        ds = self.datasets[dataset]
        ref = next((r for r in ds.locations if r.at == location), None)
        if ref is None:
            raise ConfigError(f"dataset {dataset!r} has no replica {location!r}",
                              path=f"datasets.{dataset}",
                              fix=f"use one of {', '.join(r.at for r in ds.locations)}")
        return ReplicaTarget(replica=ref.at, provider=ref.provider, region=ref.region,
                             dataset=dataset, kind=ds.kind, key_schema=ds.key_schema(),
                             resource=ref.resource or self._resource_name(ref, dataset, namespace),
                             options=self._options(ref, local_endpoints, namespace))

    def targets(self, dataset: str, local_endpoints: Mapping[str, str] | None = None,
                namespace: str = "") -> list[ReplicaTarget]:
        """Primary first, then each replica."""
        return [self.target(dataset, r.at, local_endpoints, namespace)
                for r in self.datasets[dataset].locations]

    def _resource_name(self, ref: ReplicaRef, dataset: str, namespace: str) -> str:
        """The table/container/bucket name, as the provider's adapter spec names it."""
        return adapter_spec(ref.provider).resource_name(self.providers.settings_for(ref.provider),
                                                        f"{namespace}{dataset}", ref.region)

    def _endpoint(self, ref: ReplicaRef) -> str | None:
        """The location's endpoint: its own, else the environment override, else the provider's."""
        provider = self.providers.settings_for(ref.provider).endpoint
        return ref.endpoint or os.environ.get(f"MCREPL_{ref.provider.upper()}_ENDPOINT") or provider

    def capabilities_at(self, ref: ReplicaRef) -> Capabilities:
        """What the store at ``ref`` can do, from its adapter's spec and the location's settings.

        Opens nothing and imports no SDK: ``validate`` acts on it before any connection.
        """
        opts = self.providers.settings_for(ref.provider).options()
        endpoint = self._endpoint(ref)
        if endpoint == "local" or (self.profile == "local" and endpoint and is_loopback_url(endpoint)):
            opts["local"] = True
        return adapter_spec(ref.provider).capabilities_for(opts)

    def uses_local_stack(self) -> bool:
        """Whether any location resolves to ``endpoint: local`` (the stack of ``mcrepl local up``)."""
        return any(self._endpoint(ref) == "local" for ds in self.datasets.values() for ref in ds.locations)

    def _options(self, ref: ReplicaRef, local: Mapping[str, str] | None, namespace: str) -> dict[str, Any]:
        opts = self.providers.settings_for(ref.provider).options()
        endpoint = self._endpoint(ref)
        if endpoint == "local":
            if not local or ref.provider not in local:
                where = "the location's endpoint" if ref.endpoint else f"providers.{ref.provider}.endpoint"
                raise ConfigError(f"{where} is 'local' but the local stack is not running (or has no "
                                  f"{ref.provider} service)", path=where if not ref.endpoint else ref.at,
                                  fix="run 'mcrepl local up' first")
            endpoint = local[ref.provider]
            opts["local"] = True
        elif self.profile == "local" and endpoint and is_loopback_url(endpoint):
            opts["local"] = True          # an emulator at an explicit loopback address
        opts["endpoint"] = endpoint
        # every client opened for the location gives up when sync.retry_deadline says, not only
        # the sync engine's: fencing, doctor, verify and failover wait on an unreachable store too
        opts["retry_deadline_s"] = self.sync.retry_deadline.total_seconds()
        return adapter_spec(ref.provider).location_options(opts, ref.region, namespace)


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on 127.0.0.0/8, ::1 or localhost: the only place emulators run."""
    host = urlparse(url).hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def load_config(path: str | Path) -> McreplConfig:
    """Read and validate ``path``; every problem is listed as ``file:path: message (fix: …)``.

    A relative ``state_dir``, ``policies.encryption.keyring.path`` and
    ``policies.encryption.datakeys`` are made absolute against the config file's folder.
    """
    path = Path(path)
    raw = read_mapping(path, example="examples/mcrepl.yaml", top_keys="datasets:, providers:, …")
    config = validate(McreplConfig, raw, path, docs="docs/configuration.md")
    # a relative state_dir belongs to the config file, not to wherever the command runs
    if not Path(config.state_dir).is_absolute():
        config = config.model_copy(update={"state_dir": str((path.parent / config.state_dir).resolve())})
    return config.model_copy(update={"policies": with_paths_from(config.policies, path.parent.resolve())})
