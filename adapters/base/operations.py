"""Declarations of the cloud API operations an adapter performs, and which mcrepl role needs each.

Every adapter keeps one :class:`OperationInventory` in ``adapters/<provider>/operations.py``.
The IAM renderers (:mod:`mcrepl.policies.iam`) build every policy from these inventories,
and ``tests/test_iam_operations.py`` records the calls each adapter really makes against the
emulators during sync, verify and repair and fails on any call not declared here — so a
grant can't go missing (the call would fail in the cloud with 403) or linger unused.

Roles follow from the adapter methods an operation serves (:data:`ROLE_METHODS`):
``capture`` reads a primary, ``apply`` writes a replica, ``verify`` compares, ``admin``
creates and drops stores. ``write_native``/``delete_native`` are the *application's*
writes (seeding in the demo and tests), so operations used only there get no role.

Importing this module loads no cloud SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

Role = Literal["capture", "apply", "verify", "admin"]
ROLES: tuple[Role, ...] = ("capture", "apply", "verify", "admin")

#: adapter methods → the roles whose identity runs them. ``create`` is ``ensure_ready``
#: creating a missing store (admin); ``ensure_ready`` itself only opens and checks.
ROLE_METHODS: dict[str, tuple[Role, ...]] = {
    "ensure_ready": ("capture", "apply", "verify", "admin"),
    "capture_changes": ("capture",),
    "current_cursor": ("capture",),
    "apply_batch": ("apply",),
    "purge_tombstones": ("apply",),
    "list_digests": ("verify",),
    "read": ("verify",),
    "read_many": ("verify",),
    "create": ("admin",),
    "drop": ("admin",),
    # the heartbeat (issue 18): mcrepl's own plain write of its reserved key at a primary, made
    # by the identity that already writes there (the primary's lane delivers settlements)
    "write_heartbeat": ("apply",),
    "write_native": (),
    "delete_native": (),
    # failover (issue 14): run by the operator's identity (mcrepl failover, mcrepl doctor) or the
    # application's (mcrepl.client), not by an mcrepl role, so 'mcrepl iam render' grants none of them
    "publish_epoch": (),
    "doctor": (),
    "switch_dns": (),
    "fenced_write": (),
}

Plane = Literal["data", "control"]


@dataclass(frozen=True)
class Operation:
    """One API operation an adapter performs.

    ``name`` is what the recording test sees for the call (a botocore ``service:Operation``
    in IAM spelling, a Cosmos DB data action, a Cloud Storage JSON API method);
    ``permissions`` are the cloud permissions that call needs (default: ``name`` itself);
    ``resource`` is the kind of resource they are granted on (``table``, ``stream``,
    ``key``, ``container``, ``account``, ``bucket``, ``project``); ``used_by`` names the
    adapter methods that make the call; ``when`` limits the grant to stores with a
    feature (``"cmk"``: a customer-managed key); ``plane`` tells data-plane grants from
    control-plane ones (Cosmos DB creates containers only through Azure Resource Manager).
    """

    name: str
    resource: str
    used_by: tuple[str, ...]
    permissions: tuple[str, ...] = ()
    when: str | None = None
    plane: Plane = "data"
    note: str = ""

    def __post_init__(self) -> None:
        unknown = [m for m in self.used_by if m not in ROLE_METHODS]
        if unknown:
            raise ValueError(f"operation {self.name}: unknown adapter method(s) {unknown}; "
                             f"use one of {sorted(ROLE_METHODS)}")

    @property
    def grants(self) -> tuple[str, ...]:
        """The permissions to grant for this call."""
        return self.permissions or (self.name,)

    @property
    def roles(self) -> frozenset[Role]:
        """Every role whose identity makes this call."""
        return frozenset(r for m in self.used_by for r in ROLE_METHODS[m])


@dataclass(frozen=True)
class OperationInventory:
    """Every operation one adapter performs; ``module`` is where it is declared (for errors)."""

    provider: str
    module: str
    operations: tuple[Operation, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [op.name for op in self.operations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{self.module}: operations declared twice: {dupes}")

    def get(self, name: str) -> Operation | None:
        """The declaration of ``name``, or ``None`` when the adapter never declared it."""
        return next((op for op in self.operations if op.name == name), None)

    def for_role(self, role: Role, *, resource: str | None = None, plane: Plane | None = None,
                 features: Iterable[str] = ()) -> list[Operation]:
        """Operations ``role`` needs, optionally only those on one resource kind or plane.

        Operations with a ``when`` feature are included only if that feature is in
        ``features`` (e.g. KMS grants only for stores encrypted with a customer key).
        """
        have = set(features)
        return [op for op in self.operations
                if role in op.roles and (resource is None or op.resource == resource)
                and (plane is None or op.plane == plane) and (op.when is None or op.when in have)]

    def grants(self, role: Role, **kw: object) -> list[str]:
        """Sorted, de-duplicated permissions of :meth:`for_role`."""
        return sorted({p for op in self.for_role(role, **kw) for p in op.grants})  # type: ignore[arg-type]

    def undeclared_message(self, name: str, during: str) -> str:
        """What the recording test prints for a call nobody declared: the call and the fix."""
        return (f"{self.provider} adapter called {name!r} during {during}, but it is not declared: "
                f"add Operation({name!r}, resource=..., used_by=(<adapter method>,)) to OPERATIONS in "
                f"{self.module} so the rendered IAM policies grant it")


__all__ = ["Operation", "OperationInventory", "Plane", "ROLES", "ROLE_METHODS", "Role"]
