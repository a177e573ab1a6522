"""DynamoDB readiness facts for ``mcrepl doctor``: identity, effective permissions, table, stream, PITR, key.

Calls are made once each, without the retry loop (a doctor answers in seconds; a store
that does not answer is itself the finding). ``iam:SimulatePrincipalPolicy`` evaluates
the caller's effective permissions for the adapter's actions on the table; emulators
that do not implement it (moto) make that fact unanswerable, never a pass.
"""

from __future__ import annotations

from typing import Any

from ..base.interface import ReplicaTarget
from ..base.readiness import Fact
from ..aws.session import is_local, make_session, plain_config
from .errors import is_sdk_error, translate


def inspect(target: ReplicaTarget, actions: list[str]) -> dict[str, Fact]:
    """Facts about ``target``'s table and the identity that reaches it (keys below)."""
    options = dict(target.options)
    session = make_session(options, target.region)
    endpoint = options.get("endpoint") or None
    local = is_local(options)
    facts: dict[str, Fact] = {"endpoint": Fact(endpoint or f"https://dynamodb.{target.region}.amazonaws.com")}
    ddb = session.client("dynamodb", endpoint_url=endpoint, config=plain_config())
    sts = session.client("sts", endpoint_url=endpoint, config=plain_config())
    iam = session.client("iam", endpoint_url=endpoint, config=plain_config())
    try:
        facts["identity"] = _ask(target, "get_caller_identity", lambda: sts.get_caller_identity()["Arn"], local)
        table = _ask(target, "describe_table",
                     lambda: ddb.describe_table(TableName=target.resource)["Table"], local)
        facts["table"] = Fact({"status": table.value.get("TableStatus"), "arn": table.value.get("TableArn")}) \
            if table.known else table
        if table.known:
            facts["stream"] = Fact(table.value.get("StreamSpecification") or {"StreamEnabled": False})
            sse = table.value.get("SSEDescription") or {}
            facts["encryption"] = Fact({"type": sse.get("SSEType") or "AWS_OWNED",
                                        "key": sse.get("KMSMasterKeyArn")})
            facts["pitr"] = _ask(target, "describe_continuous_backups", lambda: ddb.describe_continuous_backups(
                TableName=target.resource)["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
                ["PointInTimeRecoveryStatus"], local)
        if facts["identity"].known and table.known:
            arn = _principal(str(facts["identity"].value))
            facts["permissions"] = _ask(target, "simulate_principal_policy", lambda: _denied(
                iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=actions,
                                              ResourceArns=[table.value["TableArn"]])), local,
                unimplemented="the emulator does not implement iam:SimulatePrincipalPolicy")
    finally:
        for client in (ddb, sts, iam):
            client.close()
    return facts


def _ask(target: ReplicaTarget, operation: str, fn: Any, local: bool, unimplemented: str | None = None) -> Fact:
    try:
        return Fact(fn())
    except Exception as exc:
        # moto answers an operation it lacks with an HTML 500 page, which botocore cannot parse
        if local and unimplemented and ("Unable to parse response" in str(exc) or "NotImplemented" in str(exc)):
            return Fact(unanswerable=unimplemented)
        if not is_sdk_error(exc):
            raise
        err = translate(exc, replica=target.replica, dataset=target.dataset, operation=operation,
                        resource=target.resource)
        return Fact(error=f"{type(err).__name__}: {err}")


def _principal(arn: str) -> str:
    """The IAM principal to simulate: an assumed-role session ARN becomes its role's ARN."""
    if ":assumed-role/" in arn:
        account = arn.split(":")[4]
        role = arn.split(":assumed-role/", 1)[1].split("/")[0]
        return f"arn:aws:iam::{account}:role/{role}"
    return arn


def _denied(resp: dict[str, Any]) -> list[str]:
    """The actions the simulation did not allow (empty: every one is allowed)."""
    return sorted(r["EvalActionName"] for r in resp.get("EvaluationResults", []) if r.get("EvalDecision") != "allowed")


__all__ = ["inspect"]
