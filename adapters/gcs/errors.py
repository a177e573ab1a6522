"""The one place google-api-core, google-auth and requests exceptions become mcrepl errors.

Retry code reads only the ``retryable`` bit of what :func:`translate` returns, so the
classification below *is* the GCS retry policy (Google's own guidance: retry 408, 429
and 5xx with backoff; https://cloud.google.com/storage/docs/retry-strategy). The
client library's built-in retries are switched off at every call site (``retry=None``)
so that :func:`~mcrepl.adapters.base.retry.call_with_retry`'s deadline bounds the total.
Credential failures keep only the status code, never the service's text.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from ..base.conditional import PreconditionFailed
from ..base.object_store import ObjectMissing
from ..base.errors import (AdapterError, CredentialsError, McreplError, NotFoundError,
                           ThrottledError, UnavailableError)

PROVIDER = "gcs"
TRANSIENT_STATUS = frozenset({408, 500, 502, 503, 504})
CREDENTIAL_STATUS = frozenset({401, 403})


#: exception families raised by the client stack that :func:`translate` understands; anything
#: else is a programming error and propagates unchanged
SDK_ERRORS: tuple[type[BaseException], ...] = (
    api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, requests.RequestException,
    InvalidResponse, DataCorruption, ConnectionError, TimeoutError)




def translate(exc: BaseException, *, replica: str | None = None, dataset: str | None = None,
              operation: str | None = None, key: str | None = None, bucket: str | None = None,
              object_call: bool = False) -> McreplError:
    """Map an SDK exception to an mcrepl error carrying where it happened and whether to retry.

    ``object_call`` says a 404 concerns one object (a download or delete), so it becomes
    :class:`ObjectMissing`; otherwise a 404 means the bucket is missing.
    """
    ctx: dict[str, Any] = {"provider": PROVIDER, "replica": replica, "dataset": dataset,
                           "operation": operation, "key": key}
    if isinstance(exc, McreplError):
        return exc
    if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None:
        return translate(exc.cause, replica=replica, dataset=dataset, operation=operation,
                         key=key, bucket=bucket, object_call=object_call)
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return _from_status(exc, ctx, bucket, object_call)
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return CredentialsError("no Google Application Default Credentials found (fix: run "
                                "'gcloud auth application-default login', set "
                                "GOOGLE_APPLICATION_CREDENTIALS, or use auth: anonymous for an "
                                "emulator)", **ctx)
    if isinstance(exc, auth_exceptions.RefreshError):
        return CredentialsError("Google credentials could not be refreshed (fix: renew the ADC "
                                "login or the service account key)", **ctx)
    if isinstance(exc, (auth_exceptions.TransportError, requests.ConnectionError, requests.Timeout,
                        requests.exceptions.ChunkedEncodingError, ConnectionError, TimeoutError)):
        return UnavailableError(f"GCS endpoint unreachable ({type(exc).__name__})", **ctx)
    if isinstance(exc, DataCorruption):
        return UnavailableError("GCS download failed its checksum check", **ctx)
    if isinstance(exc, InvalidResponse):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        fake = api_exceptions.from_http_status(int(status or 500), str(exc),
                                               response=getattr(exc, "response", None))
        return _from_status(fake, ctx, bucket, object_call)
    return AdapterError(f"unexpected GCS client error {type(exc).__name__}: {exc}", **ctx)


def _from_status(exc: api_exceptions.GoogleAPICallError, ctx: dict[str, Any], bucket: str | None,
                 object_call: bool) -> McreplError:
    code = int(exc.code or 0)
    if code == 412:
        return PreconditionFailed("the object's generation changed since it was read", **ctx)
    if code == 429:
        return ThrottledError("GCS asked to slow down (HTTP 429)",
                              retry_after=retry_after_seconds(exc), **ctx)
    if code in TRANSIENT_STATUS:
        return UnavailableError(f"GCS answered HTTP {code}", retry_after=retry_after_seconds(exc),
                                **ctx)
    if code in CREDENTIAL_STATUS:
        return CredentialsError(f"GCS refused the credentials (HTTP {code}) (fix: grant the "
                                f"identity storage access on bucket {bucket!r}, see "
                                "'mcrepl iam render')", **ctx)
    if code == 404:
        if object_call:
            return ObjectMissing("the object is no longer there", **ctx)
        return NotFoundError(f"GCS bucket {bucket!r} does not exist (fix: provision it with the "
                             "Pulumi program; on the local stack 'mcrepl sync' and 'mcrepl local seed' create it)", **ctx)
    return AdapterError(f"GCS answered HTTP {code}: {exc.message}", **ctx)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The ``Retry-After`` header of the failed response, in seconds (delta or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
