"""Cloud Storage readiness facts for ``mcrepl doctor``: identity, bucket settings, ``testIamPermissions``.

Calls are made once each, without the retry loop. The emulator (fake-gcs-server) runs
anonymously, keeps no bucket location, versioning, uniform access or IAM: those facts
are unanswerable there (SKIP), never passes.
"""

from __future__ import annotations

from typing import Any

from ..base.interface import ReplicaTarget
from ..base.readiness import Fact
from ..base.retry import policy_for, request_timeouts
from .client import make_client, uses_anonymous
from .errors import SDK_ERRORS, translate

_EMULATOR = "fake-gcs-server does not implement"


def inspect(target: ReplicaTarget, permissions: list[str]) -> dict[str, Fact]:
    """Facts about ``target``'s bucket and the identity that reaches it."""
    options = dict(target.options)
    local = bool(options.get("local"))
    timeout = request_timeouts(policy_for(options))
    facts: dict[str, Fact] = {"endpoint": Fact(options.get("endpoint") or "https://storage.googleapis.com")}
    try:
        client = make_client(options)
    except Exception as exc:                         # no ADC: the identity is the finding
        facts["identity"] = Fact(error=f"{type(exc).__name__}: Application Default Credentials not found")
        return facts
    try:
        if uses_anonymous(options):
            facts["identity"] = Fact(unanswerable="anonymous credentials (emulator or auth: anonymous)")
        else:
            facts["identity"] = Fact(getattr(client._credentials, "service_account_email", None) or "user credentials")
        bucket = _ask(target, "get_bucket", lambda: client.get_bucket(target.resource, retry=None,
                                                                         timeout=timeout))
        facts["bucket"] = Fact({"name": target.resource}) if bucket.known else bucket
        if bucket.known:
            b = bucket.value
            facts["location"] = Fact(unanswerable=f"{_EMULATOR} bucket locations") if local else Fact(b.location)
            facts["versioning"] = Fact(unanswerable=f"{_EMULATOR} versioning") if local else Fact(b.versioning_enabled)
            facts["uniform_access"] = Fact(unanswerable=f"{_EMULATOR} uniform bucket-level access") if local else \
                Fact(b.iam_configuration.uniform_bucket_level_access_enabled)
            facts["encryption"] = Fact({"key": b.default_kms_key_name})
            facts["permissions"] = Fact(unanswerable=f"{_EMULATOR} IAM (testIamPermissions)") if local else \
                _ask(target, "test_iam_permissions", lambda: sorted(set(permissions) - set(
                    b.test_iam_permissions(permissions, retry=None, timeout=timeout))))
    finally:
        client._http.close()
    return facts


def _ask(target: ReplicaTarget, operation: str, fn: Any) -> Fact:
    try:
        return Fact(fn())
    except SDK_ERRORS as exc:
        err = translate(exc, replica=target.replica, dataset=target.dataset, operation=operation,
                        bucket=target.resource)
        return Fact(error=f"{type(err).__name__}: {err}")


__all__ = ["inspect"]
