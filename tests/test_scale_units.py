"""Work units, the in-flight window, partition leases and the executor options, on the in-memory adapter.

The emulator runs of the same machinery (Dask, processes, a worker killed) are in
``test_scale_out.py``; these hold the pieces' own promises.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from mcrepl.adapters.base import (ApplyOutcome, ApplyResult, ChangePage, Record, RecordError, ThrottledError,
                                  Version, document)
from mcrepl.adapters.base.retry import RetryPolicy, call_with_retry
from mcrepl.orchestrator.state import StateStore, this_owner
from mcrepl.orchestrator.sync import SyncEngine
from mcrepl.orchestrator.sync.inflight import InFlightWindow
from mcrepl.orchestrator.sync.units import CaptureUnit, DigestUnit, ReadUnit, WriteUnit, run_unit, split_by_key
from mcrepl.orchestrator.sync.workers import ExecutorSpec, InlineUnitExecutor, ThreadUnitExecutor

from .test_sync_helpers import COSMOS, GCS, PRIMARY, ControlledAdapter, MemoryWorld, customer, make_config, \
    raw_config


@pytest.fixture()
def world() -> Iterator[MemoryWorld]:
    w = MemoryWorld(f"u{uuid.uuid4().hex[:8]}")
    yield w
    w.drop()


def _records(config: Any, keys: Sequence[int], version: int = 1) -> list[Record]:
    schema = config.datasets["customers"].key_schema()
    return [document(schema, customer(k, v=version)).stamped(Version(1000 + version, 0, PRIMARY)) for k in keys]


# -- units ---------------------------------------------------------------------------------

def test_split_by_key_keeps_each_keys_versions_together_and_in_order(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    records = _records(config, [1, 2, 3, 1, 4, 2, 5, 1], 1)
    groups = split_by_key(records, 3)
    assert sorted(i for g in groups for i in g) == list(range(8))
    for group in groups:
        assert list(group) == sorted(group), "a group keeps batch order"
    owner = {records[i].key.id: n for n, g in enumerate(groups) for i in g}
    for n, group in enumerate(groups):
        assert all(owner[records[i].key.id] == n for i in group)
    assert len(groups) == 3 and split_by_key(records, 1) == [tuple(range(8))] and split_by_key([], 4) == []


def test_every_unit_its_result_and_its_errors_survive_pickling(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path)
    target = config.target("customers", COSMOS)
    records = _records(config, range(5))
    units = [CaptureUnit(target, {"seq": 3}, 100), WriteUnit(target, tuple(records), 2),
             ReadUnit(target, tuple(r.key for r in records)), DigestUnit(target)]
    assert [pickle.loads(pickle.dumps(u)) for u in units] == units
    adapter = world.adapter(config, COSMOS)
    written = run_unit(pickle.loads(pickle.dumps(units[1])), lambda t: adapter)
    back = pickle.loads(pickle.dumps(written))
    assert [r.outcome for r in back.value] == [ApplyOutcome.APPLIED] * 5
    error = RecordError("too-big", "item over 400 KB", dataset="customers", key="c1", field="blob", target=COSMOS)
    assert pickle.loads(pickle.dumps(error)) == error
    assert pickle.loads(pickle.dumps(ThrottledError("slow down", retry_after=1.5))).retry_after == 1.5


class _ThrottledOnce(ControlledAdapter):
    """The reference adapter whose store asks for one retry (with a hint) per batch, through the one retry policy."""

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        asked = []

        def once() -> list[ApplyResult]:
            if not asked:
                asked.append(True)
                raise ThrottledError("429", retry_after=0.01, dataset=self.target.dataset,
                                     replica=self.target.replica)
            return super(_ThrottledOnce, self).apply_batch(records)
        return call_with_retry(once, RetryPolicy(deadline_s=5, initial_s=0.001, max_backoff_s=0.01))


def test_a_unit_reports_the_throttling_its_store_asked_for(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path)
    adapter = _ThrottledOnce(world.adapter(config, GCS).inner)
    result = run_unit(WriteUnit(adapter.target, tuple(_records(config, range(3)))), lambda t: adapter)
    assert result.throttled == 1 and result.retry_after == 0.01
    assert [r.outcome for r in result.value] == [ApplyOutcome.APPLIED] * 3
    calm = run_unit(ReadUnit(adapter.target, (result.value[0].key,)), lambda t: adapter)
    assert calm.throttled == 0 and calm.retry_after is None and calm.value[0] is not None


# -- the in-flight window ---------------------------------------------------------------------

def test_in_flight_window_grows_by_one_and_halves_on_throttling_honouring_retry_after() -> None:
    slept: list[float] = []
    now = [100.0]
    window = InFlightWindow(8, start=2, sleep=slept.append, monotonic=lambda: now[0])
    for expected in (2, 3, 4, 5):
        assert window.current() == expected
        window.observe(0, None)
    window.observe(3, 2.5)                     # throttled: half, and wait what the store asked
    assert window.current() == 3 and slept == [2.5]
    for _ in range(10):
        window.observe(0, None)
    assert window.current() == 8, "never past the cap"
    for _ in range(5):
        window.observe(1, None)
    assert window.current() == 1 and window.decreases == 6, "never below one"


def test_a_lane_splits_its_window_into_units_up_to_the_in_flight_window(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path, sync={"batch_size": 200, "executor": {"max_in_flight_units": 4}})
    schema = config.datasets["customers"].key_schema()
    world.adapter(config, PRIMARY).write_native([document(schema, customer(i)) for i in range(600)])
    calls: list[int] = []
    engine = SyncEngine(config, StateStore(tmp_path / "state.db"), adapter_factory=world.factory)
    units = engine.unit_executor()
    submit = units.submit

    def counting(unit: Any) -> Any:
        if isinstance(unit, WriteUnit) and unit.target.replica == COSMOS:
            calls.append(len(unit.records))
        return submit(unit)
    units.submit = counting                    # type: ignore[method-assign]
    try:
        report = engine.run_once()
    finally:
        engine.close()
    assert report.ok and report.datasets["customers"].lanes[COSMOS].applied == 600
    assert sum(calls) == 600 and max(calls) <= 200 and len(calls) > 3, calls
    assert isinstance(units, ThreadUnitExecutor)


# -- leases -------------------------------------------------------------------------------------

def test_partition_leases_exclude_another_live_owner_and_fence_with_tokens(tmp_path: Path) -> None:
    now = [1000.0]

    class Clock:
        def time(self) -> float:
            return now[0]

    state = StateStore(tmp_path / "state.db", clock=Clock())  # type: ignore[arg-type]
    me, other = this_owner(), "another-host/4242"
    mine, _ = state.leases.take("customers", "lane:gcs:europe-west1", me, 60)
    assert mine is not None and mine.token == 1
    refused, holder = state.leases.take("customers", "lane:gcs:europe-west1", other, 60)
    assert refused is None and holder is not None and holder.owner == me
    again, _ = state.leases.take("customers", "lane:gcs:europe-west1", me, 60)
    assert again is not None and again.token == 1, "an owner re-takes its own lease under the same token"
    now[0] += 61                                     # expired: another coordinator takes over
    theirs, _ = state.leases.take("customers", "lane:gcs:europe-west1", other, 60)
    assert theirs is not None and theirs.token == 2
    assert state.leases.renew(mine, 60) is None, "the old owner's renewal fails: it lost the lease"
    assert [l.owner for l in state.leases.held("customers")] == [other]
    state.leases.release(theirs)
    assert state.leases.held("customers") == []


def test_a_lease_of_a_dead_process_on_this_host_is_taken_at_once(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = f"{this_owner().rpartition('/')[0]}/{dead.stdout.strip()}"
    held, _ = state.leases.take("customers", "capture:dynamodb:eu-west-1", owner, 3600)
    assert held is not None
    taken, holder = state.leases.take("customers", "capture:dynamodb:eu-west-1", this_owner(), 3600)
    assert taken is not None and holder is None and taken.token == 2


def test_a_pass_leaves_a_dataset_leased_by_another_coordinator_alone(tmp_path: Path, world: MemoryWorld) -> None:
    config = make_config(tmp_path)
    schema = config.datasets["customers"].key_schema()
    world.adapter(config, PRIMARY).write_native([document(schema, customer(i)) for i in range(20)])
    state = StateStore(tmp_path / "state.db")
    state.leases.take("customers", f"lane:{GCS}", "another-host/4242", 3600)
    engine = SyncEngine(config, state, adapter_factory=world.factory)
    try:
        blocked = engine.run_once()
        ds = blocked.datasets["customers"]
        assert not blocked.ok and ds.captured == 0 and "another-host/4242" in (ds.capture_error or "")
        assert all(not lane.caught_up and "leased by" in (lane.reason or "") for lane in ds.lanes.values())
        assert list(world.adapter(config, COSMOS).list_digests()) == [], "nothing was written"
        assert state.leases.held("customers")[0].owner == "another-host/4242"
        lease = state.leases.held("customers")[0]
        state.leases.release(lease)
        freed = engine.run_once()
    finally:
        engine.close()
    assert freed.ok and freed.datasets["customers"].lanes[GCS].applied == 20
    assert state.leases.held("customers") == [], "a finished pass gives its leases back"


# -- executors and options ----------------------------------------------------------------------

def test_the_pickling_inline_executor_refuses_a_unit_holding_a_live_object(tmp_path: Path,
                                                                          world: MemoryWorld) -> None:
    import threading
    config = make_config(tmp_path)
    executor = InlineUnitExecutor(lambda t: world.adapter(config, COSMOS))
    live = CaptureUnit(config.target("customers", COSMOS), threading.Lock(), 10)
    with pytest.raises(TypeError):
        executor.run(live)
    page = executor.run(CaptureUnit(config.target("customers", COSMOS), None, 10)).value
    assert isinstance(page, ChangePage)


def test_sync_executor_settings_come_from_the_config_and_the_command_line(tmp_path: Path) -> None:
    from mcrepl.orchestrator.cli.executor_opts import with_executor
    from mcrepl.orchestrator.sync.engine import executor_spec
    config = make_config(tmp_path, sync={"executor": {"kind": "processes", "workers": 3}})
    assert executor_spec(config) == ExecutorSpec("processes", 3, 8, None, max_in_flight_units=8)
    joined = with_executor(config, None, None, "tcp://10.1.2.3:8786")
    assert joined.sync.executor.kind == "dask" and joined.sync.executor.scheduler == "tcp://10.1.2.3:8786"
    assert with_executor(config, "dask", 2, None).sync.executor.workers == 2
    assert config.sync.executor.kind == "processes", "the loaded config is left as it was"


def test_sync_refuses_a_bad_executor_before_opening_anything(tmp_path: Path) -> None:
    import yaml
    config_file = tmp_path / "mcrepl.yaml"
    from .test_sync_helpers import PROVIDERS
    config_file.write_text(yaml.safe_dump(raw_config(tmp_path, providers=PROVIDERS)))
    mcrepl = Path(sys.executable).parent / "mcrepl"
    bad = subprocess.run([str(mcrepl), "sync", "--once", "-c", str(config_file), "--executor", "cluster"],
                         capture_output=True, text=True)
    both = subprocess.run([str(mcrepl), "sync", "--once", "-c", str(config_file), "--executor", "processes",
                           "--scheduler", "tcp://127.0.0.1:8786"], capture_output=True, text=True)
    assert bad.returncode == 2 and "threads" in bad.stderr
    assert both.returncode == 2 and "--scheduler" in both.stderr
    assert not (tmp_path / "state" / "state.db").exists(), "refused before the state file was opened"
