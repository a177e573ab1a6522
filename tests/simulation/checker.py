"""The simulation's checker: invariants that must hold, each of which a broken engine can violate.

* **claims**: a pass that says *converged* has copies that are equal right then; a lane on
  a healthy store is *caught up* at the end of any pass whose capture worked (capture never
  waits on another lane);
* **convergence** (in :meth:`Simulation.quiesce`): once every lane is caught up and nothing
  outside mcrepl changed a store, the copies are equal — and after anti-entropy they are
  equal, whatever happened;
* **nothing acknowledged lost, nothing resurrected** (:func:`check_final`): every write the
  application had acknowledged is in the final state, was seen by the write that is
  (provenance: each write records which writes it saw), or lost a conflict that the
  conflict log names; every acknowledged delete was seen by the final write or lost a
  logged conflict; a deleted value never comes back. The one exception is what no listing
  can see: at a listing-captured location, a write deleted again before mcrepl looked at the
  key there (:meth:`.world.World.looked`), which users are told capture cannot report;
* **fidelity**: the final body of every key is exactly the body its write wrote (user
  fields named ``_mcrepl`` included), or a merge of such bodies;
* **conflicts** (:func:`check_conflicts`): each logged once, and only between versions
  that really were concurrent;
* **audit** (:func:`check_audit`): exactly one audit entry per committed batch;
* **quarantine**: every undecodable item written at the primary is quarantined;
* **order** (in :mod:`.world`): no location ever receives a body older than the one it holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcrepl.adapters.base import document, meta_if_valid, vectors_concurrent

from .world import body_ids

if TYPE_CHECKING:
    from .sim import Simulation


def _state_of(sim: "Simulation", location: str) -> dict[str, tuple[str, bool]]:
    """key → (comparable hash, tombstone) of a store, bypassing faults (the checker sees all)."""
    out = {}
    for d in sim.world.stores[location].list_digests():
        if not d.key_id.startswith("junk"):
            out[d.key_id] = (d.content_hash, d.tombstone)
    return out


def copies_differ(sim: "Simulation") -> list[str]:
    """Keys on which some configured location differs from the primary (a delete equals absence)."""
    primary = sim._pointer()
    locations = [primary, *sim.others()]
    states = {loc: _state_of(sim, loc) for loc in locations}
    live = {loc: {k: h for k, (h, t) in s.items() if not t} for loc, s in states.items()}
    differ = []
    for loc in locations[1:]:
        for key in sorted(set(live[primary]) | set(live[loc])):
            if live[primary].get(key) != live[loc].get(key):
                differ.append(f"{key}@{loc}")
    return differ


def check_claims(sim: "Simulation", report: Any) -> list[str]:
    """What a pass said must be true of the stores right after it."""
    found: list[str] = []
    if report is None:
        return found
    for ds in report.datasets.values():
        if ds.converged:
            differ = copies_differ(sim)
            if differ:
                found.append(f"a pass said converged while the copies differed: {differ[:5]}")
        if ds.capture_error is not None:
            continue
        for lane in ds.lanes.values():
            healthy = sim._healthy(lane.replica)
            if healthy and lane.errors == 0 and lane.breaker == "closed" and not lane.caught_up \
                    and "attached" not in (lane.reason or ""):
                found.append(f"{lane.replica} was healthy but not caught up after a pass whose capture "
                             f"worked: {lane.reason}")
    return found


def _parties(sim: "Simulation") -> dict[str, set[str]]:
    """key → content hashes of every version a logged conflict involved."""
    out: dict[str, set[str]] = {}
    for row in [*sim.retired_conflicts, *sim.state.journal.conflicts("items", limit=100_000)]:
        out.setdefault(row["key_id"], set()).update({row["incoming"]["h"], row["stored"]["h"],
                                                     *(o["h"] for o in row.get("others", []))})
    return out


def _hash_of(sim: "Simulation", body: dict[str, Any]) -> str:
    return document(sim.world.schema, body).digest_hash(False)


def _reported_missing(sim: "Simulation") -> set[str]:
    keys: set[str] = set()
    for sink in sim.sinks:
        for e in sink.entries:
            if e["kind"] == "rejoin":
                keys.update(e["payload"].get("missing_keys") or [])
    return keys


def check_final(sim: "Simulation") -> list[str]:
    """Nothing acknowledged lost, nothing resurrected, every body exactly as written."""
    w = sim.world
    for location in w.blind:
        w.settle_listing(location)            # the last capture listings count if they were committed
    found: list[str] = []
    parties = _parties(sim)
    missing = _reported_missing(sim)
    primary = w.stores[sim._pointer()]
    tombstone_hash = {}
    for key in sorted({op.key for op in w.model.ops}):
        record = primary.read(w.schema.parse_id(key))
        tombstone_hash[key] = document(w.schema, {"id": key}).digest_hash(True)
        in_conflict = parties.get(key, set())
        writes = [op for op in w.model.ops if op.key == key and op.acked and op.kind in ("write", "stamped")]
        deletes = [op for op in w.model.ops if op.key == key and op.acked and op.kind.endswith("delete")]
        # a logged conflict's losing side takes what it had superseded with it: all of it is accounted for
        party_ops = {op.id for op in writes if _hash_of(sim, op.body or {}) in in_conflict}
        if tombstone_hash[key] in in_conflict:
            party_ops |= {op.id for op in deletes}
        accounted = w.model.closure(frozenset(party_ops))
        live = record is not None and not record.tombstone
        if live:
            assert record is not None
            final_ids = body_ids(record.body)
            unknown = final_ids - set(w.model.bodies)
            if not final_ids or unknown:
                found.append(f"{key}: the final body carries writes nobody acknowledged: {sorted(unknown)}")
                continue
            found += _fidelity(sim, key, record.body, final_ids)
            seen = w.model.closure(final_ids)
            for op in writes:
                if op.id not in seen and op.id not in accounted and op.id not in w.invisible:
                    found.append(f"{key}: acknowledged write {op.id} at {op.location} is lost (the final "
                                 f"write {sorted(final_ids)} never saw it, and no logged conflict names it)")
            for op in deletes:
                if op.id in seen or op.id in accounted or key in missing or op.id in w.invisible:
                    continue
                came_back = final_ids & w.model.closure(op.supersedes)
                what = "resurrected" if came_back else "lost"
                found.append(f"{key}: acknowledged delete {op.id} at {op.location} {what}: the final write "
                             f"{sorted(final_ids)} never saw it, and no logged conflict names it")
        else:
            seen_by_deletes = set()
            for op in deletes:
                seen_by_deletes |= w.model.closure(op.supersedes | {op.id})
            for op in writes:
                if op.id not in seen_by_deletes and op.id not in accounted and op.id not in w.invisible:
                    found.append(f"{key}: acknowledged write {op.id} at {op.location} is lost: the key ended "
                                 "deleted by deletes that never saw it, and no logged conflict names it")
    return found


def _fidelity(sim: "Simulation", key: str, body: dict[str, Any], ids: frozenset[int]) -> list[str]:
    """The final body is the body a write wrote (a merged body: the newest write's fields)."""
    bodies = sim.world.model.bodies
    if len(ids) == 1 and "ws" not in body:
        (only,) = ids
        if body != bodies[only]:
            return [f"{key}: the final body differs from what write {only} wrote: "
                    f"{sorted(set(body) ^ set(bodies[only]))} fields differ"]
        return []
    expected = {k: v for k, v in body.items() if k not in ("w", "ws")}
    if not any({k: v for k, v in bodies[i].items() if k not in ("w", "ws")} == expected for i in ids):
        return [f"{key}: the merged body matches none of the merged writes' bodies"]
    return []


def check_quarantine(sim: "Simulation") -> list[str]:
    """Every undecodable item written at the primary of the current state file is quarantined."""
    rows = {r["key_id"] for r in sim.state.journal.quarantined("items", limit=100_000)}
    written = sim.world.junk_at_primary
    lost = sorted(k for k in written if k not in rows)
    return [f"undecodable items written at the primary were not quarantined: {lost[:5]}"] if lost else []


def check_conflicts(sim: "Simulation") -> list[str]:
    """Each conflict logged once, and only between versions neither of which had seen the other."""
    found: list[str] = []
    pairs: set[tuple[str, frozenset[str]]] = set()
    for row in [*sim.retired_conflicts, *sim.state.journal.conflicts("items", limit=100_000)]:
        incoming, stored = row["incoming"], row["stored"]
        if not vectors_concurrent(incoming.get("vv", {}), stored.get("vv", {})):
            found.append(f"{row['key_id']}: a conflict was logged between versions that were not concurrent")
        pair = (row["key_id"], frozenset({incoming["v"], stored["v"]}))
        if pair in pairs:
            found.append(f"{row['key_id']}: the conflict {sorted(pair[1])} was logged twice")
        pairs.add(pair)
    return found


def check_order(sim: "Simulation") -> list[str]:
    """No location went back to a body its current one had superseded, except through a conflict.

    Last-writer-wins chooses by the clocks that stamped the writes, so a store whose clock is
    behind can make the body that saw the other one lose: the resolver's documented choice,
    allowed when a logged conflict names both bodies and the one that came back was written
    strictly later by those clocks. Any other step back is a change applied out of order (a
    re-stamped old body beating a later write, say).
    """
    parties = _parties(sim)
    found = []

    def hashes(ids: frozenset[int]) -> set[str]:
        return {_hash_of(sim, sim.world.model.bodies[i]) for i in ids if i in sim.world.model.bodies}

    def written(ids: frozenset[int]) -> int:
        return max((sim.world.model.written_ms.get(i, 0) for i in ids), default=0)

    for location, key, new, before in sim.world.regressions:
        in_conflict = parties.get(key, set())
        later = written(new) > written(before)
        if later and hashes(new) & in_conflict and hashes(before) & in_conflict:
            continue
        found.append(f"order: {location} went back on {key}: {sorted(new)} after {sorted(before)}")
    return found[:5]


def check_audit(sim: "Simulation") -> list[str]:
    """Every committed batch has exactly one audit entry (the current state file)."""
    sim.state.audit.flush()
    entries = sim.sinks[-1].entries
    found = []
    for lane in sim.state.lanes.all("items"):
        audited = sum(1 for e in entries if e["kind"] == "batch" and e["payload"].get("replica") == lane.replica)
        if audited != lane.batches:
            found.append(f"{lane.replica}: {lane.batches} batches committed, {audited} audited")
    return found


__all__ = ["check_audit", "check_claims", "check_conflicts", "check_final", "check_order", "check_quarantine",
           "copies_differ", "meta_if_valid"]
