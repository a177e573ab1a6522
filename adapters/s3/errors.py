"""The one place botocore exceptions from S3 become mcrepl errors (and so the S3 retry policy).

Retry code reads only the ``retryable`` bit: ``SlowDown`` and 503 are throttling, 5xx and
lost connections are transient, bad input, missing buckets and refused credentials are
not retried. A failed precondition (412, or 409 ``ConditionalRequestConflict`` when a
concurrent write won) is :class:`PreconditionFailed`: the apply loop reads and decides
again. Messages keep only error codes for credential failures, never the service's text.
See https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, NoCredentialsError, PartialCredentialsError,
                                 ProfileNotFound, ReadTimeoutError)

from mcrepl.adapters.base import (AdapterError, CredentialsError, McreplError, NotFoundError, ThrottledError,
                                  UnavailableError)
from mcrepl.adapters.base.conditional import PreconditionFailed
from mcrepl.adapters.base.object_store import ObjectMissing

PROVIDER = "s3"
THROTTLING = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                        "TooManyRequestsException", "503"})
CREDENTIALS = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                         "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "403"})
PRECONDITION = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})


def is_sdk_error(exc: BaseException) -> bool:
    """True for exceptions raised by botocore (the ones :func:`translate` understands)."""
    return isinstance(exc, (ClientError, BotoCoreError))


def translate(exc: BaseException, *, replica: str | None = None, dataset: str | None = None,
              operation: str | None = None, key: str | None = None, bucket: str | None = None,
              object_call: bool = False) -> McreplError:
    """Map a botocore exception to an mcrepl error saying where it happened and whether to retry.

    ``object_call``: a 404 concerns one object (it was deleted or replaced since it was
    listed), so it is :class:`ObjectMissing`; otherwise a 404 means the bucket is missing.
    """
    ctx: dict[str, Any] = {"provider": PROVIDER, "replica": replica, "dataset": dataset,
                           "operation": operation, "key": key}
    if isinstance(exc, ClientError):
        return _from_client_error(exc, ctx, bucket, object_call)
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)):
        return UnavailableError(f"S3 endpoint unreachable ({type(exc).__name__})", **ctx)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsError("no usable AWS credentials were found (fix: configure a profile with 'aws "
                                "configure', set providers.s3.profile, or use endpoint: local)", **ctx)
    if isinstance(exc, ProfileNotFound):
        return CredentialsError("the AWS profile named in providers.s3.profile does not exist (fix: create it "
                                "with 'aws configure --profile NAME' or remove the setting)", **ctx)
    return AdapterError(f"S3 client error: {type(exc).__name__}", **ctx)


def _from_client_error(exc: ClientError, ctx: dict[str, Any], bucket: str | None,
                       object_call: bool) -> McreplError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in PRECONDITION or status == 412:
        return PreconditionFailed(f"the object changed since it was read ({code or status})", **ctx)
    if code in THROTTLING:
        return ThrottledError(f"S3 asked to slow down ({code})", **ctx)
    if code in CREDENTIALS:
        return CredentialsError(f"S3 refused the credentials ({code}) (fix: check the profile's keys and grant "
                                f"the identity access to bucket {bucket!r}, see 'mcrepl iam render')", **ctx)
    if code == "NoSuchBucket" or (status == 404 and not object_call and code != "NoSuchKey"):
        return NotFoundError(f"S3 bucket {bucket!r} does not exist (fix: provision it; on the local stack "
                             "'mcrepl sync' and 'mcrepl local seed' create it)", **ctx)
    if code in ("NoSuchKey", "404") or status == 404:
        return ObjectMissing("the object is no longer there", **ctx)
    if status >= 500 or code in ("InternalError", "ServiceUnavailable"):
        return UnavailableError(f"S3 failed the request ({code or status})", **ctx)
    message = str(error.get("Message") or "").strip().splitlines()
    return AdapterError(f"S3 rejected the request ({code or status}): {message[0][:200] if message else ''}",
                        **ctx)


__all__ = ["PROVIDER", "is_sdk_error", "translate"]
