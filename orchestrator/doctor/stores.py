"""Per-location doctor checks: the store's facts (:mod:`mcrepl.adapters.<provider>.readiness`) judged
against the config and the policies, plus the location's epoch record against the pointer."""

from __future__ import annotations

from typing import Any, Callable

from mcrepl.adapters.base import ConfigError, McreplError, ReplicaTarget
from mcrepl.adapters.base.readiness import Fact
from mcrepl.orchestrator.config import McreplConfig, ReplicaRef

from .model import Check, unknown

Facts = dict[str, Fact]


def location_checks(config: McreplConfig, target: ReplicaTarget, ref: ReplicaRef, pointer: Any) -> list[Check]:
    """Every check of one location of one dataset (store facts, then its epoch record)."""
    where = f"{target.dataset} {target.replica}"
    if target.provider not in _JUDGES:
        return [Check("WARN", "readiness", where, f"the {target.provider} adapter declares no readiness checks",
                      "check its credentials, settings and permissions by hand"), _epoch_record(target, pointer, where)]
    try:
        facts = _inspect(target)
    except McreplError as exc:
        return [Check("FAIL", "reachable", where, f"{type(exc).__name__}: {exc}",
                      "check the endpoint, the network path and the credentials")]
    judge = _JUDGES[target.provider]
    checks = _identity(facts, where, target.provider)
    checks += judge(config, target, ref, facts, where)
    checks.append(_epoch_record(target, pointer, where))
    return checks


def _inspect(target: ReplicaTarget) -> Facts:
    from mcrepl.adapters.base.operations import ROLES
    if target.provider == "dynamodb":
        from mcrepl.adapters.dynamodb.operations import OPERATIONS as DDB
        from mcrepl.adapters.dynamodb.readiness import inspect as inspect_dynamodb
        actions = sorted({p for role in ROLES if role != "admin" for p in DDB.grants(role, resource="table")})
        return inspect_dynamodb(target, actions)
    if target.provider == "gcs":
        from mcrepl.adapters.gcs.operations import OPERATIONS as GCS
        from mcrepl.adapters.gcs.readiness import inspect as inspect_gcs
        perms = sorted({p for role in ROLES if role != "admin" for p in GCS.grants(role, resource="bucket")})
        return inspect_gcs(target, perms)
    from mcrepl.adapters.cosmos.readiness import inspect as inspect_cosmos
    return inspect_cosmos(target)


_CREDENTIAL_FIX = {
    "dynamodb": "set AWS credentials (AWS_PROFILE or the standard chain) for an identity with the mcrepl roles",
    "gcs": "set Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS or gcloud auth "
           "application-default login)",
    "cosmos": "export the account key in providers.cosmos.key_env, or sign in for auth: aad",
}


def _identity(facts: Facts, where: str, provider: str) -> list[Check]:
    fact = facts.get("identity", Fact(error="not asked"))
    bad = unknown(fact, "credentials", where, _CREDENTIAL_FIX[provider])
    if bad is not None:
        return [bad]
    return [Check("PASS", "credentials", where, f"resolved: {fact.value}")]


def _permissions(fact: Fact | None, where: str, fix: str) -> Check:
    if fact is None:
        return Check("SKIP", "permissions", where, "not evaluated: the resource could not be read")
    bad = unknown(fact, "permissions", where, fix)
    if bad is not None:
        return bad
    if fact.value:
        return Check("FAIL", "permissions", where, f"denied: {', '.join(fact.value)}", fix)
    return Check("PASS", "permissions", where, "every action the adapters call is allowed")


def _missing(facts: Facts, name: str, where: str, fix: str) -> Check | None:
    """The finding when the store's ``name`` (its table, bucket) was not read or is unknown; else ``None``."""
    if name not in facts:
        return Check("FAIL", name, where, "not read")
    return unknown(facts[name], name, where, fix)


def _dynamodb(config: McreplConfig, target: ReplicaTarget, ref: ReplicaRef, facts: Facts, where: str) -> list[Check]:
    table = target.resource
    bad = _missing(facts, "table", where, f"create table {table} in {target.region} (pulumi up)")
    if bad is not None:
        return [bad]
    checks = [Check("PASS", "table", where, f"table {table} is {facts['table'].value['status']}")]
    stream = facts["stream"].value
    if stream.get("StreamEnabled") and stream.get("StreamViewType") == "NEW_AND_OLD_IMAGES":
        checks.append(Check("PASS", "stream", where, f"table {table}: stream enabled, NEW_AND_OLD_IMAGES"))
    else:
        have = "disabled" if not stream.get("StreamEnabled") else f"view {stream.get('StreamViewType')}"
        checks.append(Check("FAIL", "stream", where, f"table {table}: stream {have}; change capture needs a stream "
                            "with NEW_AND_OLD_IMAGES", f"aws dynamodb update-table --table-name {table} "
                            "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"))
    pitr = facts["pitr"]
    checks.append(unknown(pitr, "pitr", where, "read DescribeContinuousBackups") or (
        Check("PASS", "pitr", where, f"table {table}: point-in-time recovery enabled") if pitr.value == "ENABLED" else
        Check("WARN", "pitr", where, f"table {table}: point-in-time recovery {str(pitr.value).lower()}",
              f"aws dynamodb update-continuous-backups --table-name {table} "
              "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true")))
    checks.append(_cmk(config, ref, facts["encryption"], where, f"table {table}",
                       lambda e: e["type"] == "KMS" and bool(e["key"]), "set the table's SSE to a customer key"))
    checks.append(_permissions(facts.get("permissions"), where,
                               "attach the policies 'mcrepl iam render' prints to this identity"))
    return checks


def _gcs(config: McreplConfig, target: ReplicaTarget, ref: ReplicaRef, facts: Facts, where: str) -> list[Check]:
    bucket = target.resource
    bad = _missing(facts, "bucket", where, f"create bucket {bucket} (pulumi up)")
    if bad is not None:
        return [bad]
    checks = [Check("PASS", "bucket", where, f"bucket {bucket} exists")]
    loc = facts["location"]
    checks.append(unknown(loc, "location", where, "") or (
        Check("PASS", "location", where, f"bucket {bucket} in {loc.value}") if str(loc.value).lower() == ref.region
        else Check("FAIL", "location", where, f"bucket {bucket} is in {loc.value}, the config says {ref.region}",
                   "recreate the bucket in the configured region, or correct the location in the config")))
    for name, what, fix in (("versioning", "object versioning", f"gcloud storage buckets update gs://{bucket} "
                             "--versioning"), ("uniform_access", "uniform bucket-level access",
                             f"gcloud storage buckets update gs://{bucket} --uniform-bucket-level-access")):
        fact = facts[name]
        checks.append(unknown(fact, name, where, "") or (
            Check("PASS", name, where, f"bucket {bucket}: {what} on") if fact.value else
            Check("WARN", name, where, f"bucket {bucket}: {what} off", fix)))
    checks.append(_cmk(config, ref, facts["encryption"], where, f"bucket {bucket}", lambda e: bool(e["key"]),
                       "set the bucket's default KMS key (CMEK)"))
    checks.append(_permissions(facts.get("permissions"), where,
                               "grant the custom roles 'mcrepl iam render' prints on this bucket"))
    return checks


def _cosmos(config: McreplConfig, target: ReplicaTarget, ref: ReplicaRef, facts: Facts, where: str) -> list[Check]:
    checks: list[Check] = []
    container = facts.get("container", Fact(error="not read"))
    checks.append(unknown(container, "container", where, f"create container {target.resource} (pulumi up)") or (
        Check("PASS", "container", where, f"container {target.resource}, partition key /id")
        if container.value["partition_key"] == ["/id"] else
        Check("FAIL", "container", where, f"container {target.resource} has partition key "
              f"{container.value['partition_key']}", "recreate it with partition key /id (pulumi up)")))
    local = bool(target.options.get("local"))
    if "consistency" in facts:
        wanted = config.provisioning.azure.consistency
        have = facts["consistency"].value
        checks.append(Check("SKIP", "consistency", where, f"the emulator reports {have}; it is not configurable")
                      if local else Check("PASS", "consistency", where, f"account default consistency {have}")
                      if have == wanted else Check("WARN", "consistency", where, f"account default consistency "
                                                   f"{have}, provisioning.azure.consistency is {wanted}",
                                                   "pulumi up (or az cosmosdb update --default-consistency-level)"))
        regions = facts["regions"].value
        checks.append(Check("SKIP", "regions", where, "one emulator serves every region") if local else (
            Check("PASS", "regions", where, f"account regions {', '.join(regions)}")
            if any(_region_matches(r, ref.region) for r in regions) else
            Check("FAIL", "regions", where, f"account regions {', '.join(regions)} do not include {ref.region}",
                  "add the region to the account (pulumi up) or correct the config")))
    rbac = config.policies.iam.cosmos_auth == "rbac"
    lad = facts.get("local_auth_disabled", Fact(unanswerable="not asked"))
    checks.append(Check("SKIP", "local-auth", where,
                        f"policies.iam.cosmos_auth is {config.policies.iam.cosmos_auth}; disableLocalAuth is "
                        f"{lad.unanswerable or lad.value}") if rbac else
                  Check("PASS", "local-auth", where, "key auth allowed by policies.iam.cosmos_auth: key"))
    checks.append(_cmk(config, ref, Fact(unanswerable="the account's key is " + ARM_ONLY_SHORT), where,
                       "account", lambda e: True, ""))
    checks.append(_permissions(facts.get("permissions"), where, "assign the roles 'mcrepl iam render' prints"))
    return checks


ARM_ONLY_SHORT = "an Azure Resource Manager property (az cosmosdb show --query keyVaultKeyUri)"


def _region_matches(name: str | None, region: str) -> bool:
    return (name or "").replace(" ", "").lower() == region.replace("-", "").lower()


def _cmk(config: McreplConfig, ref: ReplicaRef, fact: Fact, where: str, what: str,
         has_key: Callable[[dict[str, Any]], bool], fix: str) -> Check:
    required = config.policies.encryption.at_rest == "cmk_required"
    bad = unknown(fact, "cmk", where, fix)
    if bad is not None:
        return bad if required else Check("SKIP", "cmk", where, f"not required by policy; {bad.evidence}")
    if not required:
        return Check("PASS", "cmk", where, f"{what}: {fact.value}; policies.encryption.at_rest allows "
                     "provider-managed keys")
    if not has_key(fact.value):
        return Check("FAIL", "cmk", where, f"{what} has no customer-managed key; policies.encryption.at_rest is "
                     "cmk_required", fix)
    if ref.kms_key and fact.value.get("key") and ref.kms_key not in str(fact.value["key"]):
        return Check("FAIL", "cmk", where, f"{what} uses {fact.value['key']}, the config names {ref.kms_key}", fix)
    return Check("PASS", "cmk", where, f"{what} encrypted with {fact.value['key']}")


def _epoch_record(target: ReplicaTarget, pointer: Any, where: str) -> Check:
    """The location's epoch record must hold the pointer's epoch and primary (writers are fenced by it)."""
    from mcrepl.adapters import open_fence
    fix = f"mcrepl failover fence {target.replica} --dataset {target.dataset}"
    try:
        fence = open_fence(target)
    except ConfigError as exc:
        return Check("WARN", "epoch-record", where, exc.message, exc.fix or "")
    try:
        record = fence.read()
    except McreplError as exc:
        if "does not exist" in str(exc) or "NotFound" in type(exc).__name__:
            record = None
        else:
            return Check("FAIL", "epoch-record", where, f"{type(exc).__name__}: {exc}", fix)
    finally:
        fence.close()
    if pointer is None:
        return Check("SKIP", "epoch-record", where, "the dataset has no primary pointer yet (no sync has run)")
    if record is None:
        return Check("WARN", "epoch-record", where, f"no epoch record in {fence.resource}: writers using "
                     "mcrepl.client cannot be fenced here", fix)
    if (record.epoch, record.primary) == (pointer.epoch, pointer.location):
        return Check("PASS", "epoch-record", where, f"epoch {record.epoch}, primary {record.primary}")
    if record.epoch > pointer.epoch:
        return Check("FAIL", "epoch-record", where, f"holds epoch {record.epoch} ({record.primary}), ahead of this "
                     f"state file's {pointer.epoch}: another state file promoted", "use the state file that promoted")
    return Check("FAIL", "epoch-record", where, f"holds epoch {record.epoch} ({record.primary}), the pointer is at "
                 f"{pointer.epoch} ({pointer.location}): stale writers are not refused here", fix)


__all__ = ["location_checks"]


#: provider → how its readiness facts are judged (providers without one get a WARN saying so)
_JUDGES: dict[str, Callable[..., list[Check]]] = {"dynamodb": _dynamodb, "cosmos": _cosmos, "gcs": _gcs}
