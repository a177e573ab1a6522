"""Every S3 call the adapter makes, as the object store primitives, under the one retry policy.

Conditional writes are S3's own: ``PutObject`` with ``If-None-Match: *`` (create only) or
``If-Match: <ETag>`` (replace exactly the version read), ``DeleteObject`` with
``If-Match``; a pinned read is ``GetObject`` with ``If-Match``. botocore's retries are off
(``total_max_attempts=1``) so :func:`~mcrepl.adapters.base.retry.call_with_retry`'s
deadline bounds the total, and each request's timeouts are cut at that deadline.

Credentials: a local endpoint (the local stack, any loopback address) gets dummy keys in a
botocore session that reads no AWS config or credentials file, unless ``profile`` is set;
otherwise the standard chain, with ``profile`` if given. (mcrepl's own AWS adapters share
this in :mod:`mcrepl.adapters.aws`; this adapter keeps to the public interface, as a third
party's would.) Nothing here logs a secret.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse

import boto3
import botocore.session
from botocore.config import Config

from mcrepl.adapters.base import ReplicaTarget
from mcrepl.adapters.base.conditional import PreconditionFailed
from mcrepl.adapters.base.object_store import UNCONDITIONAL, ObjectMissing, StoredObject, parallel
from mcrepl.adapters.base.retry import DEFAULT_POLICY, RetryPolicy, call_translated, request_timeouts

from . import wire
from .errors import is_sdk_error, translate
from .settings import S3Settings

T = TypeVar("T")
LIST_PAGE_SIZE = 1000
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _client(target: ReplicaTarget, policy: RetryPolicy) -> Any:
    settings = S3Settings.from_options(target.options)
    local = bool(target.options.get("local")) or \
        (urlparse(str(settings.endpoint or "")).hostname or "") in _LOOPBACK
    connect, read = request_timeouts(policy)
    config = Config(retries={"total_max_attempts": 1}, max_pool_connections=16, connect_timeout=connect,
                    read_timeout=read, s3={"addressing_style": "path" if settings.path_style or local else "auto"})
    if local and not settings.profile:
        isolated = botocore.session.Session(session_vars={
            "profile": (None, None, None, None), "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None)})
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=target.region, botocore_session=isolated)
    else:
        session = boto3.session.Session(profile_name=settings.profile, region_name=target.region)
    return session.client("s3", endpoint_url=settings.endpoint or None, config=config)


def _stored(name: str, raw_etag: str | None, last_modified: Any, metadata: Mapping[str, str] | None) -> \
        StoredObject[str]:
    tag = wire.etag(raw_etag) or ""
    updated = int(last_modified.timestamp() * 1000) if last_modified is not None else None
    return StoredObject(name, tag, wire.version_of(tag, last_modified), metadata, tag, updated)


class BucketIO:
    """One bucket of one target: :class:`~mcrepl.adapters.base.object_store.ObjectIO` over boto3.

    The ETag is both the precondition token and (with LastModified) the manifest version.
    A listing carries no user metadata, so it is completed with one ``HeadObject`` per
    object, in parallel pages (S3 has no listing with metadata).
    """

    def __init__(self, target: ReplicaTarget, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.target = target
        self.name = target.resource
        self.policy = policy
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The S3 client, created on first use (so constructing an adapter is free)."""
        with self._lock:
            if self._client is None:
                self._client = self.call(lambda: _client(self.target, self.policy), "connect")
            return self._client

    def call(self, fn: Callable[[], T], operation: str, key: str | None = None, object_call: bool = False) -> T:
        """Run ``fn`` with retries; SDK exceptions leave as mcrepl errors."""
        return call_translated(fn, self.policy, is_sdk_error, lambda exc: translate(
            exc, replica=self.target.replica, dataset=self.target.dataset, operation=operation, key=key,
            bucket=self.name, object_call=object_call))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- ObjectIO ----------------------------------------------------------------------

    def list(self, start_after: str | None = None) -> Iterator[StoredObject[str]]:
        """Objects after ``start_after`` in UTF-8 byte order, each with its metadata (a HEAD each)."""
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.name, "MaxKeys": LIST_PAGE_SIZE}
            if token:
                args["ContinuationToken"] = token
            elif start_after:
                args["StartAfter"] = start_after
            page: dict[str, Any] = self.call(lambda: self.client.list_objects_v2(**args), "list")
            listed: list[dict[str, Any]] = page.get("Contents") or []
            stats = parallel(self._stat_listed, listed)
            yield from (s for s in stats if s is not None)
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token:
                return

    def _stat_listed(self, listed: dict[str, Any]) -> StoredObject[str] | None:
        return self.stat(str(listed["Key"]))

    def stat(self, name: str, key: str | None = None) -> StoredObject[str] | None:
        """``HeadObject``: ETag, LastModified and user metadata; ``None`` when absent."""
        try:
            head = self.call(lambda: self.client.head_object(Bucket=self.name, Key=name), "head", key,
                             object_call=True)
        except ObjectMissing:
            return None
        return _stored(name, head.get("ETag"), head.get("LastModified"), head.get("Metadata") or {})

    def fetch(self, obj: StoredObject[str], key: str | None = None) -> bytes:
        """``GetObject`` with ``If-Match``: exactly the version listed, else :class:`ObjectMissing`."""
        def get() -> bytes:
            body = self.client.get_object(Bucket=self.name, Key=obj.name, IfMatch=obj.token)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()
        try:
            return self.call(get, "get", key, object_call=True)
        except PreconditionFailed as exc:
            raise ObjectMissing("the object was replaced since it was listed", provider="s3",
                                replica=self.target.replica, key=key) from exc

    def put(self, name: str, data: bytes, content_type: str, metadata: Mapping[str, str] | None, *,
            expect: str | None, key: str | None = None) -> str:
        """``PutObject``, conditional on ``If-None-Match: *`` (``expect=None``) or ``If-Match``."""
        args: dict[str, Any] = {"Bucket": self.name, "Key": name, "Body": data, "ContentType": content_type,
                                "Metadata": dict(metadata or {})}
        if expect is None:
            args["IfNoneMatch"] = "*"
        elif expect is not UNCONDITIONAL:
            args["IfMatch"] = expect
        try:
            answer = self.call(lambda: self.client.put_object(**args), "put", key, object_call=True)
        except ObjectMissing as exc:
            # If-Match on an object deleted since it was read answers 404: the state changed
            raise PreconditionFailed("the object was deleted since it was read", provider="s3",
                                     replica=self.target.replica, key=key) from exc
        return wire.etag(answer.get("ETag")) or wire.md5_hex(data)

    def remove(self, name: str, *, expect: str | None = UNCONDITIONAL, key: str | None = None) -> bool:
        """``DeleteObject`` (with ``If-Match`` when ``expect`` is an ETag); ``False`` when already gone."""
        args: dict[str, Any] = {"Bucket": self.name, "Key": name}
        if expect is not UNCONDITIONAL and expect is not None:
            args["IfMatch"] = expect
        try:
            self.call(lambda: self.client.delete_object(**args), "delete", key, object_call=True)
        except ObjectMissing:
            return False
        return True

    def ensure_bucket(self, location: str | None) -> bool:
        """Create the bucket if missing (``LocationConstraint`` outside us-east-1); ``True`` if created."""
        def make() -> bool:
            try:
                self.client.head_bucket(Bucket=self.name)
                return False
            except Exception as exc:
                if not (is_sdk_error(exc) and _status(exc) == 404):
                    raise
            args: dict[str, Any] = {"Bucket": self.name}
            if location and location != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": location}
            try:
                self.client.create_bucket(**args)
            except Exception as exc:
                if is_sdk_error(exc) and _code(exc) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return False      # created concurrently, by another worker or test
                raise
            return True
        return self.call(make, "ensure_ready")

    def delete_bucket(self) -> None:
        """Delete the (empty) bucket; a missing bucket is fine."""
        def remove() -> None:
            try:
                self.client.delete_bucket(Bucket=self.name)
            except Exception as exc:
                if not (is_sdk_error(exc) and _code(exc) == "NoSuchBucket"):
                    raise
        self.call(remove, "drop")


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")


def _status(exc: BaseException) -> int:
    return int(getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


__all__ = ["BucketIO"]
