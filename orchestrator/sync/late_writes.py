"""Watching a former primary's change log for late writes.

An application that has not heard of a promotion may go on writing to the old primary
after it rejoined. Such a write is found when a lane or anti-entropy meets the key there
(:func:`.recovery.is_late`), but what they read is the item, and the item cannot show a
write that a later delete removed again: the key is gone, exactly as mcrepl left it. The
location's change log shows both. So for ``sync.late_write_watch`` after the demotion it
is read on from the capture cursor the rejoin left, each version the log has not seen
logged as a late write (mcrepl's own deliveries coming back are not) and settled against
what happened meanwhile like every other version. Only a store whose capture is a change
log that shows deletes (a DynamoDB stream) is watched; elsewhere late writes are found
only as their items show them.

While a location is watched, a late write found there is read from its change log first,
the item itself logged only where that log shows nothing new for the key: the log holds the writes in the order the store took them,
and an item read directly is only the last of them. Logging that one first and the
earlier ones later, when the watch reached them, would deliver an older write after a
newer one.
"""

from __future__ import annotations

import logging

from mcrepl.adapters.base import AdapterError, ReplicaAdapter, ReplicaTarget, UnavailableError
from mcrepl.orchestrator.state import StateStore

from .recovery import drain_change_log
from .settling import Settling

log = logging.getLogger("mcrepl.sync.late_writes")

#: the audit entry of versions a former primary took after its demotion, logged as late writes
LATE_WRITES = "late-writes"


class LateWriteWatch:
    """The late-write watch of one location (``active`` while it is due, see the module docstring)."""

    def __init__(self, state: StateStore, target: ReplicaTarget, adapter: ReplicaAdapter, settling: Settling,
                 batch_size: int, window_s: float) -> None:
        self.state = state
        self.target = target
        self.adapter = adapter
        self.settling = settling
        self.batch_size = batch_size
        # a change log that shows deletes (a DynamoDB stream): a listing compared with the last
        # one (GCS, S3) cannot show a write deleted again in between, and costs a full listing
        log_of_changes = adapter.capabilities.incremental_capture and adapter.capabilities.capture_sees_deletes
        self.active = window_s > 0 and log_of_changes and self._within(window_s)

    def _within(self, window_s: float) -> bool:
        demoted = self.state.demoted_since(self.target.dataset, self.target.replica)
        return demoted is not None and self.state.clock.time() - demoted < window_s

    def catch_up(self, upto: int) -> set[str] | None:
        """Log what the change log shows since it was last read: the keys logged (``None``: it could
        not be read from there).

        ``upto``: the location holds everything logged up to there (its lane's offset).
        """
        ds, location = self.target.dataset, self.target.replica
        # on from the location's capture cursor (where its rejoin left it): one position per
        # location, so no change is read twice — a native change read again would be logged again
        cursor = self.state.log.cursor(ds, location)
        try:
            found = None if cursor is None else drain_change_log(
                self.state, self.target, self.adapter, self.settling, cursor, upto, {}, self.batch_size,
                audit=LATE_WRITES)
            if found is None:
                # the change log no longer reaches back to the cursor (or there is none): read it
                # from here on; a change made in between is found when a lane meets it, or by anti-entropy
                with self.state.transaction():
                    self.state.log.save_cursor(ds, location, self.adapter.current_cursor())
                log.warning("%s at %s: the former primary's change log could not be read from where it was "
                            "left; late writes are watched from now on (anti-entropy finds what landed before)",
                            ds, location)
                return None
        except AdapterError as exc:
            if isinstance(exc, UnavailableError):
                raise                             # the store does not answer: the lane's write would fail too
            # otherwise the watch never holds up the lane (its stream turned off, say): this window's
            # late writes are found as the writer meets them, and the next window reads on
            log.warning("%s at %s: the former primary's change log could not be read (%s); late writes are "
                        "found as the lane meets them until it can", ds, location, exc)
            return None
        if found:
            log.warning("%s at %s: %d late writes logged — changes the former primary took after its demotion; "
                        "is an application still writing there?", ds, location, len(found))
        return {r.key.id for r in found}


__all__ = ["LATE_WRITES", "LateWriteWatch"]
