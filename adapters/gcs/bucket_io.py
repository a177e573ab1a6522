"""Every GCS call the adapter makes, each under the one retry policy with errors translated.

The client library retries some calls itself (with a 120 s default deadline, and only
when it judges them idempotent). Every call here passes ``retry=None`` so the only retry
loop is :func:`call_with_retry`, whose deadline then bounds the total time; each HTTP
request is bounded by :func:`~..base.retry.request_timeouts` (never past that deadline).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from google.api_core import exceptions as api_exceptions
from google.cloud import storage

from ..base.interface import ReplicaTarget
from ..base.object_store import UNCONDITIONAL, StoredObject
from ..base.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry, request_timeouts
from .client import make_client
from .errors import SDK_ERRORS, translate

T = TypeVar("T")
LIST_PAGE_SIZE = 1000
#: what listings need: partial responses keep big listings light on real GCS
LIST_FIELDS = "items(name,generation,metadata,md5Hash,updated,size),nextPageToken"


class BucketIO:
    """One bucket of one target: listing, metadata reads, downloads, conditional uploads.

    Implements :class:`~mcrepl.adapters.base.object_store.ObjectIO` (``list``, ``stat``,
    ``fetch``, ``put``, ``remove``) over the SDK-shaped ``get``/``download``/``upload``/
    ``delete``; the generation is both the precondition token and the manifest version.
    """

    def __init__(self, target: ReplicaTarget, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.target = target
        self.name = target.resource
        self.policy = policy
        self.timeout = request_timeouts(policy)            # (connect, read) of one HTTP request
        self._client: storage.Client | None = None
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------

    @property
    def client(self) -> storage.Client:
        """The storage client, created on first use (so constructing an adapter is free)."""
        with self._lock:
            if self._client is None:
                self._client = self.call(lambda: make_client(self.target.options), "connect")
            return self._client

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(self.name)

    def call(self, fn: Callable[[], T], operation: str, key: str | None = None,
             object_call: bool = False) -> T:
        """Run ``fn`` with retries; SDK exceptions leave as mcrepl errors."""
        def attempt() -> T:
            try:
                return fn()
            except SDK_ERRORS as exc:
                raise translate(exc, replica=self.target.replica, dataset=self.target.dataset,
                                operation=operation, key=key, bucket=self.name,
                                object_call=object_call) from exc
        return call_with_retry(attempt, self.policy)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client._http.close()
                self._client = None

    # -- objects ---------------------------------------------------------------------

    # -- ObjectIO ----------------------------------------------------------------------

    def list(self, start_after: str | None = None) -> Iterator[StoredObject[int]]:
        """Objects after ``start_after`` in name order (``start_offset`` is inclusive; the scan skips it)."""
        return (stored_object(b) for b in self.list_blobs(start_offset=start_after))

    def list_range(self, start: str | None, end: str | None) -> Iterator[StoredObject[int]]:
        """Objects named in ``[start, end)`` in name order (``startOffset`` inclusive, ``endOffset`` exclusive)."""
        return (stored_object(b) for b in self.list_blobs(start_offset=start, end_offset=end))

    def stat(self, name: str, key: str | None = None) -> StoredObject[int] | None:
        blob = self.get(name, key)
        return stored_object(blob) if blob is not None else None

    def fetch(self, obj: StoredObject[int], key: str | None = None) -> bytes:
        return self.download(obj.name, obj.token, key)

    def put(self, name: str, data: bytes, content_type: str, metadata: Mapping[str, str] | None, *,
            expect: int | None, key: str | None = None) -> int:
        match = None if expect is UNCONDITIONAL else (expect or 0)
        return self.upload(name, data, content_type, metadata, if_generation_match=match, key=key)

    def remove(self, name: str, *, expect: int | None = UNCONDITIONAL, key: str | None = None) -> bool:
        return self.delete(name, if_generation_match=None if expect is UNCONDITIONAL else (expect or 0),
                           key=key)

    # -- the SDK's shapes ---------------------------------------------------------------

    def list_blobs(self, start_offset: str | None = None, end_offset: str | None = None) -> Iterator[storage.Blob]:
        """Every object (with metadata, no content) from ``start_offset`` on, in name order.

        Pages are fetched one call at a time, so a retry repeats one page, not the walk. The
        next page is requested while the caller works through the current one: a listing is
        a chain of requests (each needs the last one's token), and without this the store and
        the caller took turns waiting for each other.
        """
        def fetch(token: str | None) -> tuple[list[storage.Blob], str | None]:
            def page_of() -> tuple[list[storage.Blob], str | None]:
                it = self.client.list_blobs(self.name, page_token=token, start_offset=start_offset,
                                            end_offset=end_offset, page_size=LIST_PAGE_SIZE, fields=LIST_FIELDS,
                                            retry=None, timeout=self.timeout)
                page = next(it.pages, None)
                return (list(page) if page is not None else []), it.next_page_token
            return self.call(page_of, "list")

        blobs, token = fetch(None)
        if not token:
            yield from blobs
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcs-list") as ahead:
            while True:
                following = ahead.submit(fetch, token) if token else None
                try:
                    yield from blobs
                except GeneratorExit:             # the caller stopped: the page ahead is not wanted
                    if following is not None:
                        following.cancel()
                    raise
                if following is None:
                    return
                blobs, token = following.result()

    def get(self, name: str, key: str | None = None) -> storage.Blob | None:
        """The object's metadata (no content), or ``None`` if it does not exist."""
        return self.call(lambda: self.bucket.get_blob(name, retry=None, timeout=self.timeout),
                         "get", key)

    def download(self, name: str, generation: int, key: str | None = None) -> bytes:
        """The content of exactly ``generation`` of ``name``.

        Raises :class:`~.errors.ObjectMissing` when that generation is no longer live
        (overwritten or deleted since it was listed): the caller reads the object again.
        Asking for the generation (rather than ``ifGenerationMatch``) is what
        fake-gcs-server honours too; it ignores preconditions on downloads.
        """
        return self.call(lambda: self.bucket.blob(name, generation=generation).download_as_bytes(
            retry=None, timeout=self.timeout), "download", key, object_call=True)

    def upload(self, name: str, data: bytes, content_type: str, metadata: Mapping[str, str] | None,
               if_generation_match: int | None = None, key: str | None = None) -> int:
        """Write ``name``; with ``if_generation_match`` (0 = must not exist) a 412 raises
        :class:`~mcrepl.adapters.base.conditional.PreconditionFailed`. Returns the new generation."""
        def put() -> int:
            blob = self.bucket.blob(name)
            blob.metadata = dict(metadata) if metadata else None
            blob.upload_from_string(data, content_type=content_type, retry=None,
                                    timeout=self.timeout, if_generation_match=if_generation_match)
            return int(blob.generation or 0)
        return self.call(put, "upload", key)

    def delete(self, name: str, if_generation_match: int | None = None,
               key: str | None = None) -> bool:
        """Delete ``name``; ``False`` if it was already gone. A 412 raises ``PreconditionFailed``.

        (fake-gcs-server ignores delete preconditions; real GCS enforces them.)
        """
        def remove() -> bool:
            try:
                self.bucket.delete_blob(name, if_generation_match=if_generation_match, retry=None,
                                        timeout=self.timeout)
            except api_exceptions.NotFound:
                return False
            return True
        return self.call(remove, "delete", key)

    # -- the bucket ------------------------------------------------------------------

    def ensure_bucket(self, location: str | None) -> bool:
        """Create the bucket if missing; ``True`` if this call created it."""
        def make() -> bool:
            try:
                self.client.get_bucket(self.name, retry=None, timeout=self.timeout)
                return False
            except api_exceptions.NotFound:
                pass
            try:
                self.client.create_bucket(self.name, location=location, retry=None,
                                          timeout=self.timeout)
            except api_exceptions.Conflict:
                return False          # created concurrently, by another worker or test
            return True
        return self.call(make, "ensure_ready")

    def delete_bucket(self) -> None:
        """Delete the (empty) bucket; a missing bucket is fine."""
        def remove() -> None:
            try:
                self.bucket.delete(retry=None, timeout=self.timeout)
            except api_exceptions.NotFound:
                pass
        self.call(remove, "drop")


def stored_object(blob: Any) -> StoredObject[int]:
    """A listed or fetched blob as the object store adapter sees it.

    Read from the blob's JSON resource (``_properties``): the SDK's ``metadata`` getter
    deep-copies the dict and ``updated`` goes through ``strptime`` on every call, which
    was most of the client's CPU per object in a verify's listing.
    """
    props = blob._properties
    updated = props.get("updated")
    generation = int(props["generation"])
    return StoredObject(blob.name, generation, generation, props.get("metadata"), props.get("md5Hash"),
                        int(datetime.fromisoformat(updated).timestamp() * 1000) if updated else None)
