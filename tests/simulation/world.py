"""The simulated world: virtual clocks, stores with injectable faults, the app that writes.

Everything here is deterministic given the seed: time is virtual (a hung call "takes"
minutes without waiting), the sync engine runs its steps inline (no threads), and every
random choice comes from one :class:`random.Random`. The stores are the in-memory
reference adapter — our own implementation of our own interface — wrapped in
:class:`SimStore`, which adds what the real world does to a store: it goes down, it
hangs, the process dies before or after a call, someone writes while capture scans.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from mcrepl.adapters.base import (ApplyOutcome, ApplyResult, ChangePage, Cursor, Digest, Record, RecordKey,
                                  ReplicaAdapter, ReplicaTarget, UnavailableError, document, meta_if_valid,
                                  tombstone_of)
from mcrepl.adapters.memory import MemoryAdapter
from mcrepl.orchestrator.hlc import HybridLogicalClock

EPOCH_BASE = 1_800_000_000.0          # the virtual world's wall clock starts here (seconds)


class SimulatedCrash(BaseException):
    """The orchestrator process dies here: not an ``Exception``, so nothing in mcrepl catches it."""


class SimClock:
    """Virtual time: ``now`` moves only when the simulation says so; hosts' wall clocks may be off."""

    def __init__(self) -> None:
        self.now = 0.0
        self.wall_offset = 0.0            # the orchestrator host's wall clock error (stepped by faults)

    def time(self) -> float:
        return EPOCH_BASE + self.now + self.wall_offset

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def host_ms(self, offset: float) -> int:
        """Another host's wall clock in milliseconds (its own ``offset`` from true time)."""
        return int((EPOCH_BASE + self.now + offset) * 1000)


class ListSink:
    """An audit sink kept in memory (the hash-chained file's stand-in for the simulation)."""

    def __init__(self, world: "World") -> None:
        self.world = world
        self.entries: list[dict[str, Any]] = []

    def append(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.world.crash_point("audit-append")
        entry = {"seq": len(self.entries), "kind": kind, "payload": payload}
        self.entries.append(entry)
        return entry

    def head(self) -> dict[str, Any] | None:
        return self.entries[-1] if self.entries else None


@dataclass
class Faults:
    """What is wrong with one store right now, as the orchestrator sees it."""

    down: bool = False                    # connections refused
    hung: bool = False                    # connections accepted, nothing answered (until a timeout)


class SimStore(ReplicaAdapter):
    """A memory store as the orchestrator reaches it: faults, crash points, concurrent writers.

    Also the store's own clock (skewed per store): every change capture returns carries the
    store time of the write (``observed_ms``), as DynamoDB streams and the Cosmos ``_ts`` do.
    """

    def __init__(self, world: "World", inner: MemoryAdapter) -> None:
        super().__init__(inner.target)
        self.world = world
        self.inner = inner
        self.capabilities = inner.capabilities

    @property
    def location(self) -> str:
        return self.target.replica

    def _gate(self, op: str) -> None:
        self.world.clock.sleep(0.001)
        faults = self.world.faults[self.location]
        if faults.down:
            raise UnavailableError(f"{self.location} refused the connection", replica=self.location, operation=op)
        if faults.hung:
            self.world.clock.sleep(self.world.hang_s)          # the SDK's read timeout, in virtual time
            raise UnavailableError(f"{self.location} did not answer within {self.world.hang_s:g}s",
                                   retryable=True, replica=self.location, operation=op)
        self.world.crash_point(f"{op}:{self.location}:before")

    def ensure_ready(self) -> None:
        self._gate("ensure_ready")

    def capture_changes(self, cursor: Cursor | None, limit: int = 500) -> ChangePage:
        self._gate("capture")
        self.world.writes_during_capture(self.location)
        self.world.settle_listing(self.location)
        page = self.inner.capture_changes(cursor, limit)
        if self.location in self.world.feed:
            # the keys whose changes this page's read went over (a deleted one is reported as nothing)
            log = self.inner._store.log
            changed = {key_id for key_id, _, _ in log[int((cursor or {}).get("pos", 0)):int(page.cursor["pos"])]}
            self.world.listed(self.location, page.cursor, changed.__contains__)
        else:
            # the names this page's listing went over: from the cursor's position to the new one's
            start = (cursor or {}).get("at")
            end = page.cursor.get("at") if page.more else None
            self.world.listed(self.location, page.cursor,
                              lambda k: (start is None or k > start) and (end is None or k <= end))
        self.world.crash_point(f"capture:{self.location}:after")
        return page

    def current_cursor(self) -> Cursor:
        self._gate("current_cursor")
        self.world.settle_listing(self.location)
        cursor = self.inner.current_cursor()
        # a listing's manifest of everything there now; a feed's position reads nothing
        self.world.listed(self.location, cursor, lambda k: self.location not in self.world.feed)
        return cursor

    def _reading(self) -> bool:
        """Whether what mcrepl reads here (not capture) can bring a native change to the log.

        At a former primary a read finds late writes and logs them; at the primary only capture
        logs native changes (the writer leaves what capture has not read alone, anti-entropy
        waits for capture), so reading there makes nothing visible.
        """
        return self.location != self.world.pointer()

    def apply_batch(self, records: Sequence[Record]) -> list[ApplyResult]:
        self._gate("apply")
        keys = {r.key.id for r in records}
        before = self.world.states(self.location, keys.__contains__)
        if self._reading():
            self.world.looked(self.location, keys.__contains__)         # each write reads the key first
        results = self.inner.apply_batch(records)
        self.world.wrote(self.location, {r.key.id: before.get(r.key.id, "none") for r, res in zip(records, results)
                                         if res.outcome is ApplyOutcome.APPLIED})
        for record, result in zip(records, results):
            if result.outcome is ApplyOutcome.APPLIED:
                self.world.observe_apply(self.location, record)
        self.world.crash_point(f"apply:{self.location}:after")
        return results

    def read(self, key: RecordKey) -> Record | None:
        self._gate("read")
        if self._reading():
            self.world.looked(self.location, key.id.__eq__)
        return self.inner.read(key)

    def list_digests(self) -> Iterator[Digest]:
        self._gate("list_digests")
        if self._reading():
            self.world.looked(self.location)
        return self.inner.list_digests()

    def write_native(self, records: Sequence[Record]) -> None:
        self.inner.write_native(records)

    def delete_native(self, keys: Sequence[RecordKey]) -> None:
        self.inner.delete_native(keys)

    def purge_tombstones(self, older_than_ms: int) -> int:
        self._gate("purge")
        return self.inner.purge_tombstones(older_than_ms)

    def drop(self) -> None:
        self.inner.drop()


@dataclass
class Op:
    """One application operation, as the model records it."""

    id: int
    kind: str                             # "write" | "delete" | "stamped" | "stamped-delete"
    key: str
    location: str
    acked: bool
    ids: frozenset[int] = frozenset()     # write ids the body carries (a write: its own id)
    supersedes: frozenset[int] = frozenset()
    body: dict[str, Any] | None = None
    at: float = 0.0


@dataclass
class Model:
    """What the application did, and which writes each write had seen (its provenance)."""

    ops: list[Op] = field(default_factory=list)
    bodies: dict[int, dict[str, Any]] = field(default_factory=dict)        # write id → body written
    written_ms: dict[int, int] = field(default_factory=dict)               # write id → when, by LWW's clock

    def closure(self, ids: frozenset[int]) -> frozenset[int]:
        """Every write/delete id the given ones had seen, transitively (themselves included)."""
        seen: set[int] = set()
        stack = list(ids)
        by_id = {op.id: op for op in self.ops}
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            op = by_id.get(i)
            if op is not None:
                stack.extend(op.supersedes)
        return frozenset(seen)


def _tombstone_item(item: dict[str, Any]) -> bool:
    from mcrepl.adapters.base.inband import META_FIELD
    meta = item.get(META_FIELD)
    return isinstance(meta, dict) and bool(meta.get("t"))


def body_ids(body: Any) -> frozenset[int]:
    """The write ids a stored body carries (a merged body carries several)."""
    if not isinstance(body, dict):
        return frozenset()
    if isinstance(body.get("ws"), list):
        return frozenset(int(w) for w in body["ws"])
    if body.get("w") is not None:
        return frozenset({int(body["w"])})
    return frozenset()


class App:
    """The application: writes to the location it believes is primary, natively or stamped.

    It learns of a promotion ``lag`` operations late (an unplanned failover: until then
    its writes land on the demoted primary). Stamped writes behave as mcrepl's fenced
    writer does: they check the epoch first and are refused under a stale one.
    """

    def __init__(self, world: "World", believes: str, epoch: int) -> None:
        self.world = world
        self.believes = believes
        self.epoch = epoch
        self.pending: tuple[str, int, int] | None = None      # (location, epoch, ops until it learns)
        self.clock_offset = 0.0
        self.hlc = HybridLogicalClock("app", now_ms=lambda: world.clock.host_ms(self.clock_offset))
        self.stopped = False

    def learn(self, location: str, epoch: int, lag: int = 0) -> None:
        if lag <= 0:
            self.believes, self.epoch, self.pending = location, epoch, None
        else:
            self.pending = (location, epoch, lag)

    def step(self) -> None:
        if self.stopped:
            return
        if self.pending is not None:
            location, epoch, lag = self.pending
            self.pending = (location, epoch, lag - 1) if lag > 1 else None
            if lag <= 1:
                self.believes, self.epoch = location, epoch
        w = self.world
        key = f"k{w.rng.randrange(w.keys):02d}"
        roll = w.rng.random()
        if roll < 0.03:
            w.junk_write(self.believes)
        elif roll < 0.55:
            self.write(key, stamped=False)
        elif roll < 0.7:
            self.delete(key, stamped=False)
        elif roll < 0.9:
            self.write(key, stamped=True)
        else:
            self.delete(key, stamped=True)

    def _current(self, location: str, key: str) -> Record | None:
        return self.world.stores[location].read(self.world.schema.parse_id(key))

    def _seen(self, location: str, key: str) -> frozenset[int]:
        current = self._current(location, key)
        if current is not None and not current.tombstone:
            return self.world.model.closure(body_ids(current.body))
        # absent: the writer saw what the absence there stands for — a delete made or delivered
        # there; where the key never was, every delete acknowledged so far (what it deleted
        # never got there either: the writer's world has none of it)
        if (location, key) in self.world.absence:
            return self.world.absence[(location, key)]
        return frozenset(op.id for op in self.world.model.ops if op.key == key and op.acked
                         and op.kind.endswith("delete"))

    def write(self, key: str, stamped: bool) -> None:
        w = self.world
        op_id = w.next_id()
        body: dict[str, Any] = {"id": key, "w": op_id}
        if w.rng.random() < 0.15:
            body["_mcrepl"] = f"user-{op_id}"                  # a user field named like our metadata
        if w.rng.random() < 0.05:
            body["_mcrepl_fields"] = {"mine": op_id}
        location = self.believes
        seen = self._seen(location, key)
        record = document(w.schema, body)
        acked = self._send(location, record, stamped, delete=False)
        w.model.ops.append(Op(op_id, "stamped" if stamped else "write", key, location, acked,
                              frozenset({op_id}), seen, body, w.clock.now))
        if acked:
            w.model.bodies[op_id] = body

    def delete(self, key: str, stamped: bool) -> None:
        w = self.world
        location = self.believes
        current = self._current(location, key)
        if current is None or current.tombstone:
            return
        op_id = w.next_id()
        seen = self._seen(location, key)
        acked = self._send(location, Record(w.schema.parse_id(key), None), stamped, delete=True, op_id=op_id)
        w.model.ops.append(Op(op_id, "stamped-delete" if stamped else "delete", key, location, acked,
                              frozenset(), seen, None, w.clock.now))

    def _send(self, location: str, record: Record, stamped: bool, delete: bool, op_id: int | None = None) -> bool:
        w = self.world
        if w.app_cut_off(location):
            return False
        store = w.stores[location]
        if not stamped:
            if delete:
                store.delete_native([record.key])
            else:
                store.write_native([record])
            w.note_body(location, record, op_id)
            return True
        if self.epoch < w.current_epoch():
            return False                                       # fenced: the epoch moved on
        stored = store.read(record.key)
        meta = meta_if_valid(stored) if stored is not None else None
        if meta is not None:
            self.hlc.observe(meta.version)
        version = self.hlc.tick(f"{location}/app")           # a writer's own origin: never a clash with mcrepl's
        vector = dict(meta.vector) if meta is not None else {}
        stamped_record = (tombstone_of(w.schema, record.key, version, vector, epoch=self.epoch) if delete
                          else record.stamped(version, vector, epoch=self.epoch))
        (result,) = store.apply_batch([stamped_record])
        if result.outcome is ApplyOutcome.APPLIED:
            w.note_body(location, stamped_record, op_id)
            return True
        return False


def _position(cursor: Cursor) -> str:
    """A capture cursor's identity: a listing's manifest, a feed's position."""
    return str(cursor.get("m", cursor.get("pos")))


class World:
    """Stores, clocks, faults, the app and the model of one simulated run."""

    def __init__(self, seed: int, namespace: str, locations: Sequence[str], keys: int = 10,
                 listing: bool = False, feed: bool = False) -> None:
        from mcrepl.adapters.base import KeyAttribute, KeySchema
        #: locations captured by listing, as GCS and S3 are (else a change log, as DynamoDB's stream)
        self.listing = {loc for loc in locations if listing and loc.startswith("gcs:")}
        #: locations captured as a latest-version change feed, as Cosmos DB is (no deletes, no old images)
        self.feed = {loc for loc in locations if feed and loc.startswith("cosmos:")}
        #: locations whose capture never sees a write deleted again before it read the key: listings
        #: and latest-version feeds alike (see :meth:`looked`)
        self.blind = self.listing | self.feed
        #: (location, key) → acknowledged ops there since mcrepl last looked at the key there, and
        #: what it found then ("none", "tombstone" or "live")
        self.unseen_ops: dict[tuple[str, str], list[int]] = {}
        self.last_seen: dict[tuple[str, str], str] = {}
        #: ops no listing-based capture can ever see (see :meth:`looked`)
        self.invisible: set[int] = set()
        #: location → the last capture listing not yet counted: (its manifest, what it read, op ids by then)
        self.pending_listing: dict[str, tuple[str, dict[str, str], int]] = {}
        #: the state's saved capture cursor of a location (the simulation sets it)
        self.saved_cursor: Callable[[str], Cursor | None] = lambda location: None
        self.seed = seed
        self.rng = random.Random(seed)
        self.namespace = namespace
        self.clock = SimClock()
        self.schema = KeySchema(KeyAttribute("id"))
        self.keys = keys
        self.model = Model()
        self.faults: dict[str, Faults] = {loc: Faults() for loc in locations}
        self.app_partitioned: set[str] = set()
        self.store_skew: dict[str, float] = {loc: 0.0 for loc in locations}
        self.hang_s = 30.0
        self.crash_at: int | None = None
        self.calls = 0
        self.crashes = 0
        self.write_during_capture = 0.0
        self.stores: dict[str, MemoryAdapter] = {}
        self.capture_modes: dict[str, str] = {}
        for loc in locations:
            # how a store's capture starts: a table scan then its stream, or a change feed from
            # the beginning (each key's latest change); both as the real stores do
            self.capture_modes[loc] = self.rng.choice(["feed", "scan"])
            self.stores[loc] = MemoryAdapter(self.target(loc))
            self.stores[loc]._store.now_ms = lambda loc=loc: self.store_ms(loc)   # the store's own (skewed) clock
        self.applied: dict[tuple[str, str], frozenset[int]] = {}
        # (location, key) → the writes and deletes an absence there stands for: what a writer
        # who finds the key absent has seen (a store's absence carries no history of its own)
        self.absence: dict[tuple[str, str], frozenset[int]] = {}
        self.regressions: list[tuple[str, str, frozenset[int], frozenset[int]]] = []   # (location, key, new, before)
        self.epoch_of: Callable[[], int] = lambda: 1
        self.pointer: Callable[[], str] = lambda: locations[0]
        self.junk_at_primary: set[str] = set()
        self.app = App(self, locations[0], 1)
        self._ids = 0
        self.junk = 0

    def target(self, location: str) -> ReplicaTarget:
        provider, _, region = location.partition(":")
        options = {"namespace": self.namespace, "initial_capture": self.capture_modes.get(location, "log")}
        if location in self.listing:
            options["capture"] = "listing"
        if location in self.feed:
            options["capture"] = "feed"
        return ReplicaTarget(location, "memory", region, "items", "document", self.schema, "items", options)

    def adapter_factory(self, target: ReplicaTarget) -> ReplicaAdapter:
        return SimStore(self, MemoryAdapter(self.target(target.replica)))

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def current_epoch(self) -> int:
        return self.epoch_of()

    def store_ms(self, location: str) -> int:
        return self.clock.host_ms(self.store_skew.get(location, 0.0))

    def app_cut_off(self, location: str) -> bool:
        return location in self.app_partitioned

    # -- crash points ----------------------------------------------------------------

    def arm_crash(self, after_calls: int) -> None:
        self.crash_at = self.calls + max(1, after_calls)

    def crash_point(self, where: str) -> None:
        self.calls += 1
        if self.crash_at is not None and self.calls >= self.crash_at:
            self.crash_at = None
            self.crashes += 1
            raise SimulatedCrash(where)

    # -- concurrent writes and observations -----------------------------------------------

    def writes_during_capture(self, location: str) -> None:
        """While capture reads the app's primary, the app may write (the scan's overlap window)."""
        if location == self.app.believes and self.rng.random() < self.write_during_capture:
            self.app.step()

    def junk_write(self, location: str) -> None:
        """An item capture cannot decode (no key field): it must be quarantined, never stall capture."""
        if self.app_cut_off(location):
            return
        self.junk += 1
        key = f"junk{self.junk:03d}"
        self.stores[location].write_raw(key, {"not_an_id": self.junk})
        if location == self.pointer():
            self.junk_at_primary.add(key)

    def observe_apply(self, location: str, record: Record) -> None:
        """Every body mcrepl lands at a location must be newer than the one it replaces there."""
        if record.key.id.startswith("junk"):
            return
        new = body_ids(record.body) if not record.tombstone else frozenset()
        before = self.applied.get((location, record.key.id))
        self.applied[(location, record.key.id)] = new
        if record.tombstone:
            # a delivered delete: it stands for the deletes acknowledged by now (and what they saw)
            deletes = [op for op in self.model.ops if op.key == record.key.id and op.acked
                       and op.kind.endswith("delete")]
            self.absence[(location, record.key.id)] = self.model.closure(
                frozenset(op.id for op in deletes) | (before or frozenset()))
        if before is None or not new or not before or new == before:
            return
        older = new <= self.model.closure(before) - before
        if older:
            self.regressions.append((location, record.key.id, new, before))

    def looked(self, location: str, covers: Callable[[str], bool] = lambda key_id: True) -> None:
        """mcrepl read ``location``'s keys that ``covers`` names, and acts on what it read (a read
        at a former primary, a write's read there, a write of its own).

        At a listing-captured location, the ops since the last look at a key that left it absent,
        where it was absent or an mcrepl tombstone then, are invisible to any listing (a write
        deleted again; a tombstone's name gone is a purge): no capture can report them, and the
        checker does not ask for them (docs/sync.md says so to users). The same holds at a
        location captured by a latest-version feed, which reports a key deleted since it changed
        not at all.
        """
        if location not in self.blind:
            return
        self.settle_listing(location)
        self._look(location, self.states(location, covers), self._ids)

    def listed(self, location: str, cursor: Cursor | None, covers: Callable[[str], bool]) -> None:
        """A capture listing read the keys ``covers`` names; it counts once its page is committed
        (the state's saved cursor is the page's), see :meth:`settle_listing`."""
        if location not in self.blind or cursor is None:
            return
        self.settle_listing(location)
        self.pending_listing[location] = (_position(cursor), self.states(location, covers), self._ids)

    def settle_listing(self, location: str) -> None:
        """Count the last capture listing at ``location`` if its page was committed, else forget it."""
        pending = self.pending_listing.pop(location, None)
        if pending is None:
            return
        manifest, states, ids_at = pending
        saved = self.saved_cursor(location)
        if saved is not None and _position(saved) == manifest:
            self._look(location, states, ids_at)

    def wrote(self, location: str, replaced: dict[str, str]) -> None:
        """mcrepl wrote these keys at ``location`` over what ``replaced`` says was there.

        Its write is taken over what its read found (at the primary the writer leaves alone a
        state capture has not read, so what it overwrites is what mcrepl knew, or an absence):
        the ops before it are judged against that state, and what it wrote it knows it holds.
        """
        if location not in self.blind or not replaced:
            return
        self.settle_listing(location)
        self._look(location, replaced, self._ids)
        self._look(location, self.states(location, replaced.__contains__), self._ids)

    def states(self, location: str, covers: Callable[[str], bool]) -> dict[str, str]:
        """What each key ``covers`` names is at ``location`` now: "none", "tombstone" or "live"."""
        items = self.stores[location]._store.items
        keys = {k for (loc, k) in self.unseen_ops if loc == location} | \
            {k for (loc, k) in self.last_seen if loc == location} | set(items)
        return {k: "none" if items.get(k) is None else "tombstone" if _tombstone_item(items[k]) else "live"
                for k in keys if covers(k)}

    def _look(self, location: str, states: dict[str, str], ids_at: int) -> None:
        for key_id, now in states.items():
            pending = self.unseen_ops.pop((location, key_id), [])
            ops = [o for o in pending if o <= ids_at]
            if pending[len(ops):]:
                self.unseen_ops[(location, key_id)] = pending[len(ops):]
            if ops and now == "none" and self.last_seen.get((location, key_id), "none") in ("none", "tombstone"):
                self.invisible.update(ops)
            self.last_seen[(location, key_id)] = now

    def note_body(self, location: str, record: Record, delete_id: int | None = None) -> None:
        """The app wrote ``record`` at ``location``: it is what mcrepl's next write there must not undercut."""
        if location in self.blind:
            ops = body_ids(record.body) if not (record.tombstone or record.body is None) else \
                frozenset({delete_id} if delete_id is not None else ())
            self.unseen_ops.setdefault((location, record.key.id), []).extend(ops)
        if record.tombstone or record.body is None:
            before = self.applied.pop((location, record.key.id), frozenset())
            self.absence[(location, record.key.id)] = self.model.closure(
                before | self.absence.get((location, record.key.id), frozenset())
                | (frozenset({delete_id}) if delete_id is not None else frozenset()))
        else:
            self.applied[(location, record.key.id)] = body_ids(record.body)
            # when it was written, by the clock last-writer-wins reads: the writer's stamp, or
            # the store's own clock for a native write
            meta = meta_if_valid(record)
            for op_id in body_ids(record.body):
                self.model.written_ms[op_id] = meta.written_at_ms if meta is not None else self.store_ms(location)

    def forget(self, location: str) -> None:
        """``location`` lost everything (wiped): what it held before is no yardstick any more."""
        for key in [k for k in self.applied if k[0] == location]:
            del self.applied[key]
        for key in [k for k in self.absence if k[0] == location]:
            del self.absence[key]

    def heal(self) -> None:
        for f in self.faults.values():
            f.down = f.hung = False
        self.app_partitioned.clear()
        self.crash_at = None
