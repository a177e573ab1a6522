"""The one place azure-core / azure-cosmos exceptions become mcrepl errors.

:func:`translate` maps an SDK exception to an :mod:`mcrepl.adapters.base.errors` type
with the retry bit set; :func:`cosmos_call` runs one SDK call under the shared retry
policy with that translation, so no SDK exception type leaves this package.

=========================================  ===========================================
SDK failure                                mcrepl error
=========================================  ===========================================
HTTP 429                                   ``ThrottledError`` (``retry_after`` from
                                           ``x-ms-retry-after-ms``)
HTTP 408/449/500/502/503/504, connection   ``UnavailableError`` (retryable)
errors, client timeouts
HTTP 401/403, identity failures            ``CredentialsError`` (never the secret)
HTTP 404                                   ``NotFoundError`` naming database/container
HTTP 409/412                               ``PreconditionFailed`` (etag race)
HTTP 413                                   ``RecordError`` ``item-too-large``
anything else                              ``AdapterError`` (not retryable)
=========================================  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from ..base.conditional import PreconditionFailed
from ..base.errors import (
    AdapterError,
    CredentialsError,
    McreplError,
    NotFoundError,
    RecordError,
    ThrottledError,
    UnavailableError,
)
from ..base.interface import ReplicaTarget
from ..base.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry

T = TypeVar("T")

_TRANSIENT = {408, 449, 500, 502, 503, 504}


def _first_line(exc: CosmosHttpResponseError) -> str:
    """The service's own message, one line and short (it never carries item values)."""
    text = str(exc.http_error_message or "").strip().splitlines()
    return text[0][:200] if text else ""


def _retry_after_s(exc: CosmosHttpResponseError) -> float | None:
    raw = (exc.headers or {}).get("x-ms-retry-after-ms")
    try:
        return float(raw) / 1000.0 if raw is not None else None
    except (TypeError, ValueError):
        return None


def translate(exc: BaseException, target: ReplicaTarget, operation: str,
              key: str | None = None) -> McreplError:
    """The mcrepl error for ``exc`` raised by an SDK call ``operation`` on ``target``."""
    database, container = target.options.get("database"), target.resource
    ctx: dict[str, Any] = {"provider": "cosmos", "replica": target.replica,
                           "dataset": target.dataset, "operation": operation, "key": key}
    if isinstance(exc, CosmosHttpResponseError):
        status = exc.status_code
        if status == 429:
            return ThrottledError("Cosmos DB throttled the request (HTTP 429: request rate too "
                                  "large)", retry_after=_retry_after_s(exc), **ctx)
        if status in (401, 403):
            return CredentialsError(f"Cosmos DB refused the credentials (HTTP {status}): "
                                    f"{_credentials_fix(target)}", **ctx)
        if status == 404:
            return NotFoundError(
                f"Cosmos DB database {database!r} or container {container!r} does not exist at "
                f"{target.options.get('endpoint')}: on the local stack 'mcrepl sync' and 'mcrepl local "
                "seed' create it; on Azure provision it with the Pulumi program in pulumi/", **ctx)
        if status in (409, 412):
            return PreconditionFailed(f"the item changed since it was read (HTTP {status})", **ctx)
        if status == 413:
            return RecordError("item-too-large", "Cosmos DB refused the item as too large (HTTP "
                               "413): split the record or keep large payloads in a blob dataset",
                               dataset=target.dataset, key=key, target=target.replica)
        if status in _TRANSIENT:
            return UnavailableError(f"Cosmos DB is unavailable (HTTP {status}) {_first_line(exc)}"
                                    .rstrip(), **ctx)
        return AdapterError(f"Cosmos DB refused the request (HTTP {status}) {_first_line(exc)}"
                            .rstrip(), **ctx)
    if isinstance(exc, ClientAuthenticationError):
        return CredentialsError(f"could not get an Entra ID token for Cosmos DB "
                                f"({type(exc).__name__}): {_credentials_fix(target)}", **ctx)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError)):
        return UnavailableError(f"cannot reach Cosmos DB at {target.options.get('endpoint')} "
                                f"({type(exc).__name__})", **ctx)
    return AdapterError(f"Cosmos DB call failed ({type(exc).__name__})", **ctx)


def _credentials_fix(target: ReplicaTarget) -> str:
    if target.options.get("auth") == "aad":
        return ("sign in for DefaultAzureCredential (az login, a managed identity or AZURE_* "
                "variables) and grant the identity the 'Cosmos DB Built-in Data Contributor' role")
    return (f"set the environment variable {target.options.get('key_env', 'MCREPL_COSMOS_KEY')} "
            "to the account's primary or secondary key")


def cosmos_call(fn: Callable[[], T], target: ReplicaTarget, operation: str, key: str | None = None,
                policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """Run ``fn`` (one or a few SDK calls) with error translation and the shared retry policy.

    Credential failures drop the SDK exception from the chain (``from None``) so no
    request detail of an authentication exchange travels with the error.
    """
    def attempt() -> T:
        try:
            return fn()
        except AzureError as exc:
            err = translate(exc, target, operation, key)
            if isinstance(err, CredentialsError):
                raise err from None
            raise err from exc

    return call_with_retry(attempt, policy)
