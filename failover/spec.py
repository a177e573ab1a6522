"""The drill file: a YAML experiment in the spirit of Chaos Toolkit.

A drill names a small topology (one dataset, a primary and replicas as ``provider:region``),
a workload, a steady-state hypothesis (probes with tolerances, checked before the method
and again after it), a method (ordered steps), rollbacks (always run, and always followed
by "heal every fault, stop every writer") and thresholds the findings must meet::

    title: Primary region lost
    fault_mode: proxy            # proxy: a FaultProxy per location; fence: no traffic to the lost location
    fencing: true                # false: promotions do not fence the old epoch (split-brain demo)
    topology: {primary: dynamodb:eu-west-1, replicas: [dynamodb:eu-central-1]}
    workload: {keys: 30, rate: 20, ack: replicas}
    steady-state:
      probes: [{probe: max_lag, changes: 0, within: 10s}, {probe: divergence, max: 0, within: 10s}]
    method:
      - {action: start_workload}
      - {action: wait, duration: 2s}
      - {action: fault, location: dynamodb:eu-west-1, mode: blackhole}
      - {action: promote, location: dynamodb:eu-central-1}
      - {action: heal}
    thresholds: {lost: 0, rpo_count: 0, rto_seconds: 15, convergence_seconds: 30}

Every validation error names the field and the fix (``load_drill``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from mcrepl.orchestrator.config import known_providers, parse_duration
from mcrepl.orchestrator.yaml_model import read_mapping, validate

PROXY_MODES = ("blackhole", "reset", "delay", "drop_upstream", "drop_downstream")


def _to_duration(v: Any) -> Any:
    return v if v is None or isinstance(v, timedelta) else parse_duration(v)


#: a duration written as 30s, 500ms, 2m or plain seconds
Duration = Annotated[timedelta, BeforeValidator(_to_duration)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _location(v: str) -> str:
    provider, sep, region = str(v).partition(":")
    if not sep or not region or provider not in known_providers():
        raise ValueError(f"{v!r} is not provider:region with provider one of {', '.join(known_providers())}; "
                         "write e.g. dynamodb:eu-west-1")
    return str(v)


Location = Annotated[str, AfterValidator(_location)]
"""A ``provider:region`` location in a drill step."""


class Topology(_Spec):
    """The drill's own dataset: built in a unique namespace on the local stack, dropped afterwards."""

    dataset: str = Field("drill", pattern=r"^[a-z][a-z0-9-]{1,20}$")
    primary: str
    replicas: list[str] = Field(min_length=1)
    sync_interval: Duration = timedelta(milliseconds=300)
    batch_size: int = Field(50, ge=1, le=1000)

    @field_validator("primary")
    @classmethod
    def _primary(cls, v: str) -> str:
        return _location(v)

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, v: list[str]) -> list[str]:
        return [_location(r) for r in v]

    @model_validator(mode="after")
    def _distinct(self) -> "Topology":
        if len({self.primary, *self.replicas}) != 1 + len(self.replicas):
            raise ValueError("topology locations must be distinct (a replica is listed twice or is the primary)")
        return self

    @property
    def locations(self) -> list[str]:
        return [self.primary, *self.replicas]


class WorkloadSpec(_Spec):
    """Seeded inserts/updates/deletes through the write router.

    ``ack: replicas`` acknowledges a write only once every reachable replica holds it too
    (synchronous replication: the setting behind a zero-loss promise); ``ack: primary``
    acknowledges when the primary has it (asynchronous: a bounded, measured RPO).
    """

    keys: int = Field(30, ge=1, le=10_000)
    rate: float = Field(20.0, gt=0, le=500, description="operations per second")
    insert: float = Field(0.3, ge=0)
    update: float = Field(0.5, ge=0)
    delete: float = Field(0.2, ge=0)
    seed: int = 7
    ack: Literal["primary", "replicas"] = "primary"
    write_timeout: Duration = timedelta(seconds=2)

    @model_validator(mode="after")
    def _mix(self) -> "WorkloadSpec":
        if self.insert + self.update + self.delete <= 0:
            raise ValueError("the operation mix is empty: give insert, update or delete a weight > 0")
        return self


class Probe(_Spec):
    """A steady-state probe: it holds if its tolerance is met at some point ``within`` the window."""

    probe: Literal["max_lag", "divergence", "write_success_rate"]
    changes: int | None = Field(None, ge=0, description="max_lag: changes behind, per replica")
    max: int | None = Field(None, ge=0, description="divergence: divergent keys")
    min: float | None = Field(None, ge=0, le=1, description="write_success_rate: ok/attempted")
    window: Duration = timedelta(seconds=3)
    within: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _tolerance(self) -> "Probe":
        needed = {"max_lag": "changes", "divergence": "max", "write_success_rate": "min"}[self.probe]
        if getattr(self, needed) is None:
            raise ValueError(f"probe {self.probe!r} needs a tolerance: add '{needed}:'")
        return self


class SteadyState(_Spec):
    probes: list[Probe] = Field(default_factory=list)


class _Step(_Spec):
    label: str | None = None


class StartWorkload(_Step):
    action: Literal["start_workload"]


class StopWorkload(_Step):
    action: Literal["stop_workload"]


class Wait(_Step):
    action: Literal["wait"]
    duration: Duration


class WaitReplicated(_Step):
    """Wait until every reachable replica's lane is drained (sync caught up)."""

    action: Literal["wait_replicated"]
    timeout: Duration = timedelta(seconds=20)


class Fault(_Step):
    """Cut a location off: in proxy mode set its proxy's ``mode``; in fence mode fence it."""

    action: Literal["fault"]
    location: Location
    mode: Literal["blackhole", "reset", "delay", "drop_upstream", "drop_downstream", "fence"] = "blackhole"
    delay: Duration | None = None


class Flap(_Step):
    """Toggle a location between ``mode`` and healthy ``count`` times, ``period`` each way."""

    action: Literal["flap"]
    location: Location
    mode: Literal["blackhole", "reset", "fence"] = "reset"
    period: Duration = timedelta(milliseconds=500)
    count: int = Field(4, ge=1, le=100)


class Heal(_Step):
    """Heal one location, or every fault when ``location`` is omitted."""

    action: Literal["heal"]
    location: str | None = None


class Promote(_Step):
    """Make ``location`` the primary: the epoch is bumped (and the old one fenced when ``fencing``)."""

    action: Literal["promote"]
    location: Location


class Failback(_Step):
    """Catch the original primary up, reconcile its unreplicated writes, make it primary again."""

    action: Literal["failback"]
    timeout: Duration = timedelta(seconds=30)


class Rejoin(_Step):
    """A demoted primary that is reachable again rejoins as a replica.

    It catches up from the current primary, then its unreplicated writes are reconciled
    through the resolver (see ``mcrepl.orchestrator.sync.attach``): every version it holds that
    was never captured is logged, and where it meets a concurrent write the conflict is settled.
    """

    action: Literal["rejoin"]
    location: Location
    timeout: Duration = timedelta(seconds=30)


class StaleWriter(_Step):
    """A writer that still believes in ``location`` as primary under the epoch it last saw.

    It reaches ``location`` directly (it lives in that region, on the near side of the
    partition). With ``fencing: true`` its writes are refused as stale-epoch; with
    ``fencing: false`` they land: split-brain.
    """

    action: Literal["stale_writer"]
    location: Location
    ops: int = Field(10, ge=1, le=1000)


Step = Annotated[Union[StartWorkload, StopWorkload, Wait, WaitReplicated, Fault, Flap, Heal, Promote,
                       Failback, Rejoin, StaleWriter], Field(discriminator="action")]
RollbackStep = Annotated[Union[Heal, StopWorkload], Field(discriminator="action")]


class Thresholds(_Spec):
    """What the findings must meet; an unset threshold is not checked."""

    lost: int | None = Field(None, ge=0, description="acknowledged writes not in the final state")
    rpo_count: int | None = Field(None, ge=0)
    rpo_seconds: float | None = Field(None, ge=0)
    rto_seconds: float | None = Field(None, ge=0)
    convergence_seconds: float | None = Field(None, ge=0)
    resurrected: int | None = Field(0, ge=0)
    unexpected: int | None = Field(0, ge=0)
    divergent: int | None = Field(0, ge=0, description="keys still divergent at the deadline")


class DrillSpec(_Spec):
    """A whole drill file."""

    title: str
    description: str = ""
    fault_mode: Literal["proxy", "fence"] = "proxy"
    fencing: bool = True
    zero_loss: bool = Field(False, description="the drill promises lost = 0 (checked as a threshold)")
    topology: Topology
    workload: WorkloadSpec = WorkloadSpec()
    steady_state: SteadyState = Field(SteadyState(), alias="steady-state")
    method: list[Step] = Field(min_length=1)
    rollbacks: list[RollbackStep] = Field(default_factory=list)
    thresholds: Thresholds = Thresholds()
    convergence_deadline: Duration = timedelta(seconds=40)

    @model_validator(mode="after")
    def _consistent(self) -> "DrillSpec":
        locations = set(self.topology.locations)
        for i, step in enumerate(self.method):
            loc = getattr(step, "location", None)
            if loc is not None and loc not in locations:
                raise ValueError(f"method[{i}] ({step.action}) names {loc}, which is not in the topology; "
                                 f"use one of {', '.join(sorted(locations))}")
            mode = getattr(step, "mode", None)
            if self.fault_mode == "fence" and mode not in (None, "fence"):
                raise ValueError(f"method[{i}]: fault_mode is 'fence' (real clouds), so a fault can only "
                                 f"be mode: fence, not {mode!r}; or set fault_mode: proxy")
            if self.fault_mode == "proxy" and mode == "fence":
                raise ValueError(f"method[{i}]: mode 'fence' needs fault_mode: fence; in proxy mode use "
                                 f"one of {', '.join(PROXY_MODES)}")
            if isinstance(step, Fault) and step.mode == "delay" and step.delay is None:
                raise ValueError(f"method[{i}]: mode 'delay' needs 'delay:' (e.g. 200ms)")
        if self.zero_loss and self.thresholds.lost not in (None, 0):
            raise ValueError("zero_loss: true contradicts thresholds.lost > 0; drop one of them")
        return self

    @property
    def effective_thresholds(self) -> Thresholds:
        """The thresholds, with ``lost: 0`` added when the drill promises zero loss."""
        if self.zero_loss and self.thresholds.lost is None:
            return self.thresholds.model_copy(update={"lost": 0})
        return self.thresholds


def load_drill(path: str | Path, overrides: dict[str, Any] | None = None) -> DrillSpec:
    """Read and validate a drill file; every problem is named ``file:path: message (fix: …)``.

    ``overrides`` replaces top-level fields (e.g. ``{"fencing": False}`` from the CLI).
    """
    path = Path(path)
    raw = read_mapping(path, example="examples/drills/primary-region-lost.yaml",
                       top_keys="title:, topology:, method:, …")
    raw.update(overrides or {})
    return validate(DrillSpec, raw, path, docs="docs/failover.md",
                    fixes={"union_tag_invalid": "use one of the actions in docs/failover.md",
                           "union_tag_not_found": "add 'action:'"})

def topology_findings(spec: DrillSpec, path: str | Path) -> list[Any]:
    """What ``mcrepl validate`` would say of the drill's topology, pointed at the drill file.

    A drill builds its own config from ``topology:`` (local profile, one dataset); the same
    checks every command runs (:func:`mcrepl.orchestrator.validation.config_findings`) hold
    for it, so a region typo or a residency breach stops the drill before any emulator or
    proxy starts. Paths name the drill file: ``topology.replicas[1]``.
    """
    from mcrepl.orchestrator.config import McreplConfig
    from mcrepl.orchestrator.validation import config_findings

    topo = spec.topology
    config = McreplConfig.model_validate({
        "version": 1, "profile": "local",
        "providers": {"dynamodb": {"endpoint": "local"}, "cosmos": {"endpoint": "local"},
                      "gcs": {"endpoint": "local", "auth": "anonymous"}},
        "datasets": {topo.dataset: {"kind": "document", "key": {"partition": "id"},
                                    "primary": topo.primary, "replicas": list(topo.replicas)}}})
    prefix = f"datasets.{topo.dataset}."
    out = []
    for finding in config_findings(config, path):
        if finding.severity != "error":
            continue
        where = (finding.path or "").removeprefix(prefix)
        out.append(finding.__class__(**{**finding.to_dict(), "path": f"topology.{where}" if where != finding.path
                                        else finding.path}))
    return out
