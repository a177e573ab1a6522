"""Plan rules read from what each location's adapter can do (its declared capabilities).

The checks name capabilities, never providers: a fifth adapter that declares
``capture_sees_deletes=False`` gets the same warning Cosmos DB does. Capabilities come from
each adapter's :class:`~mcrepl.adapters.base.spec.AdapterSpec` for the location's
settings (:meth:`McreplConfig.capabilities_at`), so no store is opened and no SDK imported.
"""

from __future__ import annotations

from typing import Iterator

from mcrepl.adapters.base import ConfigError

from .decisions import locations
from .plan_rules import PlanContext, PlanRule
from .rules import Violation, register


@register
class CapabilitiesFit(PlanRule):
    """Each location's store can do what its place in the topology needs.

    * a primary whose capture cannot see an application's physical deletes
      (``capture_sees_deletes: false``, e.g. Cosmos DB in either capture mode): such
      deletes never replicate (warning; deletes made through mcrepl are tombstones and do);
    * a store without conditional writes (``conditional_writes: false``) anywhere: a newer
      version could be overwritten by an older one (error);
    * a document dataset whose primary holds sets but a location cannot
      (``holds_sets: false``): records with sets are rejected there (warning).

    Refused::

        datasets:
          orders:
            key: {partition: id}
            primary: cosmos:westeurope
            replicas: [dynamodb:eu-west-1]

    Allowed::

        datasets:
          orders:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [cosmos:westeurope]
    """

    id = "capability.fit"
    summary = "each location's adapter can do what its role needs (from its declared capabilities)"
    fix = "choose a store whose adapter declares the capability, or accept the limitation it names"

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        config = ctx.config
        for name, ds, ref, primary in locations(config):
            try:
                caps = config.capabilities_at(ref)
                primary_caps = config.capabilities_at(ds.primary)
            except ConfigError:
                continue                       # an unknown provider is the config model's finding
            where = f"{name}@{ref.at}"
            if primary and not caps.capture_sees_deletes:
                yield Violation(cls.id, where, f"{ref.at} is the primary, and its capture cannot see deletes "
                                "made by applications (capabilities.capture_sees_deletes is false): such a "
                                "delete never replicates and the replicas keep the record",
                                "delete through mcrepl (a tombstone replicates), or make a store whose capture "
                                "sees deletes the primary", "warning")
            if not caps.conditional_writes:
                yield Violation(cls.id, where, f"{ref.at} cannot write conditionally "
                                "(capabilities.conditional_writes is false): an older version could overwrite "
                                "a newer one", "use a store whose adapter writes conditionally", "error")
            if ds.kind == "document" and primary_caps.holds_sets and not caps.holds_sets:
                yield Violation(cls.id, where, f"{ref.at} cannot hold sets (capabilities.holds_sets is false) "
                                f"but the primary {ds.primary.at} can: records with sets are rejected there",
                                "keep sets out of this dataset, or replicate it to a store that holds them",
                                "warning")


__all__ = ["CapabilitiesFit"]
