"""Rules on the stores and their keys: residency, encryption, replication readiness, access, protection.

Residency decides as the mcrepl policy engine does (``mcrepl validate``), from the
catalogue and per-dataset jurisdictions in the policy config: a location is allowed for
a dataset when every jurisdiction it stores data in is allowed for the dataset's
classification (``*``: anywhere); an unknown region is never allowed; no config at all
fails closed. Which dataset a store holds comes from the ``mcrepl:dataset`` tag (tables)
or ``mcrepl-dataset`` label (buckets); the one Cosmos DB account of a stack is held to
every dataset with a Cosmos location.
"""

from __future__ import annotations

from typing import Any, Mapping

from .subject import (BUCKET, COSMOS_ACCOUNT, COSMOS_CONTAINER, COSMOS_DATABASE, CRYPTO_KEY, KMS_KEY, TABLE,
                      Subject, as_list)

PROVIDER_OF = {TABLE: "dynamodb", COSMOS_ACCOUNT: "cosmos", BUCKET: "gcs"}
TLS_OK = {"Tls12", "Tls13"}
ANYWHERE = "*"
MAX_ROTATION_SECONDS = 90 * 86400
#: types whose loss loses data (or makes it unreadable): ``protect`` is mandatory
DATA_TYPES = frozenset({TABLE, COSMOS_ACCOUNT, COSMOS_DATABASE, COSMOS_CONTAINER, BUCKET, KMS_KEY, CRYPTO_KEY})


def resource_locations(subject: Subject) -> list[str]:
    """Every ``provider:region`` a store keeps data in (empty for other types)."""
    props = subject.props
    if subject.type == TABLE:
        regions: list[Any] = [props.get("region") or subject.provider.get("region")]
        regions += [r.get("regionName") for r in as_list(props.get("replicas"))]
        return [f"dynamodb:{r}" for r in regions if r]
    if subject.type == COSMOS_ACCOUNT:
        names = [loc.get("locationName") for loc in as_list(props.get("locations"))] or [props.get("location")]
        return [f"cosmos:{str(n).replace(' ', '').lower()}" for n in dict.fromkeys(names) if n]
    if subject.type == BUCKET and props.get("location"):
        return [f"gcs:{str(props['location']).lower()}"]
    return []


def _datasets(subject: Subject, datasets: Mapping[str, Any]) -> list[str]:
    tag = (subject.props.get("tags") or {}).get("mcrepl:dataset") if subject.type == TABLE else \
        (subject.props.get("labels") or {}).get("mcrepl-dataset") if subject.type == BUCKET else None
    if tag in datasets:
        return [tag]
    provider = PROVIDER_OF[subject.type]
    return [n for n, d in datasets.items() if provider in d.get("providers", [])]


def check_residency(subject: Subject, config: Mapping[str, Any]) -> list[str]:
    """Rule ``mcrepl-residency``: every location of a store is allowed for the data it holds."""
    if subject.type not in PROVIDER_OF:
        return []
    catalogue, datasets = config.get("catalogue"), config.get("datasets")
    if not catalogue or datasets is None:
        return ["[residency.config] the pack has no residency config, so no store can be placed "
                "(generate it: mcrepl config policy-pack -c mcrepl.yaml > pack-config.json, then "
                "pass --policy-pack-config pack-config.json)"]
    out = []
    for location in resource_locations(subject):
        where = catalogue.get(location)
        if where is None:
            out.append(f"[residency.region-known] {location} is not in the region catalogue: "
                       "its jurisdiction is unknown, so no data may live there")
            continue
        for name in _datasets(subject, datasets):
            allowed = datasets[name].get("jurisdictions")
            if allowed is not None and ANYWHERE not in allowed and not set(where.split("+")) <= set(allowed):
                out.append(f"[residency.class] {location} is in {where}, but dataset {name!r} "
                           f"({datasets[name].get('classification')}) may live only in {', '.join(allowed) or 'nowhere'}")
    return out


def check_encryption(subject: Subject, config: Mapping[str, Any]) -> list[str]:
    """Rule ``mcrepl-encryption``: customer-managed keys at rest (always for tables and
    buckets, for Cosmos DB where the config requires them), rotated keys, TLS 1.2+."""
    props, out = subject.props, []
    if subject.type == TABLE:
        sse = props.get("serverSideEncryption") or {}
        if not sse.get("enabled") or not sse.get("kmsKeyArn"):
            out.append("[encryption.at-rest] DynamoDB table has no customer-managed KMS key "
                       "(set serverSideEncryption: {enabled: true, kmsKeyArn: ...})")
    elif subject.type == BUCKET:
        if not (props.get("encryption") or {}).get("defaultKmsKeyName"):
            out.append("[encryption.at-rest] bucket has no CMEK (set encryption.defaultKmsKeyName)")
    elif subject.type == COSMOS_ACCOUNT:
        out += _cosmos_encryption(props, bool(config.get("requireCustomerManagedKeys")))
    elif subject.type == KMS_KEY:
        if not props.get("enableKeyRotation"):
            out.append("[encryption.key-rotation] KMS key rotation is off (set enableKeyRotation: true)")
        if int(props.get("deletionWindowInDays") or 30) < 30:
            out.append("[encryption.key-deletion] a KMS key scheduled for deletion must wait the full "
                       "30 days (deletionWindowInDays: 30): its tables are unreadable without it")
    elif subject.type == CRYPTO_KEY:
        period = str(props.get("rotationPeriod") or "")
        if not period.endswith("s") or not period[:-1].isdigit() or int(period[:-1]) > MAX_ROTATION_SECONDS:
            out.append("[encryption.key-rotation] Cloud KMS key must rotate at least every 90 days "
                       "(rotationPeriod: 7776000s)")
    return out


def _cosmos_encryption(props: Mapping[str, Any], require_cmk: bool) -> list[str]:
    out = []
    if require_cmk and not props.get("keyVaultKeyUri"):
        out.append("[encryption.at-rest] Cosmos DB account has no customer-managed key (set keyVaultKeyUri)")
    if props.get("keyVaultKeyUri"):
        identity = props.get("identity") or {}
        if "UserAssigned" not in str(identity.get("type", "")) or \
                not str(props.get("defaultIdentity", "")).startswith("UserAssignedIdentity="):
            out.append("[encryption.cmk-identity] a Cosmos DB account with a customer-managed key needs a "
                       "user-assigned identity as defaultIdentity (continuous backup does not support "
                       "the system identity)")
    if props.get("minimalTlsVersion") not in TLS_OK:
        out.append("[encryption.tls] Cosmos DB account accepts TLS below 1.2 (set minimalTlsVersion: Tls12)")
    return out


def check_replication_ready(subject: Subject, config: Mapping[str, Any]) -> list[str]:
    """Rule ``mcrepl-replication-ready``: what mcrepl's capture, recovery and safety rely on."""
    props, out = subject.props, []
    if subject.type == TABLE:
        if not props.get("streamEnabled") or props.get("streamViewType") != "NEW_AND_OLD_IMAGES":
            out.append("table stream must be enabled with streamViewType NEW_AND_OLD_IMAGES "
                       "(mcrepl captures changes from it)")
        if not (props.get("pointInTimeRecovery") or {}).get("enabled"):
            out.append("point-in-time recovery must be enabled")
        if not props.get("deletionProtectionEnabled"):
            out.append("deletion protection must be enabled")
    elif subject.type == BUCKET:
        if not (props.get("versioning") or {}).get("enabled"):
            out.append("bucket versioning must be enabled")
    elif subject.type == COSMOS_ACCOUNT:
        priorities = [loc.get("failoverPriority") for loc in as_list(props.get("locations"))]
        if sorted(p for p in priorities if p is not None) != list(range(len(priorities))):
            out.append("Cosmos locations need unique failover priorities 0..n-1 (0 = write region)")
        if (props.get("backupPolicy") or {}).get("type") != "Continuous":
            out.append("Cosmos DB account needs continuous backup (point-in-time restore)")
    elif subject.type == COSMOS_CONTAINER:
        resource = props.get("resource") or {}
        if as_list((resource.get("partitionKey") or {}).get("paths")) != ["/id"]:
            out.append("container partition key must be /id (the adapter stores the record key in id)")
        if int(resource.get("defaultTtl") or -1) > 0:
            out.append("container defaultTtl > 0 would expire live items (use -1: TTL on, no default expiry)")
    return out


def check_access(subject: Subject, config: Mapping[str, Any]) -> list[str]:
    """Rule ``mcrepl-access``: Entra ID only on Cosmos DB (unless the config uses keys), no
    account open to the internet, IAM-only buckets closed to the public."""
    props, out = subject.props, []
    if subject.type == COSMOS_ACCOUNT:
        if not config.get("allowCosmosKeys") and not (props.get("disableLocalAuth")
                                                      and props.get("disableKeyBasedMetadataWriteAccess")):
            out.append("Cosmos DB local (key) auth must be off: set disableLocalAuth and "
                       "disableKeyBasedMetadataWriteAccess (grants are Entra ID role assignments)")
        if props.get("publicNetworkAccess", "Enabled") != "Disabled":
            ranges = [str(r.get("ipAddressOrRange", "")) for r in as_list(props.get("ipRules"))]
            if not ranges:
                out.append("Cosmos DB account is open to the internet: set publicNetworkAccess: Disabled "
                           "(private endpoints) or list the runners' addresses in ipRules")
            elif any(r.startswith("0.0.0.0") for r in ranges):
                out.append(f"Cosmos DB ipRules allow every address ({', '.join(ranges)})")
    elif subject.type == BUCKET:
        if not props.get("uniformBucketLevelAccess"):
            out.append("uniform bucket-level access must be enabled (IAM only, no object ACLs)")
        if props.get("publicAccessPrevention") != "enforced":
            out.append("public access prevention must be 'enforced'")
    return out


def check_protected(subject: Subject, config: Mapping[str, Any]) -> list[str]:
    """Rule ``mcrepl-protected``: a resource holding data (or its key) is ``protect``ed, so no
    ``pulumi destroy`` or replacement deletes it without a deliberate unprotect."""
    if subject.type in DATA_TYPES and not subject.protect:
        return [f"{subject.type.rsplit(':', 1)[-1]} holds data (or the key to it) and is not protected "
                "(resource option protect=True)"]
    return []
