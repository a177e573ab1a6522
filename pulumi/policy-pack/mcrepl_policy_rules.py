"""The rules of the ``mcrepl`` CrossGuard pack, as plain functions on resource inputs.

Each check takes a resource's type token and its input properties (camelCase, as
CrossGuard passes them) and returns the violation messages, so the same code is unit
tested without the Pulumi engine and wrapped by ``__main__.py`` into policies.
The residency and encryption decisions are the policy engine's own
(:mod:`mcrepl.policies.decisions`, :mod:`mcrepl.policies.residency`), so a stack the
pack accepts is one ``mcrepl validate`` accepts, and the other way round.

Which classification a resource holds comes from its ``mcrepl:dataset`` tag (AWS) or
``mcrepl-dataset`` label (GCS), as the mcrepl program sets them; an untagged store (a
Cosmos account serves every dataset) is held to every dataset that uses its provider.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from pulumi_policy import (PolicyConfigSchema, ReportViolation, ResourceValidationArgs,
                           ResourceValidationPolicy)

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import McreplConfig, load_config
from mcrepl.policies import decisions
from mcrepl.policies.residency import location_jurisdictions

TABLE = "aws:dynamodb/table:Table"
COSMOS_ACCOUNT = "azure-native:cosmosdb:DatabaseAccount"
BUCKET = "gcp:storage/bucket:Bucket"
PROVIDER_OF = {TABLE: "dynamodb", COSMOS_ACCOUNT: "cosmos", BUCKET: "gcs"}
TLS_OK = {"Tls12", "Tls13"}


@dataclass(frozen=True)
class PackSettings:
    """What the rules need beyond the resource: the mcrepl config and the CMK switch."""

    config: McreplConfig | None = None
    require_cmk: bool = False

    @classmethod
    def load(cls, policy_config: Mapping[str, Any]) -> "PackSettings":
        """From the pack's policy config (``configPath``) or ``$MCREPL_CONFIG``."""
        path = policy_config.get("configPath") or os.environ.get("MCREPL_CONFIG")
        config = _load(str(path)) if path else None
        cmk = bool(policy_config.get("requireCustomerManagedKeys", False))
        if config is not None:
            cmk = cmk or config.policies.encryption.at_rest == "cmk_required"
        return cls(config, cmk)


@lru_cache(maxsize=4)
def _load(path: str) -> McreplConfig:
    """One parse per config file per pack process (the pack validates every resource)."""
    return load_config(path)


def resource_locations(resource_type: str, props: Mapping[str, Any],
                       provider_props: Mapping[str, Any] | None = None) -> list[str]:
    """Every ``provider:region`` a resource stores data in (empty for other resource types)."""
    if resource_type == TABLE:
        region = props.get("region") or (provider_props or {}).get("region")
        regions = [region] if region else []
        regions += [r.get("regionName") for r in props.get("replicas") or [] if r.get("regionName")]
        return [f"dynamodb:{r}" for r in regions]
    if resource_type == COSMOS_ACCOUNT:
        names = [loc.get("locationName") for loc in props.get("locations") or []]
        names = [n for n in names if n] or [props.get("location")]
        return [f"cosmos:{_azure_region(n)}" for n in dict.fromkeys(names) if n]
    if resource_type == BUCKET and props.get("location"):
        return [f"gcs:{str(props['location']).lower()}"]
    return []


def _azure_region(name: str) -> str:
    """``West Europe`` and ``westeurope`` name the same region; the catalogue uses the latter."""
    return name.replace(" ", "").lower()


def resource_dataset(resource_type: str, props: Mapping[str, Any]) -> str | None:
    """The dataset a store holds, from the tag or label the mcrepl program sets."""
    if resource_type == TABLE:
        return (props.get("tags") or {}).get("mcrepl:dataset")
    if resource_type == BUCKET:
        return (props.get("labels") or {}).get("mcrepl-dataset")
    return None


def check_residency(resource_type: str, props: Mapping[str, Any], settings: PackSettings,
                    provider_props: Mapping[str, Any] | None = None) -> list[str]:
    """Rule ``mcrepl-residency``: every location of a store is allowed for the data it holds.

    Unknown regions are violations (never a guess). Without an mcrepl config only the
    region-known check applies.
    """
    provider = PROVIDER_OF.get(resource_type)
    if provider is None:
        return []
    out: list[str] = []
    config = settings.config
    dataset = resource_dataset(resource_type, props)
    if config is not None:
        names = [dataset] if dataset in config.datasets else \
            [n for n, ds in config.datasets.items() if any(r.provider == provider for r in ds.locations)]
    else:
        names = []
    for location in resource_locations(resource_type, props, provider_props):
        try:
            where = "+".join(sorted(location_jurisdictions(location)))
        except ConfigError as exc:
            out.append(f"[residency.region-known] {location}: {exc}")
            continue
        for name in names:
            classification = config.datasets[name].classification  # type: ignore[union-attr]
            if not decisions.class_allowed_at(config, classification, location):  # type: ignore[arg-type]
                allowed = decisions.class_jurisdictions(config, classification)  # type: ignore[arg-type]
                out.append(f"[residency.class] {location} is in {where}, but dataset {name!r} "
                           f"({classification}) may live only in {', '.join(allowed or [])}")
    return out


def check_encryption(resource_type: str, props: Mapping[str, Any], settings: PackSettings) -> list[str]:
    """Rule ``mcrepl-encryption``: customer-managed keys at rest and TLS 1.2+ in transit.

    DynamoDB tables and GCS buckets always need a CMK (mcrepl provisions one); a Cosmos
    account needs ``keyVaultKeyUri`` when CMKs are required (``at_rest: cmk_required``).
    """
    out: list[str] = []
    if resource_type == TABLE:
        sse = props.get("serverSideEncryption") or {}
        if not sse.get("enabled") or not sse.get("kmsKeyArn"):
            out.append("[encryption.at-rest] DynamoDB table has no customer-managed KMS key "
                       "(set serverSideEncryption: {enabled: true, kmsKeyArn: ...})")
    elif resource_type == BUCKET:
        if not (props.get("encryption") or {}).get("defaultKmsKeyName"):
            out.append("[encryption.at-rest] bucket has no CMEK (set encryption.defaultKmsKeyName)")
    elif resource_type == COSMOS_ACCOUNT:
        if settings.require_cmk and not props.get("keyVaultKeyUri"):
            out.append("[encryption.at-rest] Cosmos DB account has no customer-managed key "
                       "(set keyVaultKeyUri to a Key Vault key)")
        if props.get("minimalTlsVersion") not in TLS_OK:
            out.append("[encryption.tls] Cosmos DB account accepts TLS below 1.2 "
                       "(set minimalTlsVersion: Tls12)")
    return out


def check_replication_ready(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Rule ``mcrepl-replication-ready``: what mcrepl's capture, recovery and safety rely on."""
    out: list[str] = []
    if resource_type == TABLE:
        if not props.get("streamEnabled") or props.get("streamViewType") != "NEW_AND_OLD_IMAGES":
            out.append("table stream must be enabled with streamViewType NEW_AND_OLD_IMAGES "
                       "(mcrepl captures changes from it)")
        if not (props.get("pointInTimeRecovery") or {}).get("enabled"):
            out.append("point-in-time recovery must be enabled")
        if not props.get("deletionProtectionEnabled"):
            out.append("deletion protection must be enabled")
    elif resource_type == BUCKET:
        if not (props.get("versioning") or {}).get("enabled"):
            out.append("bucket versioning must be enabled")
        if not props.get("uniformBucketLevelAccess"):
            out.append("uniform bucket-level access must be enabled")
        if props.get("publicAccessPrevention") != "enforced":
            out.append("public access prevention must be 'enforced'")
    elif resource_type == COSMOS_ACCOUNT:
        priorities = [loc.get("failoverPriority") for loc in props.get("locations") or []]
        if sorted(p for p in priorities if p is not None) != list(range(len(priorities))):
            out.append("Cosmos locations need unique failover priorities 0..n-1 (0 = write region)")
    return out


_SCHEMA = PolicyConfigSchema(properties={
    "configPath": {"type": "string", "description": "path of the mcrepl.yaml the stack provisions"},
    "requireCustomerManagedKeys": {"type": "boolean", "description": "require CMK on Cosmos accounts too"},
})


def _provider_props(args: ResourceValidationArgs) -> Mapping[str, Any]:
    return args.provider.props if args.provider is not None else {}


def _residency(args: ResourceValidationArgs, report: ReportViolation) -> None:
    settings = PackSettings.load(args.get_config())
    for message in check_residency(args.resource_type, args.props, settings, _provider_props(args)):
        report(message, None)


def _encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for message in check_encryption(args.resource_type, args.props, PackSettings.load(args.get_config())):
        report(message, None)


def _replication_ready(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for message in check_replication_ready(args.resource_type, args.props):
        report(message, None)


def pack_policies() -> list[ResourceValidationPolicy]:
    """The pack's three policies (``__main__.py`` serves them; tests call ``validate``)."""
    return [
        ResourceValidationPolicy(name="mcrepl-residency", config_schema=_SCHEMA, validate=_residency,
                                 description="Stores live only in jurisdictions their data may live in."),
        ResourceValidationPolicy(name="mcrepl-encryption", config_schema=_SCHEMA, validate=_encryption,
                                 description="Customer-managed keys at rest; TLS 1.2+ in transit."),
        ResourceValidationPolicy(name="mcrepl-replication-ready", validate=_replication_ready,
                                 description="Streams, PITR, versioning and failover priorities mcrepl needs."),
    ]
