"""Promotion: move a dataset's primary pointer, bump the epoch, hand the demoted primary a lane.

:meth:`StateStore.set_primary` bumps the epoch durably (and, with ``fence``, records when
the old epoch ended, which arms the split-brain guard). The demoted primary becomes a
replica lane: every entry in the capture log up to now was captured *from* it, so its
lane starts at the log head — starting at an older offset would wait forever for
entries already truncated (they were applied everywhere else) and never report it drained.
"""

from __future__ import annotations

from mcrepl.orchestrator.state import PrimaryPointer, StateStore


def promote(state: StateStore, dataset: str, location: str, *, fence: bool = True) -> PrimaryPointer:
    """Make ``location`` the primary of ``dataset`` under a new epoch; returns the new pointer.

    Replication reverses on the sync engine's next pass, which reads the pointer afresh.
    """
    with state.transaction():
        current = state.db.one("SELECT location FROM primary_pointer WHERE dataset=?", (dataset,))
        pointer = state.set_primary(dataset, location, fence=fence)
        if current is not None and current["location"] != location:
            head = state.log.head(dataset)
            state.lanes.commit_batch(dataset, str(current["location"]), head, {})
    return pointer
