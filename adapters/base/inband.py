"""Metadata stored in-band, beside the user's fields, without ever eating one of them.

DynamoDB items, Cosmos documents and the in-memory store keep :class:`ReplicationMeta`
in a reserved attribute, ``_mcrepl``, of the item itself. A user's own field may carry
that name (or the wrapper's), so two rules keep every field:

* **writing**: a body field whose name is reserved goes, unchanged, inside the
  ``_mcrepl_fields`` wrapper map (the wrapper name itself is reserved too, so a user field
  called ``_mcrepl_fields`` is wrapped as well);
* **reading**: the reserved names are ours only when ``_mcrepl`` decodes as metadata.
  An item whose ``_mcrepl`` is not metadata was written by an application, and every one
  of its attributes — ``_mcrepl`` included — is user data.

A store with other reserved names (Cosmos's ``_rid``, ``id``, ``ttl``) passes its own
``reserved`` predicate; the wrapper rule is the same.
"""

from __future__ import annotations

from typing import Callable, Mapping, TypeVar

from .record import ReplicationMeta

V = TypeVar("V")

META_FIELD = "_mcrepl"
WRAPPED_FIELDS = "_mcrepl_fields"
MCREPL_NAMES = frozenset({META_FIELD, WRAPPED_FIELDS})


def is_mcrepl_name(name: str) -> bool:
    """Whether ``name`` collides with an attribute mcrepl stores beside the body."""
    return name in MCREPL_NAMES


def split_reserved(body: Mapping[str, V], reserved: Callable[[str], bool] = is_mcrepl_name
                   ) -> tuple[dict[str, V], dict[str, V]]:
    """``(top-level fields, fields to put inside the wrapper)`` for writing ``body``."""
    top: dict[str, V] = {}
    wrapped: dict[str, V] = {}
    for name, value in body.items():
        (wrapped if reserved(name) or name in MCREPL_NAMES else top)[name] = value
    return top, wrapped


def user_fields(stored: Mapping[str, V], meta: ReplicationMeta | None,
                unwrap: Callable[[V], Mapping[str, V] | None],
                ignore: Callable[[str], bool] = lambda name: False) -> dict[str, V]:
    """The user's fields of a stored item whose ``_mcrepl`` decoded to ``meta``.

    With metadata, ``_mcrepl`` is ours and the wrapper's content goes back to the top
    level; without, every attribute is the user's. ``ignore`` drops a store's own system
    attributes (Cosmos ``_ts`` …) in both cases.
    """
    if meta is None:
        return {k: v for k, v in stored.items() if not ignore(k)}
    body = {k: v for k, v in stored.items() if k not in MCREPL_NAMES and not ignore(k)}
    wrapped = stored.get(WRAPPED_FIELDS)
    if wrapped is not None:
        body.update(unwrap(wrapped) or {})
    return body
