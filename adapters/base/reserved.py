"""mcrepl's reserved key range: records the orchestrator itself writes beside user data.

Follow mode writes a *heartbeat* to each dataset's primary at an interval and times its
arrival at every replica, so lag is measured end to end even when applications write
nothing. It lives in every copy like any record (captured, logged, routed, applied), but
it is not user data: verify and anti-entropy leave it out of their comparisons and
counts, the residency rules do not apply to it (it carries no user field), and listings
meant for people (``mcrepl local peek``) skip it.

The range is every key whose partition value is :data:`HEARTBEAT_ID` (a dataset with a
sort key gets one heartbeat per dataset too: its sort value is the same string, or ``0``).
Only string partition keys can hold it; ``validate`` refuses follow-mode heartbeats on
any other.
"""

from __future__ import annotations

from .record import KeySchema, RecordKey

HEARTBEAT_ID = "_mcrepl:heartbeat"
"""The partition value (and blob name) of the heartbeat record."""


def is_reserved(key_id: str) -> bool:
    """Whether ``key_id`` (a :attr:`RecordKey.id`) lies in mcrepl's reserved range."""
    return key_id == HEARTBEAT_ID or key_id.startswith(HEARTBEAT_ID + "|")


def heartbeat_key(schema: KeySchema) -> RecordKey:
    """The heartbeat's key under ``schema`` (a string partition key; see the module docstring)."""
    if schema.partition.type != "S":
        raise ValueError("heartbeats need a string partition key")
    if schema.sort is None:
        return RecordKey((HEARTBEAT_ID,))
    return RecordKey((HEARTBEAT_ID, 0 if schema.sort.type == "N" else
                      HEARTBEAT_ID.encode() if schema.sort.type == "B" else HEARTBEAT_ID))


def heartbeat_capable(schema: KeySchema) -> bool:
    """Whether a dataset keyed by ``schema`` can hold the heartbeat record."""
    return schema.partition.type == "S"


__all__ = ["HEARTBEAT_ID", "heartbeat_capable", "heartbeat_key", "is_reserved"]
