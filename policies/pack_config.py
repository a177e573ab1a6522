"""The CrossGuard pack's policy config for one ``mcrepl.yaml`` (``mcrepl config policy-pack``).

The pack in ``pulumi/policy-pack`` is published without mcrepl, so it cannot load a
config or the region catalogue itself. This renders what it needs, from the same
functions ``mcrepl validate`` decides with: the catalogue (every known location and the
jurisdictions it stores data in), each dataset's classification, providers and allowed
jurisdictions (``None``: anywhere, ``[]``: nowhere, the default deny of an undeclared
classification), and the switches the config sets. A stack the pack accepts with this
config is one ``mcrepl validate`` accepts, and the other way round (tests hold the two
equal over the whole catalogue).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .decisions import class_jurisdictions
from .residency import catalogue

if TYPE_CHECKING:
    from mcrepl.orchestrator.config import McreplConfig

#: config provider name → the catalogue's cloud
_CLOUDS = {"dynamodb": "aws", "cosmos": "azure", "gcs": "gcp"}


def location_catalogue() -> dict[str, str]:
    """``provider:region`` → jurisdiction (``A+B`` for a multi-region spanning several)."""
    regions = catalogue().regions
    return {f"{provider}:{region}": info.jurisdiction
            for provider, cloud in _CLOUDS.items() for region, info in sorted(regions[cloud].items())}


def pack_config(config: "McreplConfig") -> dict[str, Any]:
    """``{policy name: properties}``, the file ``--policy-pack-config`` takes."""
    datasets = {name: {"classification": ds.classification,
                       "providers": sorted({ref.provider for ref in ds.locations}),
                       "jurisdictions": class_jurisdictions(config, ds.classification)}
                for name, ds in config.datasets.items()}
    dns = config.provisioning.dns
    return {"mcrepl-residency": {"catalogue": location_catalogue(), "datasets": datasets},
            "mcrepl-encryption": {"requireCustomerManagedKeys":
                                  config.policies.encryption.at_rest == "cmk_required"},
            "mcrepl-access": {"allowCosmosKeys": config.providers.cosmos.auth != "aad"},
            "mcrepl-dns": {"healthCheckFailover": bool(dns and dns.health_check_failover)}}


__all__ = ["location_catalogue", "pack_config"]
