"""One seeded simulation run: a random schedule of writes, faults and operator actions, then quiescence.

``Simulation(seed, tmp).run()`` returns the list of violated invariants (empty when the
run was clean). The schedule is drawn from ``random.Random(seed)`` only, so a failing
seed replays exactly: ``MCREPL_SIM_SEED=123 make test PYTEST_ARGS=tests/simulation``.

The schedule mixes (each drawn with a weight):

* application writes, updates and deletes at the location it believes is primary —
  native and stamped (a fenced writer) — user fields named ``_mcrepl``, undecodable items,
  writes made *while* capture scans;
* sync passes (sometimes with anti-entropy), process crashes at any store call or audit
  flush (SIGKILL: nothing more runs, uncommitted work is rolled back) and restarts;
* wall clocks stepped back and forward by up to an hour, the app's host skewed by up to a
  minute, stores' clocks skewed;
* stores down, hung (answering nothing until a timeout), wiped empty;
* replicas added, removed and re-added; planned and unplanned promotions (the app learning
  of the new primary late and writing to the demoted one meanwhile); a primary edited in
  the config; the direction reversed onto a fresh state file;
* a merge resolver whose function raises for some keys;
* with ``follow=True`` (a seed range of its own, so the schedules above stay as they were):
  follow mode — a follower's capture, lane and upkeep steps in turn for a few rounds, crashes
  included, then a drain as SIGTERM does, its claims checked like a pass's;
* with ``listing=True`` (a seed range of its own too): the GCS locations are captured by
  comparing listings with a manifest, through the code GCS and S3 capture runs — no old
  images, a write deleted again between two listings never seen;
* with ``feed=True`` (a seed range of its own too): the Cosmos DB location, the first
  primary, is captured as a latest-version change feed — each changed item once in its
  current state, no deletes, no old images — as Cosmos DB's is.

Then every fault heals, the app stops, passes run until every lane is caught up, and a
last pass runs anti-entropy. :mod:`.checker` then judges the run.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.orchestrator.state import StateStore
from mcrepl.orchestrator.sync import PromotionRefused, SyncEngine
from mcrepl.orchestrator.sync.executor import InlineStepExecutor
from mcrepl.orchestrator.sync.follow import FollowSession
from mcrepl.orchestrator.sync.report import SyncReport
from mcrepl.orchestrator.sync.units import Opener
from mcrepl.orchestrator.sync.workers import InlineUnitExecutor, UnitExecutor

from .checker import (check_audit, check_claims, check_conflicts, check_final, check_order, check_quarantine,
                      copies_differ)
from .world import ListSink, SimulatedCrash, World

LOCATIONS = ["dynamodb:eu-west-1", "dynamodb:eu-central-1", "cosmos:westeurope", "gcs:europe-west1",
             "gcs:europe-west3"]
#: the same locations with Cosmos DB first: feed seeds start with it as the primary
FEED_LOCATIONS = ["cosmos:westeurope", *(loc for loc in LOCATIONS if not loc.startswith("cosmos:"))]
MERGE = "tests.simulation.merges:merge_ids"


class Simulation:
    """A seeded run of the sync engine in a simulated world (see the module docstring)."""

    def __init__(self, seed: int, tmp: Path, steps: int = 60, follow: bool = False, listing: bool = False,
                 feed: bool = False) -> None:
        self.seed = seed
        self.tmp = tmp
        self.steps = steps
        self.with_follow = follow                 # draw follow-mode rounds too (their own seed range)
        # the GCS locations captured by listing, as GCS is (their own seed range, as follow mode)
        locations = FEED_LOCATIONS if feed else LOCATIONS
        self.world = World(seed, f"sim{seed}-{uuid.uuid4().hex[:6]}", locations, listing=listing, feed=feed)
        rng = self.world.rng
        self.primary = locations[0]
        self.replicas = rng.sample(locations[1:], rng.randint(1, 3))
        self.resolver = rng.choice(["lww", "lww", "merge"])
        self.batch_size = rng.choice([2, 3, 5, 50])
        # how the pass's work units run (chosen by the seed, not the schedule's random stream,
        # so every seed keeps its schedule): odd seeds ship every unit and its result through
        # pickle, as a process or Dask worker receives them; even seeds run them on the
        # engine's own adapters as the default thread executor does, one at a time
        self.units = "pickled" if seed % 2 else "direct"
        self.generation = 0
        self.sinks: list[ListSink] = []
        self.states: list[Path] = []
        self.violations: list[str] = []
        self.exempt: set[str] = set()             # why "caught up ⇒ equal copies" cannot hold until a compare
        self.was_primary = {self.primary}
        # wiped and not compared since: an operator who restored a store compares it before
        # forcing it primary (a forced promotion cannot compare with a primary that is gone)
        self.unverified: set[str] = set()
        self.retired_conflicts: list[dict[str, Any]] = []     # conflict rows of state files replaced
        self.removed: list[str] = []
        self.trace: list[str] = []
        self.keep_open = False                    # debugging: leave the state open after the run
        self.config = self._config(self.primary, self.replicas)
        self.world.epoch_of = self._epoch
        self.world.pointer = self._pointer
        self.world.saved_cursor = lambda location: self.state.log.cursor("items", location)
        self._open(fresh=True)

    # -- the engine and its state ------------------------------------------------------

    def _config(self, primary: str, replicas: list[str]) -> McreplConfig:
        conflict: dict[str, Any] = {"resolver": self.resolver}
        if self.resolver == "merge":
            conflict["function"] = MERGE
        return McreplConfig.model_validate({
            "version": 1, "profile": "local", "state_dir": str(self.tmp),
            # no heartbeats: the checker compares every key of the stores, and heartbeats are outside
            # what verify compares by design (tests/test_follow_emulators.py covers them)
            "datasets": {"items": {"key": {"partition": "id"}, "primary": primary, "replicas": replicas,
                                   "sync": {"heartbeat": None},
                                   "conflict": conflict}},
            "sync": {"batch_size": self.batch_size, "max_in_flight": 2, "breaker_failures": 2,
                     "breaker_reset": "1s", "retry_deadline": "1s", "deadline": "6h",
                     "tombstone_retention": "30d", "max_replica_outage": "10d",
                     "anti_entropy": {"every": None, "repair_max": 1000}}})

    def _open(self, fresh: bool = False) -> None:
        """Open the state file and an engine on it (after a crash: what a restarted process does)."""
        if fresh:
            self.generation += 1
            self.states.append(self.tmp / f"state{self.generation}.db")
            self.sinks.append(ListSink(self.world))
        self._open_state()
        self._new_engine()

    def _open_state(self) -> None:
        while True:
            try:
                self.state = StateStore(self.states[-1], clock=self.world.clock, durable=False, audit=self.sinks[-1])
                return
            except SimulatedCrash:
                self._note("crash while restarting")

    def _new_engine(self) -> None:
        while True:
            try:
                self.engine = SyncEngine(self.config, self.state, adapter_factory=self.world.adapter_factory,
                                         clock=self.world.clock, executor_factory=lambda n, name: InlineStepExecutor(),
                                         unit_executor_factory=self._unit_executor)
                return
            except SimulatedCrash as crash:      # it audits a config change when it starts
                self._note(f"crash at {crash} (starting)")
                self.state.db._conn.close()
                self._open_state()

    def _unit_executor(self, opener: Opener) -> UnitExecutor:
        """Units run at submission on this thread (deterministic), pickled or not (see ``units``)."""
        return InlineUnitExecutor(opener, pickled=self.units == "pickled")

    def _crashed(self, where: str) -> None:
        """The process died: drop everything in memory, keep what was committed, start again."""
        self._note(f"crash at {where}")
        self.state.db._conn.close()               # no flush, no goodbye: as SIGKILL leaves it
        self._open()

    def _close_engine(self) -> bool:
        """Stop the engine as an operator does; ``False`` when the process died doing so (its close
        flushes the audit outbox, where an armed crash point can fire): then it was restarted."""
        try:
            self.engine.close()
            return True
        except SimulatedCrash as crash:
            self._crashed(str(crash))
            return False

    def _restart(self) -> None:
        if self._close_engine():
            self.state.close()
            self._open()

    def _epoch(self) -> int:
        pointer = self.state.current_primary("items")
        return pointer.epoch if pointer else 1

    def _pointer(self) -> str:
        pointer = self.state.current_primary("items")
        return pointer.location if pointer else self.primary

    def locations(self) -> list[str]:
        """Every location in the current config (its ``primary:`` first; the pointer may name another)."""
        return [self.config.datasets["items"].primary.at, *self.replicas]

    def others(self) -> list[str]:
        """The configured locations that are not the current primary."""
        return [loc for loc in self.locations() if loc != self._pointer()]

    def _note(self, what: str) -> None:
        self.trace.append(f"t={self.world.clock.now:.1f} {what}")

    # -- a pass, and what its report may claim -------------------------------------------

    def run_pass(self, verify: bool = False) -> Any:
        self._note(f"pass{' +verify' if verify else ''}")
        try:
            report = self.engine.run_once(verify=verify)
        except SimulatedCrash as crash:
            self._crashed(str(crash))
            return None
        self.violations += check_claims(self, report)
        if report is not None and all(d.converged for d in report.datasets.values()):
            # only the locations compared: a wiped replica removed from the config meanwhile is still
            # unverified when it is added back (its lane's offset says it holds what it lost)
            self.unverified -= set(self.locations())
        return report

    def caught_up(self, report: Any) -> bool:
        return report is not None and all(d.caught_up for d in report.datasets.values())

    # -- the schedule --------------------------------------------------------------------

    def run(self) -> list[str]:
        # faults make the engine complain on purpose; the level is put back for the tests that
        # share this process (a logger left at CRITICAL silences theirs)
        engine_log = logging.getLogger("mcrepl")
        level = engine_log.level
        engine_log.setLevel(logging.CRITICAL)
        try:
            return self._run()
        finally:
            engine_log.setLevel(level)

    def _run(self) -> list[str]:
        rng = self.world.rng
        actions = [(self.app_writes, 30), (self.sync_pass, 22), (self.crash_soon, 7), (self.restart, 3),
                   (self.clock_step, 4), (self.skew, 3), (self.fault, 6), (self.heal_one, 6), (self.wipe, 2),
                   (self.add_replica, 3), (self.remove_replica, 2), (self.planned_promotion, 4),
                   (self.unplanned_promotion, 3), (self.edit_primary, 2), (self.reverse_onto_fresh_state, 1),
                   (self.concurrency, 2)] + ([(self.follow, 8)] if self.with_follow else [])
        funcs, weights = zip(*actions)
        for _ in range(self.steps):
            rng.choices(funcs, weights)[0]()
        self.quiesce()
        return self.violations

    def app_writes(self) -> None:
        for _ in range(self.world.rng.randint(1, 5)):
            if self.world.app.believes != self._pointer():
                # a write to a demoted primary that has rejoined reaches the others only when a lane
                # meets that key there, or anti-entropy compares: the claim waits for a comparison
                self.exempt.add(f"late write at {self.world.app.believes}")
            self.world.app.step()

    def sync_pass(self) -> None:
        self.run_pass(verify=self.world.rng.random() < 0.15)

    def follow(self) -> None:
        """Follow mode for a few rounds (writes may land between its steps), then drain like SIGTERM."""
        rounds = self.world.rng.randint(1, 15)
        self._note(f"follow {rounds} rounds")
        if self.world.rng.random() < 0.3:
            self.world.arm_crash(self.world.rng.randint(1, 25))
        try:
            session = FollowSession(self.engine, "items")
            session.iterate(rounds)
            if session.ended is not None:
                return
            session.drain(400)
        except SimulatedCrash as crash:
            self._crashed(str(crash))
            return
        report = SyncReport()
        report.datasets["items"] = session.report
        session.report.lanes.update({r: lane for r, lane in session.lane_reports().items()
                                     if r != session.primary.replica})
        self.violations += check_claims(self, report)

    def crash_soon(self) -> None:
        self.world.arm_crash(self.world.rng.randint(1, 25))
        self.run_pass()

    def restart(self) -> None:
        self._note("restart")
        self._restart()

    def clock_step(self) -> None:
        step = self.world.rng.uniform(-3600, 3600)
        self.world.clock.wall_offset += step
        self._note(f"orchestrator clock stepped {step:+.0f}s")

    def skew(self) -> None:
        w = self.world
        w.app.clock_offset = w.rng.uniform(-60, 60)
        for loc in w.store_skew:
            w.store_skew[loc] = w.rng.uniform(-60, 60)
        w.clock.sleep(w.rng.uniform(0, 5))

    def concurrency(self) -> None:
        self.world.write_during_capture = self.world.rng.choice([0.0, 0.3, 0.8])

    def fault(self) -> None:
        w = self.world
        loc = w.rng.choice(self.others())
        if w.rng.random() < 0.5:
            w.faults[loc].down = True
        else:
            w.faults[loc].hung = True
        self._note(f"{loc} {'down' if w.faults[loc].down else 'hung'}")

    def heal_one(self) -> None:
        w = self.world
        for loc, f in w.faults.items():
            if f.down or f.hung:
                f.down = f.hung = False
                self._note(f"{loc} healed")
                return
        w.clock.sleep(2.0)

    def wipe(self) -> None:
        # a location that was never primary holds only copies: wiping it destroys nothing unreplicated
        candidates = [loc for loc in self.others() if loc not in self.was_primary]
        if not candidates:
            return
        loc = self.world.rng.choice(candidates)
        self.world.stores[loc].wipe()
        self.world.forget(loc)
        self.exempt.add(f"{loc} wiped")
        self.unverified.add(loc)
        self._note(f"{loc} wiped")

    def _set_config(self, primary: str, replicas: list[str]) -> None:
        self.replicas = replicas
        self.config = self._config(primary, replicas)
        if self._close_engine():
            self._new_engine()

    def add_replica(self) -> None:
        spare = [loc for loc in LOCATIONS if loc not in self.locations()]
        if not spare:
            return
        loc = self.world.rng.choice(spare)
        self._note(f"add replica {loc}")
        self._set_config(self.config.datasets["items"].primary.at, [*self.replicas, loc])

    def remove_replica(self) -> None:
        # never a location the app writes to or one that was primary (it may hold unreplicated writes)
        removable = [r for r in self.replicas if r not in self.was_primary and r != self.world.app.believes
                     and r != self._pointer()]
        if len(self.replicas) < 2 or not removable:
            return
        loc = self.world.rng.choice(removable)
        self._note(f"remove replica {loc}")
        self._set_config(self.config.datasets["items"].primary.at, [r for r in self.replicas if r != loc])

    def _drain(self, passes: int = 8) -> bool:
        saved, self.world.write_during_capture = self.world.write_during_capture, 0.0
        try:
            for _ in range(passes):
                self.world.clock.sleep(1.5)
                if self.caught_up(self.run_pass()):
                    return True
            return False
        finally:
            self.world.write_during_capture = saved

    def _healthy(self, loc: str) -> bool:
        f = self.world.faults[loc]
        return not f.down and not f.hung

    def planned_promotion(self) -> None:
        w = self.world
        candidates = [r for r in self.others() if self._healthy(r) and self.state.lanes.exists("items", r)]
        if not candidates or not self._healthy(self._pointer()) or not self._drain():
            return
        target = w.rng.choice(candidates)
        self._promote(target, force=False, lag=0)

    def unplanned_promotion(self) -> None:
        w = self.world
        old = self._pointer()
        candidates = [r for r in self.others() if self._healthy(r) and self.state.lanes.exists("items", r)
                      and r not in self.unverified]
        if not candidates:
            return
        target = w.rng.choice(candidates)
        w.faults[old].down = True                 # the orchestrator lost the region; the app did not
        self._note(f"{old} lost (orchestrator side)")
        self._promote(target, force=True, lag=w.rng.randint(0, 6))

    def _promote(self, target: str, force: bool, lag: int) -> bool:
        self._note(f"promote {target}{' (forced)' if force else ''}, app learns after {lag} writes")
        try:
            result = self.engine.promote("items", target, force=force)
        except SimulatedCrash as crash:
            self._crashed(str(crash))
            if self._pointer() != target:
                return False
            # it died after the promotion committed: running it again says so
            result = self.engine.promote("items", target, force=force)
            assert result.already, result
        except PromotionRefused as exc:
            self._note(f"promotion refused: {exc}")
            return False
        self.was_primary.add(target)
        self.world.app.learn(target, result.epoch, lag)
        return True

    def edit_primary(self) -> None:
        """An operator writes another primary into the config instead of running a promotion."""
        w = self.world
        candidates = [r for r in self.others() if self._healthy(r) and self.state.lanes.exists("items", r)
                      and r != self.config.datasets["items"].primary.at]
        if not candidates or not self._drain():
            return
        target = w.rng.choice(candidates)
        before = (self.config.datasets["items"].primary.at, list(self.replicas))
        others = [loc for loc in self.locations() if loc != target]
        self._note(f"config edited: primary {target}")
        self._set_config(target, others)
        for _ in range(3):
            try:
                self.engine.run_once()
            except SimulatedCrash as crash:
                self._crashed(str(crash))         # the operator runs it again
                continue
            except ConfigError:
                # refused, naming the command to use: the operator promotes, as the error says, and
                # puts the old primary back in the config if the promotion does not happen
                if not self._promote(target, force=False, lag=0):
                    self._set_config(*before)
                return
            break
        else:
            self._set_config(*before)
            return
        self.violations.append(f"a pass ran with the config naming {target} primary while the pointer names "
                               f"{self._pointer()}: the edit was not refused")

    def reverse_onto_fresh_state(self) -> None:
        """Start over with a new state file whose config makes a caught-up replica the primary."""
        w = self.world
        candidates = [r for r in self.others() if self._healthy(r) and r not in self.unverified]
        if not candidates or not self._drain():
            return
        # as docs/sync.md asks: the copies compared converged before the state that knows their
        # history is set aside (a late write at a demoted primary is known only to that state)
        report = self.run_pass(verify=True)
        if report is None or not all(d.converged for d in report.datasets.values()):
            return
        target = w.rng.choice(candidates)
        replicas = [loc for loc in self.locations() if loc != target]
        self._note(f"fresh state: primary {target}, replicas {replicas}")
        self.violations += check_audit(self) + check_quarantine(self)     # the old state file ends here
        self.retired_conflicts += self.state.journal.conflicts("items", limit=100_000)   # the operator keeps it
        w.junk_at_primary.clear()
        if not self._close_engine():
            return                               # the process died as the operator stopped it
        self.state.close()
        self.replicas = replicas
        self.config = self._config(target, replicas)
        self._open(fresh=True)
        self.was_primary.add(target)
        self._drain()                            # the operator's first pass on the new state
        w.app.learn(target, 1, 0)

    # -- the end -------------------------------------------------------------------------

    def quiesce(self) -> None:
        w = self.world
        w.heal()
        w.app.stopped = True
        w.write_during_capture = 0.0
        self._note("quiesce")
        report = None
        for _ in range(25):
            w.clock.sleep(2.0)
            report = self.run_pass()
            if self.caught_up(report):
                break
        else:
            self.violations.append("every fault healed, but the lanes never all caught up: "
                                   + "; ".join(f"{l.replica}: {l.reason}" for d in (report.datasets.values()
                                               if report else []) for l in d.lanes.values() if not l.caught_up))
            return
        if any(op.acked and op.kind.endswith("delete") and op.location in w.feed for op in w.model.ops):
            # only a comparison finds a delete there: a latest-version feed shows none
            self.exempt.add("a delete at a location captured by a latest-version feed")
        if not self.exempt:
            differ = copies_differ(self)
            if differ:
                self.violations.append(f"every lane caught up and nothing outside mcrepl changed a store, but the "
                                       f"copies differ: {differ[:5]}")
        report = self.run_pass(verify=True)
        ds = report.datasets["items"] if report else None
        # "not converged" can be the honest answer of a first comparison, as docs/sync.md tells
        # users: late writes at a quiet former primary are found by the comparison and are still
        # in flight through the lanes; a key missing at a listing-captured primary is refilled only
        # once two complete listings after the comparison reported no delete of it. An operator
        # runs `sync --verify` again; so does this, a bounded number of times.
        for _ in range(3):
            if ds is not None and ds.converged is True:
                break
            self._note(f"verify again: {ds.verify.detail if ds and ds.verify else 'no verdict'}")
            w.clock.sleep(2.0)
            report = self.run_pass(verify=True)
            ds = report.datasets["items"] if report else None
        if ds is None or ds.converged is not True:
            self.violations.append(f"anti-entropy after quiescence did not say converged: "
                                   f"{ds.verify if ds else 'no report'}")
        differ = copies_differ(self)
        if differ:
            self.violations.append(f"after anti-entropy the copies still differ: {differ[:5]}")
        self.violations += check_final(self)
        self.violations += check_conflicts(self)
        self.violations += check_audit(self)
        self.violations += check_quarantine(self)
        self.violations += check_order(self)
        if not self.keep_open:
            self.engine.close()
            self.state.close()

