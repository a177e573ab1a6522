"""The leases one dataset pass holds: its capture partition and every lane it drives.

Taken together before the pass writes anything (a backfill included), renewed while it
runs, released when it ends. When another live coordinator holds any of them the pass
does nothing and says who holds what until when: two coordinators never capture the
same primary (which would stamp its changes twice) nor drive the same lane. See
:mod:`mcrepl.orchestrator.state.leases` for the lease model.
"""

from __future__ import annotations

from typing import Callable, Iterable

from mcrepl.orchestrator.state import Lease, StateStore, this_owner


class PassLeases:
    """The leases of one dataset pass; ``ttl_s`` is how long a silent owner keeps them."""

    def __init__(self, state: StateStore, dataset: str, ttl_s: float, now: Callable[[], float]) -> None:
        self.state = state
        self.dataset = dataset
        self.ttl_s = ttl_s
        self._now = now
        self.owner = this_owner()
        self.held: list[Lease] = []
        self.lost = False

    def take(self, partitions: Iterable[str]) -> str | None:
        """Take every partition's lease; ``None`` on success, else why not (and nothing is held)."""
        for partition in partitions:
            lease, holder = self.state.leases.take(self.dataset, partition, self.owner, self.ttl_s)
            if lease is None:
                assert holder is not None
                self.release()
                return (f"{partition} of {self.dataset} is leased by coordinator {holder.owner} for another "
                        f"{max(0.0, holder.expires_at - self._now()):.0f}s; this pass left the dataset alone")
            self.held.append(lease)
        return None

    def renew(self) -> bool:
        """Push every lease forward once half its time has passed; ``False`` once one was lost."""
        if self.lost:
            return False
        now = self._now()
        for i, lease in enumerate(self.held):
            if lease.expires_at - now > self.ttl_s / 2:
                continue
            renewed = self.state.leases.renew(lease, self.ttl_s)
            if renewed is None:
                self.lost = True
                return False
            self.held[i] = renewed
        return True

    def release(self) -> None:
        """Give every lease up (the next pass, of this or another coordinator, takes them at once)."""
        for lease in self.held:
            self.state.leases.release(lease)
        self.held = []


def pass_partitions(primary: str, locations: Iterable[str]) -> list[str]:
    """The partitions one pass of a dataset drives: capture from ``primary``, a lane per location."""
    return [f"capture:{primary}", *(f"lane:{loc}" for loc in locations)]


__all__ = ["PassLeases", "pass_partitions"]
