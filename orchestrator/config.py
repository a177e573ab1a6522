"""``mcrepl.yaml``: one file drives sync, validate, Pulumi and drills.

Validated by pydantic; every error names the file, the path inside it and the fix.
The model keeps provider connection settings apart from datasets so a dataset says only
*where* it lives (``provider:region``) and the providers block says *how to reach* it.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcrepl.adapters.base import ConfigError, KeyAttribute, KeySchema, ReplicaTarget
from mcrepl.policies.model import OrchestratorSpec, Policies, with_paths_from
from mcrepl.orchestrator.provisioning import Provisioning
from mcrepl.orchestrator.yaml_model import LocatedValueError, read_mapping, validate

PROVIDERS = ("dynamodb", "cosmos", "gcs")
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

#: where each provider's credentials belong instead of the config file
CREDENTIAL_HOME = {
    "dynamodb": "the standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a named profile "
                "(providers.dynamodb.profile / AWS_PROFILE)",
    "cosmos": "the environment variable named by providers.cosmos.key_env (default MCREPL_COSMOS_KEY), "
              "or auth: aad",
    "gcs": "Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS=/path/to/key.json or "
           "'gcloud auth application-default login'",
}
_CONNECTION_STRING = re.compile(r"(?i)(^|;)\s*(AccountKey|SharedAccessKey|SharedAccessSignature|Password|"
                                r"AccountEndpoint|DefaultEndpointsProtocol)\s*=")


# scheme://anything-without-spaces@: urlparse misses a userinfo whose password holds a "/"
_USERINFO = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://[^\s@]*@")


def credential_problem(value: str, home: str) -> LocatedValueError | None:
    """Why ``value`` (an endpoint or URL from the config) carries a credential, or ``None``.

    The message never repeats the value: it is the secret.
    """
    if _CONNECTION_STRING.search(value):
        return LocatedValueError(
            "holds a connection string (with its account key); the config must name only the endpoint",
            fix=f"write just the account URL here (https://ACCOUNT.documents.azure.com:443/) and put the "
                f"key in {home}")
    if _USERINFO.match(value):
        return LocatedValueError("holds credentials in the URL (user:password@host)",
                                 fix=f"remove the user and password from the URL and put them in {home}")
    return None


def _check_endpoint(value: str | None, provider: str, key_env: str | None = None) -> str | None:
    if value is None:
        return value
    home = CREDENTIAL_HOME[provider]
    if key_env and provider == "cosmos":
        home = f"the environment variable {key_env} (providers.cosmos.key_env), or auth: aad"
    problem = credential_problem(value, home)
    if problem is not None:
        raise problem
    return value


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


class DynamoDBSettings(_Strict):
    """How to reach DynamoDB. ``endpoint: local`` means the stack from ``mcrepl local up``."""

    endpoint: str | None = None
    profile: str | None = None
    table_prefix: str = ""

    @field_validator("endpoint")
    @classmethod
    def _no_credentials(cls, v: str | None) -> str | None:
        return _check_endpoint(v, "dynamodb")


class CosmosSettings(_Strict):
    """How to reach Cosmos DB: by account key (from an env var) or by Entra ID (``aad``)."""

    endpoint: str | None = None
    auth: Literal["key", "aad"] = "key"
    key_env: str = "MCREPL_COSMOS_KEY"
    database: str = "mcrepl"
    #: capture by change feed ("on"), by `_ts` window query ("off"), or "auto": the feed
    #: except on the local emulator, which has no incremental change feed
    change_feed: Literal["auto", "on", "off"] = "auto"

    @model_validator(mode="after")
    def _no_credentials(self) -> "CosmosSettings":
        try:
            _check_endpoint(self.endpoint, "cosmos", self.key_env)
        except LocatedValueError as exc:
            exc.at = "endpoint"
            raise
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.key_env):
            raise LocatedValueError("is not an environment variable name (it names the variable that holds "
                                    "the key, never the key itself)", at="key_env",
                                    fix="write a variable name such as MCREPL_COSMOS_KEY and export the key in it")
        return self


class GCSSettings(_Strict):
    """How to reach Cloud Storage: ADC on real GCP, anonymous for the emulator."""

    endpoint: str | None = None
    project: str | None = None        # default: ADC's project on GCP, "mcrepl-local" on the emulator
    auth: Literal["adc", "anonymous"] = "adc"
    bucket_prefix: str = "mcrepl"

    @field_validator("endpoint")
    @classmethod
    def _no_credentials(cls, v: str | None) -> str | None:
        return _check_endpoint(v, "gcs")


class Providers(_Strict):
    dynamodb: DynamoDBSettings = DynamoDBSettings()
    cosmos: CosmosSettings = CosmosSettings()
    gcs: GCSSettings = GCSSettings()


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
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r} in {v!r}; use one of {', '.join(PROVIDERS)}")
        return v

    @model_validator(mode="after")
    def _no_credentials(self) -> "ReplicaRef":
        try:
            _check_endpoint(self.endpoint, self.provider)
        except LocatedValueError as exc:
            exc.at = "endpoint"
            raise
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
    record is written to the primary in follow mode (``null``: never) so lag is measured end
    to end even when applications write nothing; ``lag_objective`` is the p99 heartbeat lag
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
    breaker_failures: int = Field(5, ge=1)
    breaker_reset: timedelta = timedelta(seconds=30)
    anti_entropy: AntiEntropy = AntiEntropy()
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
        base = f"{namespace}{dataset}"
        if ref.provider == "dynamodb":
            return f"{self.providers.dynamodb.table_prefix}{base}"
        if ref.provider == "cosmos":
            return base
        return bucket_name(self.providers.gcs.bucket_prefix, base, ref.region)

    def _endpoint(self, ref: ReplicaRef) -> str | None:
        """The location's endpoint: its own, else the environment override, else the provider's."""
        provider: str | None = getattr(self.providers, ref.provider).endpoint
        return ref.endpoint or os.environ.get(f"MCREPL_{ref.provider.upper()}_ENDPOINT") or provider

    def uses_local_stack(self) -> bool:
        """Whether any location resolves to ``endpoint: local`` (the stack of ``mcrepl local up``)."""
        return any(self._endpoint(ref) == "local" for ds in self.datasets.values() for ref in ds.locations)

    def _options(self, ref: ReplicaRef, local: Mapping[str, str] | None, namespace: str) -> dict[str, Any]:
        settings = getattr(self.providers, ref.provider)
        opts = settings.model_dump()
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
        if ref.provider == "cosmos" and opts.get("local"):
            # one emulator serves every region: a database per region keeps replicas apart
            opts["database"] = f"{namespace}{opts['database']}-{ref.region}"
        return opts


def bucket_name(prefix: str, base: str, region: str) -> str:
    """``prefix-dataset-region`` as a valid GCS bucket name (3-63 of ``a-z0-9-``).

    Too long a name is shortened in its dataset part, with a hash of the full name so two
    long datasets never collide, and keeps its region so two regions never collide either.
    """
    clean = lambda s: re.sub(r"[^a-z0-9-]", "-", s.lower()).strip("-")  # noqa: E731
    full = clean(f"{prefix}-{base}-{region}")
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    room = 63 - len(clean(prefix)) - len(clean(region)) - len(digest) - 3
    return f"{clean(prefix)}-{clean(base)[:max(room, 1)].strip('-')}-{digest}-{clean(region)}"[:63]


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
