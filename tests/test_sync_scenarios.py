"""Issue 11 ("Sync that never hides a change"): each defect users saw, as a named test on the emulators.

Every test is one item of the issue's "What was seen" list (``test_<item>_...``) and runs on
the local stack — moto DynamoDB, the Cosmos DB emulator and fake-gcs-server, started by the
``local_stack`` fixture — with the real SDKs, in its own namespace, dropped at the end. A
pass is run as ``mcrepl sync --once`` runs it (:func:`sync_once`: open the state file, one
pass, close), or through the CLI itself where what the user sees is the point.

Where ``tests/simulation/mutants.py`` can put the item's defect back, the same test runs a
second time with that mutant applied (ids ``[mutant-…]``) and asserts that the scenario's key
check fails: the test is sensitive to the fix, not only green next to it. Item 5 (a hung
replica) has no mutant; its isolation is measured directly behind the fault proxy.

Not covered here: the GCS manifest cursor's cost per page at a million objects (item 10's
performance part) is a benchmark's question, not a scenario's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from unittest import mock
from urllib.parse import urlparse

import pytest
import yaml
from typer.testing import CliRunner

from mcrepl.adapters import open_adapter
from mcrepl.adapters.base import Record, ReplicaAdapter, ReplicaTarget, UnavailableError, Version, document
from mcrepl.failover.faults import FaultProxy
from mcrepl.orchestrator.cli import app
from mcrepl.orchestrator.clock import SYSTEM_CLOCK, Clock
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.observability.audit import AuditTrail, audit_path
from mcrepl.orchestrator.observability.metrics import SyncMetrics
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import SyncEngine
from mcrepl.orchestrator.sync.antientropy import AntiEntropy
from mcrepl.orchestrator.sync.report import SyncReport

from .cli_with_faults import KILL_AT_AUDIT, MUTANT
from .simulation.mutants import MUTANTS
from .test_sync_helpers import (COSMOS, GCS, PRIMARY, ControlledAdapter, SimulatedCrash, Stores, customer, digests,
                                emulator_raw_config, live, mcrepl_subprocess)
from .test_sync_helpers import endpoints, namespace  # noqa: F401 - fixtures

CENTRAL = "dynamodb:eu-central-1"
REPO = Path(__file__).resolve().parents[1]
SCHEMA = McreplConfig.model_validate(emulator_raw_config(Path("."))).datasets["customers"].key_schema()


# -- helpers ------------------------------------------------------------------------------

def with_mutant(name: str) -> list[Any]:
    """The ``mutant`` parameter: the code as it is, then with the defect ``name`` put back."""
    assert name in MUTANTS, name
    return [pytest.param(None, id="fixed"), pytest.param(name, id=f"mutant-{name}")]


def reverted(mutant: str | None) -> contextlib.AbstractContextManager[Any]:
    """The defect ``mutant`` put back for the block (``None``: nothing changed)."""
    return MUTANTS[mutant].patch() if mutant else contextlib.nullcontext()


def emulator_config(tmp_path: Path, **kw: Any) -> McreplConfig:
    """:func:`emulator_raw_config`, validated."""
    return McreplConfig.model_validate(emulator_raw_config(tmp_path, **kw))


def docs(indexes: Sequence[int], **extra: Any) -> list[Record]:
    """Customer documents ``indexes`` as records of the ``customers`` dataset."""
    return [document(SCHEMA, customer(i, **extra)) for i in indexes]


def keys(indexes: Sequence[int]) -> list[Any]:
    return [document(SCHEMA, customer(i)).key for i in indexes]


def state_of(config: McreplConfig, clock: Clock = SYSTEM_CLOCK) -> StateStore:
    """The config's state file, as ``mcrepl`` opens it."""
    return StateStore(Path(config.state_dir) / "state.db", clock=clock)


def sync_once(config: McreplConfig, endpoints: dict[str, str], namespace: str, *, verify: bool = False,
              clock: Clock = SYSTEM_CLOCK, **engine: Any) -> SyncReport:
    """One ``mcrepl sync --once [--verify]``: open the state file, run one pass, close everything."""
    state = state_of(config, clock)
    sync = SyncEngine(config, state, local_endpoints=endpoints, namespace=namespace, clock=clock, **engine)
    try:
        return sync.run_once(verify=verify)
    finally:
        sync.close()
        state.close()


def promote_by_force(config: McreplConfig, endpoints: dict[str, str], namespace: str, location: str) -> Any:
    """One ``mcrepl failover promote LOCATION --force``: open the state file, promote, close everything."""
    state = state_of(config)
    engine = SyncEngine(config, state, local_endpoints=endpoints, namespace=namespace)
    try:
        return engine.promote("customers", location, force=True)
    finally:
        engine.close()
        state.close()


class SteppedClock:
    """This host's clock, ``offset`` seconds off (settable): stepped back by NTP, or skewed."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


def controlled(wrapped: dict[str, ControlledAdapter]) -> Callable[[ReplicaTarget], ReplicaAdapter]:
    """An engine ``adapter_factory``: each emulator adapter behind a :class:`ControlledAdapter`."""
    def factory(target: ReplicaTarget) -> ReplicaAdapter:
        wrapped[target.replica] = ControlledAdapter(open_adapter(target))
        return wrapped[target.replica]
    return factory


@contextlib.contextmanager
def proxied(endpoints: dict[str, str], location: str) -> Iterator[tuple[FaultProxy, dict[str, str]]]:
    """A fault proxy in front of ``location``'s emulator, and the endpoints that go through it."""
    service = location.partition(":")[0]
    url = urlparse(endpoints[service])
    with FaultProxy(url.hostname or "127.0.0.1", url.port or 80) as proxy:
        yield proxy, {**endpoints, service: f"{url.scheme}://127.0.0.1:{proxy.port}"}


@contextlib.contextmanager
def opened(config: McreplConfig, endpoints: dict[str, str], namespace: str) -> Iterator[Stores]:
    """The test's stores (``config`` lists every location it touches), dropped at the end."""
    stores = Stores(config, endpoints, namespace)
    try:
        yield stores
    finally:
        stores.drop()


def write_config(tmp_path: Path, **kw: Any) -> Path:
    """``mcrepl.yaml`` for the CLI (rewritten in place when a test edits the config)."""
    path = tmp_path / "mcrepl.yaml"
    path.write_text(yaml.safe_dump(emulator_raw_config(tmp_path, **kw)))
    return path


def mcrepl(args: Sequence[str], endpoints: dict[str, str], namespace: str, *, mutant: str | None = None,
           env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``mcrepl ARGS`` in a process of its own (with ``mutant`` put back there): exit code, stdout, stderr."""
    extra = {**(env or {}), **({MUTANT: mutant} if mutant else {})}
    proc = mcrepl_subprocess(args, namespace, endpoints, cwd=REPO, python=["-m", "tests.cli_with_faults"],
                             env={"COLUMNS": "400", **extra})
    out, err = proc.communicate(timeout=240)
    return proc.returncode, out.decode(), err.decode()


def status_rows(config_file: Path) -> dict[str, dict[str, Any]]:
    """``mcrepl status --format json`` (it reads the state file only), by replica."""
    result = CliRunner().invoke(app, ["status", "--config", str(config_file), "--format", "json"])
    assert result.exit_code == 0, result.output
    return {row["replica"]: row for row in json.loads(result.output)}


def conflicts_of(config: McreplConfig) -> list[dict[str, Any]]:
    """Every conflict row the config's state file holds."""
    state = state_of(config)
    try:
        return state.journal.conflicts("customers", limit=100_000)
    finally:
        state.close()


def quarantined_at(config: McreplConfig) -> list[dict[str, Any]]:
    """Every quarantine row the config's state file holds."""
    state = state_of(config)
    try:
        return state.journal.quarantined("customers", limit=100_000)
    finally:
        state.close()


def versions(adapter: ReplicaAdapter) -> dict[str, Version]:
    """key → the version ``adapter`` holds (stamped records only)."""
    return {d.key_id: Version.parse(d.version) for d in adapter.list_digests() if d.version}


def bodies(adapter: ReplicaAdapter, records: Sequence[Record]) -> list[Any]:
    """What ``adapter`` holds for each record's key (``None`` where it holds nothing)."""
    return [getattr(adapter.read(r.key), "body", None) for r in records]


# -- 1: reversed direction leaves the new replica empty -------------------------------------

@pytest.mark.parametrize("mutant", with_mutant("1-echo-by-origin"))
def test_1_reversed_direction_fills_a_fresh_replica(tmp_path: Path, endpoints: dict[str, str], namespace: str,
                                                    mutant: str | None) -> None:
    """DynamoDB → Cosmos, converged; then a fresh state file whose primary is that Cosmos location
    and whose replica is an empty DynamoDB table: the table gets everything, though every record
    at Cosmos carries another origin's metadata (only the lane's own replica's changes are echoes).
    """
    forward = emulator_config(tmp_path, replicas=[COSMOS], state_dir="forward")
    reverse = emulator_config(tmp_path, primary=COSMOS, replicas=[CENTRAL], state_dir="reverse")
    with opened(emulator_config(tmp_path, replicas=[COSMOS, CENTRAL]), endpoints, namespace) as stores:
        stores[PRIMARY].write_native(docs(range(30)))
        first = sync_once(forward, endpoints, namespace, verify=True)
        assert first.datasets["customers"].converged, "docs/failover.md: a fresh state only after a converged verify"
        with reverted(mutant):
            report = sync_once(reverse, endpoints, namespace)
        filled = live(stores[CENTRAL]) == live(stores[COSMOS])
        if mutant:
            assert not filled and not live(stores[CENTRAL]), "the defect went unnoticed: the replica was filled"
            return
        assert filled and len(live(stores[CENTRAL])) == 30
        ds = report.datasets["customers"]
        lane = ds.lanes[CENTRAL]
        assert lane.caught_up and lane.applied + lane.backfilled >= 30 and ds.echo_suppressed == 0, report.to_dict()
        assert sync_once(reverse, endpoints, namespace, verify=True).datasets["customers"].converged


# -- 2: a replica taken out of the config and put back never recovers ------------------------

@pytest.mark.parametrize("mutant", with_mutant("2-no-backfill"))
def test_2_a_replica_removed_then_re_added_is_backfilled(tmp_path: Path, endpoints: dict[str, str],
                                                         namespace: str, mutant: str | None) -> None:
    """GCS leaves the config; writes, updates and deletes go on and the log is truncated past its
    offset; GCS comes back: it is backfilled from the primary and converges in one pass."""
    both = emulator_config(tmp_path, replicas=[COSMOS, GCS])
    without = emulator_config(tmp_path, replicas=[COSMOS])
    with opened(both, endpoints, namespace) as stores, reverted(mutant):
        primary = stores[PRIMARY]
        primary.write_native(docs(range(30)))
        assert sync_once(both, endpoints, namespace).ok
        primary.write_native(docs(range(10), tier=7) + docs(range(30, 40)))
        primary.delete_native(keys(range(20, 25)))
        assert sync_once(without, endpoints, namespace).ok
        state = state_of(both)
        assert state.log.horizon("customers") > state.lanes.get("customers", GCS).offset, \
            "the log was truncated past the absent replica's offset"
        state.close()
        back = sync_once(both, endpoints, namespace).datasets["customers"].lanes[GCS]
        recovered = live(stores[GCS]) == live(primary)
        if mutant:
            assert not recovered, "the defect went unnoticed: GCS recovered without a backfill"
            return
        assert recovered and back.caught_up and back.backfilled > 0 and back.reason is None
        assert all(digests(stores[GCS])[k.id][1] for k in keys(range(20, 25))), "deletes arrive as tombstones"
        assert sync_once(both, endpoints, namespace, verify=True).datasets["customers"].converged


# -- 3: the clock is not restored after a restart --------------------------------------------

@pytest.mark.parametrize("mutant", with_mutant("3-clock-not-restored"))
def test_3_updates_after_a_restart_with_the_clock_stepped_back_apply_everywhere(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, mutant: str | None) -> None:
    """A restart after the wall clock stepped back an hour (NTP, a VM restore): the hybrid logical
    clock resumes from the state file, so the updates made next apply everywhere under versions
    above every version issued before — the order last-writer-wins goes by between origins."""
    config = emulator_config(tmp_path)
    clock = SteppedClock()
    with opened(config, endpoints, namespace) as stores, reverted(mutant):
        stores[PRIMARY].write_native(docs(range(20)))
        assert sync_once(config, endpoints, namespace, clock=clock).ok
        before = max(versions(stores[GCS]).values())
        clock.offset = -3600.0
        updated = docs(range(10), tier=9)
        stores[PRIMARY].write_native(updated)
        report = sync_once(config, endpoints, namespace, clock=clock)
        ahead = all(versions(stores[r])[u.key.id] > before for r in (COSMOS, GCS) for u in updated)
        if mutant:
            assert not ahead, "the defect went unnoticed: versions after the restart went on from the state file"
            return
        assert ahead and report.ok
        assert all(bodies(stores[r], updated) == [u.body for u in updated] for r in (COSMOS, GCS))
        assert all(lane.applied == 10 and lane.stale == 0 for lane in report.datasets["customers"].lanes.values())


# -- 4: clock skew at the scan-to-stream handoff drops updates --------------------------------

@pytest.mark.parametrize(("skew", "mutant"), [
    pytest.param(8.0, None, id="fast-fixed"), pytest.param(-8.0, None, id="slow-fixed"),
    pytest.param(8.0, "4-handoff-by-clock", id="fast-mutant-4-handoff-by-clock")])
def test_4_no_update_after_the_scan_is_dropped_when_this_host_is_skewed(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, skew: float, mutant: str | None) -> None:
    """This host's clock 8 s fast or slow against the stores while DynamoDB's first capture scans the
    table and hands over to its stream: writes made during the scan (to keys scanned already and
    not yet) and just after it all reach the replicas; the handoff goes by stream position."""
    config = emulator_config(tmp_path, batch_size=10)
    wrapped: dict[str, ControlledAdapter] = {}
    with opened(config, endpoints, namespace) as stores, reverted(mutant):
        primary = stores[PRIMARY]
        primary.write_native(docs(range(30)))

        written: list[int] = []

        def during_the_scan(calls: int) -> None:
            if calls == 1:                              # the first page is read and logged
                primary.write_native(docs([0, 1, 2, 25, 26], tier=5) + docs(range(30, 33)))
                written.append(calls)
        clock = SteppedClock(skew)
        engine = SyncEngine(config, state_of(config, clock), local_endpoints=endpoints, namespace=namespace,
                            clock=clock, adapter_factory=controlled(wrapped))
        try:
            wrapped_primary = engine.adapter(config.target("customers", PRIMARY, endpoints, namespace))
            assert isinstance(wrapped_primary, ControlledAdapter)
            wrapped_primary.before_capture = during_the_scan
            engine.run_once()
            assert written, "the application wrote while capture scanned"
            primary.write_native(docs([0, 3, 4, 27], tier=6))       # just after the scan
            engine.run_once()
        finally:
            engine.close()
            engine.state.close()
        kept = [live(stores[r]) == live(primary) for r in (COSMOS, GCS)]
        if mutant:
            assert not all(kept), "the defect went unnoticed: nothing was dropped at the handoff"
            return
        assert all(kept) and len(live(primary)) == 33


# -- 5: one stalled replica holds the others back ---------------------------------------------

@pytest.mark.parametrize("location", [PRIMARY, COSMOS, GCS], ids=["dynamodb", "cosmos", "gcs"])
def test_5_calls_to_a_hung_store_end_within_the_retry_deadline(tmp_path: Path, endpoints: dict[str, str],
                                                               namespace: str, location: str) -> None:
    """A store that accepts connections and answers nothing: a read, and a whole batch of writes
    (more records than the adapter writes at once), each fail by the retry deadline.

    Connect and read timeouts are bounded by ``sync.retry_deadline`` and the SDK's own retries
    are off, so a hung store costs at most two deadlines per call (the last attempt may start
    just before the deadline and run for its own timeout), not the SDK's defaults (30 s, 60 s,
    65 s plus retries) that made each failing batch take minutes; and a batch stops sending
    once a write failed, rather than paying again for every wave of its records.
    """
    deadline = 1.0
    config = emulator_config(tmp_path)
    batch = [r.stamped(Version(int(time.time() * 1000), 0, PRIMARY)) for r in docs(range(40))]
    took: dict[str, float] = {}
    with opened(config, endpoints, namespace) as stores, proxied(endpoints, location) as (proxy, through):
        stores[location].ensure_ready()                   # created directly: dropped directly at the end
        target = config.target("customers", location, through, namespace)
        adapter = open_adapter(dataclasses.replace(target, options={**target.options, "retry_deadline_s": deadline}))
        try:
            adapter.ensure_ready()
            proxy.set_mode("blackhole")
            for name, call in (("read", lambda: adapter.read(batch[0].key)),
                               ("apply_batch", lambda: adapter.apply_batch(batch))):
                started = time.monotonic()
                with pytest.raises(UnavailableError):
                    call()
                took[name] = round(time.monotonic() - started, 1)
        finally:
            adapter.close()
    assert all(t < 2 * deadline + 0.5 for t in took.values()), \
        f"calls to a hung {location} with a {deadline:g}s retry deadline took {took}"


@pytest.mark.parametrize("hung", [COSMOS, GCS], ids=["cosmos", "gcs"])
def test_5_a_hung_replica_costs_only_its_own_lane(tmp_path: Path, endpoints: dict[str, str], namespace: str,
                                                  hung: str) -> None:
    """One replica blackholed (connections accepted, nothing answered): in the same pass capture
    logs everything and the healthy replica catches up; the hung lane's batches each end within
    the retry deadline, its breaker opens after ``breaker_failures`` of them, and the report says
    why. Healed, it drains on a later pass."""
    deadline, failures = 2.0, 2
    config = emulator_config(tmp_path, batch_size=20, retry_deadline=f"{deadline:g}s",
                             breaker_failures=failures, breaker_reset="1s")
    healthy = next(r for r in (COSMOS, GCS) if r != hung)
    with opened(config, endpoints, namespace) as stores, proxied(endpoints, hung) as (proxy, through):
        stores[PRIMARY].write_native(docs(range(20)))
        state = state_of(config)
        engine = SyncEngine(config, state, local_endpoints=through, namespace=namespace)
        try:
            assert engine.run_once().ok
            proxy.set_mode("blackhole")
            stores[PRIMARY].write_native(docs(range(20, 120)))
            started = time.time()
            report = engine.run_once()
            ds = report.datasets["customers"]
            assert ds.captured == 100 and ds.capture_error is None, "capture never waits on a lane"
            assert ds.lanes[healthy].caught_up and ds.lanes[healthy].applied == 100
            assert live(stores[healthy]) == live(stores[PRIMARY])
            lane, row = ds.lanes[hung], state.lanes.get("customers", hung)
            assert not lane.caught_up and lane.breaker == "open" and lane.errors == failures, ds.lanes
            assert lane.reason == f"breaker opened after {failures} failed batches"
            assert lane.last_error and "Unavailable" in lane.last_error, lane.last_error
            assert row.last_error_at is not None
            # each failed batch ended by its calls' deadline (at most two: see the test above, so
            # 2 x deadline each), not by the pass abandoning a step that never answered (2 x deadline
            # + 10 s each): the bound lies midway, so a loaded machine's slower pass (9.7 s seen under
            # the full suite) does not pass for the defect, and the defect (28 s) cannot pass
            assert row.last_error_at - started < failures * (2 * deadline + 5), \
                f"{failures} failed batches took {row.last_error_at - started:.1f}s with a {deadline:g}s deadline"
            proxy.set_mode("pass")
            time.sleep(1.1)                                      # the breaker half-opens
            healed = engine.run_once(verify=True)
            assert healed.ok and healed.datasets["customers"].converged
            drained = healed.datasets["customers"].lanes[hung]
            # writes sent into the partition may land once it heals: they come back as replays
            assert drained.applied + drained.replayed == 100 and live(stores[hung]) == live(stores[PRIMARY])
        finally:
            engine.close()
            state.close()


# -- 6: conflicts logged at most once ---------------------------------------------------------

def merge_notes_refusing_c00002(stored: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """The scenario's merge function: incoming's fields plus the stored note; raises for c00002."""
    if incoming.get("customer_id") == "c00002":
        raise ValueError("this merge function refuses c00002")
    return {**incoming, "note": stored.get("note")}


@pytest.mark.parametrize("mutant", with_mutant("6-clock-decides"))
def test_6_conflicts_are_settled_once_across_a_crash_and_a_raising_merge(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, mutant: str | None) -> None:
    """Cosmos holds versions of c00001 and c00002 concurrent with the primary's; the process dies
    after Cosmos answered and before the lane's commit. The next pass logs each conflict exactly
    once: c00001 merged everywhere, c00002 by last-writer-wins because the merge function raised,
    and the row says so. Later passes log nothing more."""
    config = emulator_config(tmp_path, conflict={"resolver": "merge",
                                                 "function": f"{__name__}:merge_notes_refusing_c00002"})
    wrapped: dict[str, ControlledAdapter] = {}
    with opened(config, endpoints, namespace) as stores, reverted(mutant):
        stores[PRIMARY].write_native(docs(range(5)))
        at_cosmos = [r.stamped(Version(int(time.time() * 1000), 0, COSMOS)) for r in docs([1, 2], note="at cosmos")]
        stores[COSMOS].apply_batch(at_cosmos)
        state = state_of(config)
        state.set_primary("customers", COSMOS)      # the versions were written while Cosmos was primary
        state.set_primary("customers", PRIMARY)
        crashing = SyncEngine(config, state, local_endpoints=endpoints, namespace=namespace,
                              adapter_factory=controlled(wrapped))
        cosmos = crashing.adapter(config.target("customers", COSMOS, endpoints, namespace))
        assert isinstance(cosmos, ControlledAdapter)
        cosmos.crash_in, cosmos.crash_after_apply = 1, True
        with pytest.raises(SimulatedCrash):
            crashing.run_once()
        crashing.close()
        state.close()
        assert not conflicts_of(config), "nothing committed before the crash"
        sync_once(config, endpoints, namespace)
        sync_once(config, endpoints, namespace, verify=True)
        logged = conflicts_of(config)
        rows = {r["key_id"]: r for r in logged}
        once = sorted(r["key_id"] for r in logged) == ["c00001", "c00002"]
        if mutant:
            assert not once, "the defect went unnoticed: each conflict was logged once"
            return
        assert once, rows
        assert rows["c00001"]["resolver"] == "merge" and rows["c00001"]["note"] is None
        assert rows["c00002"]["resolver"] == "lww" and "merge function raised ValueError" in rows["c00002"]["note"]
        merged, lww = (stores[PRIMARY].read(key) for key in keys([1, 2]))
        assert merged is not None and merged.body["note"] == "at cosmos" and merged.body["name"] == "customer 1"
        for location in (COSMOS, GCS):
            assert bodies(stores[location], docs([1, 2])) == [merged.body, getattr(lww, "body", None)], location


# -- 7: a user field named like the reserved metadata attribute disappears ---------------------

@pytest.mark.parametrize("mutant", with_mutant("7-reserved-names-dropped"))
def test_7_user_fields_named_like_the_metadata_survive_on_every_store(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, mutant: str | None) -> None:
    """Fields named ``_mcrepl`` and ``_mcrepl_fields`` in user documents, written at a GCS primary
    (which keeps metadata apart from the body), reach DynamoDB and Cosmos — both keep metadata
    in-band under those names — unchanged; nothing is quarantined and verify is clean."""
    config = emulator_config(tmp_path, primary=GCS, replicas=[PRIMARY, COSMOS])
    written = (docs(range(3), _mcrepl="a user's value") + docs(range(3, 6), _mcrepl={"v": "not metadata"})
               + docs(range(6, 9), _mcrepl_fields={"mine": [1, 2]}, _mcrepl=7) + docs(range(9, 12)))
    with opened(config, endpoints, namespace) as stores, reverted(mutant):
        stores[GCS].write_native(written)
        report = sync_once(config, endpoints, namespace, verify=True)
        kept = {loc: bodies(stores[loc], written) == [r.body for r in written] for loc in (GCS, PRIMARY, COSMOS)}
        if mutant:
            assert not all(kept.values()), "the defect went unnoticed: every field survived"
            return
        assert all(kept.values()), kept
        assert report.ok and report.datasets["customers"].converged
        assert not quarantined_at(config)


# -- 8: the audit trail can miss a batch -------------------------------------------------------

@pytest.mark.parametrize(("kill", "mutant"), [
    pytest.param("2:before", None, id="killed-before-the-line-fixed"),
    pytest.param("2:after", None, id="killed-after-the-line-fixed"),
    pytest.param("2:before", "8-audit-after-commit", id="killed-before-the-line-mutant-8-audit-after-commit")])
def test_8_a_sigkill_between_checkpoint_and_audit_leaves_no_batch_unaudited(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, kill: str, mutant: str | None) -> None:
    """``mcrepl sync --once`` SIGKILLed while it writes the audit line of a batch it has committed:
    the next run writes that line (the outbox committed with the checkpoint), every committed
    batch has exactly one audit entry, and ``mcrepl audit verify`` passes."""
    config_file = write_config(tmp_path, batch_size=20)
    config = emulator_config(tmp_path, batch_size=20)
    with opened(config, endpoints, namespace) as stores:
        stores[PRIMARY].write_native(docs(range(60)))
        code, _, err = mcrepl(["sync", "--once", "-c", str(config_file)], endpoints, namespace, mutant=mutant,
                              env={KILL_AT_AUDIT: kill})
        assert code == -9, f"the run was not killed at the audit line (exit {code}): {err[-2000:]}"
        code, _, err = mcrepl(["sync", "--once", "-c", str(config_file)], endpoints, namespace)
        assert code == 0, err[-2000:]
        code, out, err = mcrepl(["audit", "verify", "-c", str(config_file)], endpoints, namespace)
        assert code == 0 and "ok" in out, out + err
    entries = list(AuditTrail(audit_path(Path(config.state_dir))).entries())
    batch_entries = [e["payload"] for e in entries if e["kind"] == "batch"]
    state = state_of(config)
    committed = {lane.replica: lane.batches for lane in state.lanes.all("customers") if lane.batches}
    audited = {r: sum(1 for b in batch_entries if b["replica"] == r) for r in committed}
    if mutant:
        assert audited != committed, "the defect went unnoticed: every batch was audited"
        return
    assert audited == committed and sum(committed.values()) >= 6, (audited, committed)
    outbox_ids = [e["payload"]["outbox_id"] for e in entries if "outbox_id" in e["payload"]]
    assert len(outbox_ids) == len(set(outbox_ids)), "an entry appended before the kill is not appended again"


# -- 9: changing primary: in the config is silently ignored -------------------------------------

@pytest.mark.parametrize("mutant", with_mutant("9-config-primary-ignored"))
def test_9_a_primary_changed_in_the_config_is_refused_until_promoted(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, mutant: str | None) -> None:
    """``primary:`` edited from DynamoDB to Cosmos with a state file that knows DynamoDB: ``sync``
    refuses (exit 2) naming both and the command to run; ``failover promote`` applies the change,
    and then sync runs from Cosmos to the former primary and GCS."""
    config_file = write_config(tmp_path)
    with opened(emulator_config(tmp_path), endpoints, namespace) as stores:
        stores[PRIMARY].write_native(docs(range(20)))
        code, _, err = mcrepl(["sync", "--once", "-c", str(config_file)], endpoints, namespace)
        assert code == 0, err[-2000:]
        write_config(tmp_path, primary=COSMOS, replicas=[PRIMARY, GCS])
        code, out, err = mcrepl(["sync", "--once", "-c", str(config_file)], endpoints, namespace, mutant=mutant)
        said = " ".join((out + err).split())
        refused = code == 2 and f"from {PRIMARY} to {COSMOS}" in said
        if mutant:
            assert not refused, f"the defect went unnoticed: the edit was refused: {said[-500:]}"
            return
        assert refused, said[-2000:]
        assert f"mcrepl failover promote {COSMOS} --dataset customers" in said
        code, out, err = mcrepl(["failover", "promote", COSMOS, "--dataset", "customers", "--yes",
                                 "-c", str(config_file)], endpoints, namespace)
        assert code == 0, out + err
        stores[COSMOS].write_native(docs(range(20, 25)) + docs(range(5), tier=8))
        code, out, err = mcrepl(["sync", "--once", "--verify", "--format", "json", "-c", str(config_file)],
                                endpoints, namespace)
        assert code == 0, out + err
        ds = json.loads(out)["datasets"]["customers"]
        assert ds["primary"] == COSMOS and ds["converged"] is True
        assert live(stores[PRIMARY]) == live(stores[COSMOS]) == live(stores[GCS]) and len(live(stores[GCS])) == 25


# -- 10: stalls and growth --------------------------------------------------------------------

def _undecodable_dynamodb_item(adapter: ReplicaAdapter, key_id: str) -> str:
    """An item whose in-band metadata is valid but whose wrapped fields contradict its key."""
    from mcrepl.adapters.dynamodb.wire import encode_meta
    meta = document(SCHEMA, {"customer_id": key_id}).stamped(Version(int(time.time() * 1000), 0, "app")).meta
    assert meta is not None
    adapter.clients.table.put_item(TableName=adapter.target.resource, Item={  # type: ignore[attr-defined]
        "customer_id": {"S": key_id}, "_mcrepl": encode_meta(meta),
        "_mcrepl_fields": {"M": {"customer_id": {"N": "5"}}}})
    return "bad-key-type"


def _undecodable_cosmos_document(adapter: ReplicaAdapter, key_id: str) -> str:
    """A document holding a value tagged like mcrepl's typed JSON, with a tag no one defines."""
    from mcrepl.adapters.cosmos.auth import close_client, make_client
    client = make_client(adapter.target.options)
    try:
        container = client.get_database_client(adapter.target.options["database"]) \
            .get_container_client(adapter.target.resource)
        container.upsert_item({"id": key_id, "customer_id": key_id, "x": {"$mcrepl": "no-such-tag", "v": 1}})
    finally:
        close_client(client)
    return "unknown-tag"


def _undecodable_gcs_object(adapter: ReplicaAdapter, key_id: str) -> str:
    """An object of a document dataset whose content is not JSON."""
    adapter.io.upload(key_id, b"not json", "text/plain", None)  # type: ignore[attr-defined]
    return "bad-json"


@pytest.mark.parametrize(("primary", "write_undecodable", "mutant"), [
    pytest.param(PRIMARY, _undecodable_dynamodb_item, None, id="dynamodb-fixed"),
    pytest.param(COSMOS, _undecodable_cosmos_document, None, id="cosmos-fixed"),
    pytest.param(GCS, _undecodable_gcs_object, None, id="gcs-fixed"),
    pytest.param(COSMOS, _undecodable_cosmos_document, "10-rejected-dropped", id="cosmos-mutant-10-rejected-dropped")])
def test_10_an_undecodable_item_at_the_primary_is_quarantined_by_name_and_capture_goes_on(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, primary: str,
        write_undecodable: Callable[[ReplicaAdapter, str], str], mutant: str | None) -> None:
    """One item the primary's adapter cannot decode, among good ones, on every adapter alike: it is
    quarantined under its key at the primary, every lane catches up, later writes are captured,
    and a comparison of the copies reports it (not converged) instead of failing."""
    config = emulator_config(tmp_path, primary=primary, replicas=[r for r in (PRIMARY, COSMOS, GCS) if r != primary],
                             batch_size=10)
    with opened(config, endpoints, namespace) as stores, reverted(mutant):
        stores[primary].write_native(docs(range(12)))
        rule = write_undecodable(stores[primary], "c00500")
        first = sync_once(config, endpoints, namespace)
        rows = quarantined_at(config)
        named = [(r["key_id"], r["replica"], r["rule"]) for r in rows] == [("c00500", primary, rule)]
        if mutant:
            assert not named, "the defect went unnoticed: the item was quarantined"
            return
        assert named, rows
        assert first.ok and first.datasets["customers"].captured == 12 and first.datasets["customers"].quarantined == 1
        stores[primary].write_native(docs(range(12, 17)))
        later = sync_once(config, endpoints, namespace, verify=True).datasets["customers"]
        assert later.caught_up and later.captured == 5, "capture goes on past it"
        good = {k: h for k, h in live(stores[primary]).items() if k != "c00500"}
        assert len(good) == 17 and all(live(stores[r]) == good for r in (PRIMARY, COSMOS, GCS) if r != primary)
        assert later.verify is not None and later.verify.converged is False, later.verify
        assert f"c00500 at {primary}" in later.verify.detail, later.verify


def test_10_heads_of_purged_tombstones_are_pruned(tmp_path: Path, endpoints: dict[str, str],
                                                  namespace: str) -> None:
    """Deletes older than ``tombstone_retention``: their tombstones are purged everywhere and their
    entries in the per-key index go too, so the index grows with the live keys only."""
    config = emulator_config(tmp_path, tombstone_retention="4s", max_replica_outage="2s")
    clock = SteppedClock()
    deleted = [k.id for k in keys(range(3))]
    with opened(config, endpoints, namespace) as stores:
        stores[PRIMARY].write_native(docs(range(10)))
        assert sync_once(config, endpoints, namespace, clock=clock).ok
        stores[PRIMARY].delete_native(keys(range(3)))
        assert sync_once(config, endpoints, namespace, clock=clock).ok
        state = state_of(config)
        assert all(meta.tombstone for meta in state.log.heads("customers", deleted).values()) and \
            len(state.log.heads("customers", deleted)) == 3
        state.close()
        clock.offset = 60.0                                     # a minute later: past retention
        report = sync_once(config, endpoints, namespace, clock=clock)
        assert report.ok and report.datasets["customers"].purged == 6, "the tombstones at Cosmos and GCS"
        state = state_of(config)
        assert state.log.heads("customers", deleted) == {}, "their heads are pruned"
        assert len(state.log.heads("customers", [k.id for k in keys(range(10))])) == 7
        assert not any(k in digests(stores[r]) for r in (COSMOS, GCS) for k in deleted)


def test_10_status_clears_an_old_error_after_a_later_pass_succeeds(tmp_path: Path, endpoints: dict[str, str],
                                                                   namespace: str) -> None:
    """``mcrepl status`` shows a lane's error while it is the lane's state, not after the lane
    drained on a later pass."""
    # 3 s: each call's read timeout is bounded by it, and the healed pass must not time out on a
    # loaded machine (at 1 s it did, once, beside the simulation and three drill loops)
    sync = {"retry_deadline": "3s", "breaker_failures": 1, "breaker_reset": "2s"}
    config_file, config = write_config(tmp_path, **sync), emulator_config(tmp_path, **sync)
    with opened(config, endpoints, namespace) as stores, proxied(endpoints, GCS) as (proxy, through):
        stores[PRIMARY].write_native(docs(range(10)))
        assert sync_once(config, through, namespace).ok
        proxy.set_mode("reset")
        stores[PRIMARY].write_native(docs(range(10, 20)))
        assert not sync_once(config, through, namespace).ok
        down = status_rows(config_file)[GCS]
        assert down["last_error"] and down["breaker"] == "open" and down["lag_changes"] == 10
        proxy.set_mode("pass")
        time.sleep(2.1)                                          # the breaker half-opens
        assert sync_once(config, through, namespace).ok
        up = status_rows(config_file)[GCS]
        assert up["last_error"] is None and up["breaker"] == "closed" and up["lag_changes"] == 0, up


class GaugeReadings(SyncMetrics):
    """Prometheus metrics that also note the lag gauges' values at every lane commit."""

    def __init__(self) -> None:
        super().__init__()
        self.readings: dict[str, list[float]] = {}

    def lane_progress(self, dataset: str, replica: str, lag_changes: int, lag_seconds: float) -> None:
        super().lane_progress(dataset, replica, lag_changes, lag_seconds)
        self.readings.setdefault(replica, []).append(
            self.value("mcrepl_replica_lag_changes", dataset=dataset, replica=replica))


def test_10_lag_gauges_move_during_a_pass(tmp_path: Path, endpoints: dict[str, str], namespace: str) -> None:
    """The lag gauges read the lane's backlog at every batch commit of a long pass — not 0 until
    the pass ends while ``status`` shows thousands of changes of lag."""
    config = emulator_config(tmp_path, batch_size=10, max_in_flight=2)
    metrics = GaugeReadings()
    with opened(config, endpoints, namespace) as stores:
        stores[PRIMARY].write_native(docs(range(80)))
        assert sync_once(config, endpoints, namespace, metrics=metrics).ok
    for replica in (COSMOS, GCS):
        readings = metrics.readings[replica]
        assert len(readings) == 8 and readings[-1] == 0, readings
        # read mid-pass, at a commit before the last (with capture running beside the lanes the
        # backlog may hold steady for a while, so how many distinct values is not the point)
        assert max(readings[:-1]) > 0, f"{replica}: the gauge did not move before the pass ended: {readings}"


# -- 11: a replica that lost its data is reported converged ----------------------------------

@pytest.mark.parametrize("mutant", with_mutant("11-verify-trusts-lanes"))
def test_11_a_replica_that_lost_its_data_is_found_and_refilled_by_verify(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, mutant: str | None) -> None:
    """Every replica's table, container and bucket dropped and recreated empty outside mcrepl: a
    plain pass claims nothing; ``sync --once --verify`` compares, finds every key missing (not
    converged), repairs through the lanes and says converged only after a second comparison;
    ``status`` shows that verify."""
    replicas = [COSMOS, GCS, CENTRAL]
    config_file = write_config(tmp_path, replicas=replicas)
    config = emulator_config(tmp_path, replicas=replicas)
    verdicts: list[bool] = []
    original = AntiEntropy.compare

    def compare(self: AntiEntropy) -> Any:
        report = original(self)
        verdicts.append(report.clean)
        return report
    with opened(config, endpoints, namespace) as stores, reverted(mutant):
        stores[PRIMARY].write_native(docs(range(30)))
        assert sync_once(config, endpoints, namespace, verify=True).datasets["customers"].converged
        for replica in replicas:
            stores[replica].drop()
            stores[replica].ensure_ready()
        plain = sync_once(config, endpoints, namespace)
        assert plain.datasets["customers"].converged is None, "a pass without a comparison claims nothing"
        with mock.patch.object(AntiEntropy, "compare", compare):
            verify = sync_once(config, endpoints, namespace, verify=True).datasets["customers"].verify
        assert verify is not None
        found = verdicts == [False, True] and verify.divergent == 30 and verify.repaired == 30
        if mutant:
            assert not found and any(not live(stores[r]) for r in replicas), "the defect went unnoticed"
            return
        assert found and verify.converged and verify.remaining == 0, (verdicts, verify)
        assert all(live(stores[r]) == live(stores[PRIMARY]) for r in replicas)
        last = status_rows(config_file)[GCS]["last_verify"]
        assert last["converged"] and last["repaired"] == 30, last


# -- 12: a late write deleted again at the old primary is overwritten unseen -----------------

@pytest.mark.parametrize("mutant", with_mutant("sim-late-write-watch-off"))
def test_12_a_late_write_deleted_again_at_the_rejoined_old_primary_is_settled_not_lost(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, mutant: str | None) -> None:
    """A customer deleted at DynamoDB, the primary, and replicated; GCS is promoted by force and
    DynamoDB rejoins. An application that has not heard of it writes the customer again there and
    deletes it again, then writes it at GCS. DynamoDB holds nothing for the key, as it did when
    mcrepl last looked: only its stream shows the pair. The next pass reads the stream before
    writing there, logs both as late writes and settles the delete against GCS's write as a
    conflict (the simulation's follow seed 50977 found this)."""
    config = emulator_config(tmp_path, replicas=[GCS])
    customer_1 = docs([1])
    with opened(config, endpoints, namespace) as stores, reverted(mutant):
        old, new = stores[PRIMARY], stores[GCS]
        old.write_native(customer_1)
        assert sync_once(config, endpoints, namespace).ok
        old.delete_native(keys([1]))
        assert sync_once(config, endpoints, namespace).ok
        assert digests(new)[customer_1[0].key.id][1], "the delete reached GCS as a tombstone"
        assert promote_by_force(config, endpoints, namespace, GCS).epoch == 2
        rejoined = sync_once(config, endpoints, namespace)
        assert rejoined.datasets["customers"].lanes[PRIMARY].caught_up, rejoined.datasets["customers"].lanes
        old.write_native(docs([1], note="late, at the old primary"))
        old.delete_native(keys([1]))
        new.write_native(docs([1], note="at the new primary"))
        for _ in range(2):
            sync_once(config, endpoints, namespace)
        conflicts = [c for c in conflicts_of(config) if c["key_id"] == customer_1[0].key.id]
        if mutant:
            assert not conflicts, "the defect went unnoticed: a conflict was logged without reading the stream"
            return
        assert conflicts, "the late delete was overwritten without a conflict"
        assert live(old) == live(new)
        assert sync_once(config, endpoints, namespace, verify=True).datasets["customers"].converged
        audit = [e for e in AuditTrail(audit_path(Path(config.state_dir))).entries() if e["kind"] == "late-writes"]
        assert audit and audit[0]["payload"]["replica"] == PRIMARY and audit[0]["payload"]["recovered"] == 2, audit


# -- 13: a delete at a listing-captured primary, compared before capture read it -------------

@pytest.mark.parametrize("reverted_fix", [False, True], ids=["fixed", "refilled-at-once"])
def test_13_a_delete_at_a_gcs_primary_that_capture_has_not_listed_is_not_refilled(
        tmp_path: Path, endpoints: dict[str, str], namespace: str, reverted_fix: bool) -> None:
    """GCS is the primary (its capture compares listings). A customer is deleted there just before
    an operator runs ``mcrepl repair``: to the comparison the object is missing while the log says
    it is live, which is also what a lost object looks like. Refilling it would hide the delete
    from every later listing. The repair leaves it (not converged); the next pass lists the delete
    and it reaches DynamoDB; a key that stays missing through two complete listings is refilled."""
    config = emulator_config(tmp_path, primary=GCS, replicas=[PRIMARY])
    # the fix reverted: an absence at the primary is taken for a loss at once, as before
    at_once = mock.patch.object(AntiEntropy, "_absence_confirmed", lambda self, key_id, head: True)
    with opened(config, endpoints, namespace) as stores, at_once if reverted_fix else contextlib.nullcontext():
        gcs, dynamo = stores[GCS], stores[PRIMARY]
        gcs.write_native(docs(range(3)))
        assert sync_once(config, endpoints, namespace).ok
        assert set(live(dynamo)) == {r.key.id for r in docs(range(3))}
        gcs.delete_native(keys([1]))
        state = state_of(config)
        engine = SyncEngine(config, state, local_endpoints=endpoints, namespace=namespace)
        try:
            engine.repair("customers", dry_run=True)
            assert not state.db.rows("SELECT name FROM meta WHERE name LIKE 'absent-at-primary:%'"), \
                "a dry run writes nothing to the state file"
            _, verdict = engine.repair("customers")
        finally:
            engine.close()
            state.close()
        sync_once(config, endpoints, namespace)
        deleted = keys([1])[0].id not in live(gcs) and keys([1])[0].id not in live(dynamo)
        if reverted_fix:
            assert not deleted, "the defect went unnoticed: the delete survived the refill"
            return
        assert not verdict.converged and deleted, (verdict, live(gcs), live(dynamo))
        assert sync_once(config, endpoints, namespace, verify=True).datasets["customers"].converged
        state = state_of(config)
        try:
            assert not state.db.rows("SELECT name FROM meta WHERE name LIKE 'absent-at-primary:%'"), \
                "a converged verdict forgets the absence the repair was waiting on (capture listed its delete)"
        finally:
            state.close()


def test_13_an_object_a_gcs_primary_never_had_is_refilled_once_two_listings_report_no_delete(
        tmp_path: Path, endpoints: dict[str, str], namespace: str) -> None:
    """GCS, promoted by force, lacks a customer the log says is live (it was lost there before
    the promotion). Its listings never report a delete for it, so verify refills it — not on the
    first comparison, which cannot tell it from a delete not yet listed, but once two complete
    listings after it have reported none."""
    config = emulator_config(tmp_path, replicas=[GCS])
    with opened(config, endpoints, namespace) as stores:
        dynamo, gcs = stores[PRIMARY], stores[GCS]
        dynamo.write_native(docs(range(3)))
        assert sync_once(config, endpoints, namespace).ok
        gcs.delete_native(keys([2]))                      # lost at the replica, outside mcrepl
        promote_by_force(config, endpoints, namespace, GCS)
        verdicts = [sync_once(config, endpoints, namespace, verify=True).datasets["customers"].converged
                    for _ in range(3)]
        assert verdicts[0] is False and verdicts[-1] is True, verdicts
        assert live(gcs) == live(dynamo) and keys([2])[0].id in live(gcs)


def test_14_a_rejoined_gcs_primary_gives_up_a_write_made_behind_its_listing_position(
        tmp_path: Path, endpoints: dict[str, str], namespace: str) -> None:
    """GCS was the primary and its capture stopped in the middle of a listing pass (a crash, a
    deadline). The application then rewrote an object the pass had already gone over, and GCS
    was lost and DynamoDB promoted by force. When GCS comes back, its rejoin reads what it took
    that capture never logged: reading to the end of the pass under way would miss that write (a
    listing reports a change behind its position only in its next pass), so the rejoin reads on
    to the end of a second pass, and the write reaches DynamoDB without waiting for verify."""
    from mcrepl.orchestrator.hlc import HybridLogicalClock
    from mcrepl.orchestrator.sync.capture import PageCapturer

    config = emulator_config(tmp_path, primary=GCS, replicas=[PRIMARY])
    with opened(config, endpoints, namespace) as stores:
        gcs, dynamo = stores[GCS], stores[PRIMARY]
        gcs.write_native(docs(range(4)))
        assert sync_once(config, endpoints, namespace).ok
        gcs.write_native(docs([2, 3], tier=7))
        state = state_of(config)
        try:
            pointer = state.current_primary("customers")
            assert pointer is not None and pointer.location == GCS
            capturer = PageCapturer(config.target("customers", GCS, endpoints, namespace), state,
                                    HybridLogicalClock(GCS), pointer.epoch)
            page = capturer.capture_page(gcs, limit=1)        # the pass stops after its first change
            assert page.more and state.log.cursor("customers", GCS).get("at") == keys([2])[0].id
        finally:
            state.close()
        behind = docs([0], tier=9)                             # before the pass's position
        gcs.write_native(behind)
        promote_by_force(config, endpoints, namespace, PRIMARY)
        report = sync_once(config, endpoints, namespace)
        assert report.ok, report.to_dict()
        (rejoin,) = [e["payload"] for e in AuditTrail(audit_path(Path(config.state_dir))).entries()
                     if e["kind"] == "rejoin"]
        # the rewrite of c00003 ahead of the position and that of c00000 behind it; the verify the
        # promotion asked for would find c00000 later as a late write, but the rejoin reads it itself
        assert (rejoin["replica"], rejoin["recovered"]) == (GCS, 2), rejoin
        assert live(dynamo)[behind[0].key.id] == behind[0].digest_hash(False)
        assert live(dynamo)[keys([3])[0].id] == docs([3], tier=7)[0].digest_hash(False)
