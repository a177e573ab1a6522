"""The one place botocore exceptions become mcrepl errors.

Retry code reads only the ``retryable`` bit of what :func:`translate` returns, so the
classification below *is* the DynamoDB retry policy: throttling and server-side
failures are retried with backoff, bad input and missing resources are not.
Messages never include credentials: for authentication failures only the error code
is kept, never the service's text (which can echo request details).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from ..base.errors import (
    AdapterError,
    CredentialsError,
    McreplError,
    NotFoundError,
    RecordError,
    ThrottledError,
    UnavailableError,
)

PROVIDER = "dynamodb"

THROTTLING_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "LimitExceededException", "Throttling", "TooManyRequestsException",
})
#: transient server-side states: retrying the same call later can succeed
TRANSIENT_CODES = frozenset({
    "InternalServerError", "InternalFailure", "ServiceUnavailable", "TransactionConflictException",
    "TransactionInProgressException", "ResourceInUseException",
})
CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException",
    "ExpiredTokenException", "MissingAuthenticationToken", "IncompleteSignature",
    "InvalidClientTokenId", "SignatureDoesNotMatch",
})
#: ValidationException texts that mean "this one item can't be stored" (a quarantine case,
#: not a failed call); the service's limits are checked client-side first, these catch the rest
_ITEM_VALIDATION = (
    ("Item size has exceeded", "item-too-large", "the item is larger than DynamoDB's 400 KB limit"),
    ("Item size to update has exceeded", "item-too-large", "the item is larger than DynamoDB's 400 KB limit"),
    ("Nesting Levels have exceeded", "nesting-depth", "the item nests deeper than DynamoDB's 32 levels"),
    ("precision up to 38 digits", "number-precision", "a number has more than 38 significant digits"),
    ("Number overflow", "number-range", "a number is larger than DynamoDB's range (9.99E+125)"),
    ("Number underflow", "number-range", "a number is closer to zero than DynamoDB's range (1E-130)"),
    ("may not be empty", "empty-set", "DynamoDB cannot store an empty set"),
)


def error_code(exc: BaseException) -> str | None:
    """The service's error code of a botocore ``ClientError`` (``None`` for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    return None


def error_item(exc: BaseException) -> dict[str, Any] | None:
    """The stored item returned with a failed condition (``ReturnValuesOnConditionCheckFailure``)."""
    if isinstance(exc, ClientError):
        item = exc.response.get("Item")
        return item if isinstance(item, dict) else None
    return None


def is_sdk_error(exc: BaseException) -> bool:
    """True for exceptions raised by botocore (the ones :func:`translate` understands)."""
    return isinstance(exc, (ClientError, BotoCoreError))


def translate(exc: BaseException, *, replica: str | None = None, dataset: str | None = None,
              operation: str | None = None, key: str | None = None,
              resource: str | None = None) -> McreplError:
    """Map a botocore exception to an mcrepl error carrying where it happened and whether to retry."""
    ctx: dict[str, Any] = {"provider": PROVIDER, "replica": replica, "dataset": dataset,
                           "operation": operation, "key": key}
    if isinstance(exc, ClientError):
        return _from_client_error(exc, ctx, resource)
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError,
                        ReadTimeoutError)):
        return UnavailableError(f"DynamoDB endpoint unreachable ({type(exc).__name__})", **ctx)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsError("no usable AWS credentials were found (fix: configure a profile with "
                                "'aws configure', set providers.dynamodb.profile, or use endpoint: "
                                "local for the local stack)", **ctx)
    if isinstance(exc, ProfileNotFound):
        return CredentialsError("the AWS profile named in providers.dynamodb.profile does not exist "
                                "(fix: create it with 'aws configure --profile NAME' or remove the setting)",
                                **ctx)
    if isinstance(exc, NoRegionError):
        return AdapterError("no AWS region for DynamoDB (fix: write the replica as dynamodb:REGION)", **ctx)
    if isinstance(exc, BotoCoreError):
        return AdapterError(f"DynamoDB client error: {type(exc).__name__}", **ctx)
    return AdapterError(f"unexpected error calling DynamoDB: {type(exc).__name__}", **ctx)


def _from_client_error(exc: ClientError, ctx: dict[str, Any], resource: str | None) -> McreplError:
    code = error_code(exc) or ""
    message = str(exc.response.get("Error", {}).get("Message") or "")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in THROTTLING_CODES:
        return ThrottledError(f"DynamoDB throttled the request ({code})", **ctx)
    if code in CREDENTIAL_CODES:
        return CredentialsError(f"DynamoDB refused the credentials ({code}); check the profile's keys "
                                "and its IAM permissions (mcrepl iam render shows the needed ones)",
                                **ctx)
    if code == "ResourceNotFoundException":
        name = f"table {resource!r}" if resource else "the table or stream"
        return NotFoundError(f"DynamoDB {name} not found: {_short(message)} (fix: provision it with "
                             "the Pulumi program; on the local stack 'mcrepl sync' and 'mcrepl local seed' create it)", **ctx)
    if code == "ValidationException":
        record_error = _record_error(message)
        if record_error is not None:
            return record_error.located(dataset=ctx["dataset"], key=ctx["key"], target=ctx["replica"])
    if code in TRANSIENT_CODES or status >= 500 or code.isdigit() and int(code) >= 500:
        return UnavailableError(f"DynamoDB failed the request ({code or status}): {_short(message)}", **ctx)
    return AdapterError(f"DynamoDB rejected the request ({code or status}): {_short(message)}", **ctx)


def _record_error(message: str) -> RecordError | None:
    for needle, rule, text in _ITEM_VALIDATION:
        if needle in message:
            return RecordError(rule, f"{text} (the service refused it: {_short(message)})")
    return None


def _short(message: str, limit: int = 200) -> str:
    """The first line of a service message, bounded (moto answers 500s with whole HTML pages)."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line[:limit]
