"""Record every cloud API call the adapters make, through each SDK's own hook (this module holds no tests).

* botocore: a ``before-parameter-build`` and an ``after-call`` handler on every client
  created while recording (botocore's event system; ``after-call`` fires for error
  responses too, so an AccessDenied is recorded with its code);
* azure-core: the pipeline's :class:`CustomHookPolicy` (every Cosmos DB request passes
  through it) reports each response;
* google-cloud-storage: a ``requests`` response hook on every :class:`AuthorizedSession`.

Each call becomes a :class:`Call` named as the adapter's operation inventory names it
(IAM action, Cosmos DB data action, JSON API method), with the resource it addressed and
the phase (``sync``, ``verify`` …) the test was in.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

import pytest

from mcrepl.adapters.cosmos.operations import classify_request as cosmos_operation
from mcrepl.adapters.dynamodb.operations import call_name as dynamodb_operation
from mcrepl.adapters.gcs.operations import bucket_of
from mcrepl.adapters.gcs.operations import classify_request as gcs_operation
from mcrepl.adapters.s3.operations import call_name as s3_operation


@dataclass(frozen=True)
class Call:
    """One API call: which provider, the operation name, what it addressed, how it ended."""

    phase: str
    provider: str
    name: str
    region: str | None          # DynamoDB: the client's region
    resource: str | None        # table / stream ARN, "db/container", bucket
    error: str | None           # the service's error code, or None when it succeeded


class CallRecorder:
    """Collects :class:`Call` s from the three SDKs while :meth:`install` is active."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.current = "setup"
        self._lock = threading.Lock()
        self.enabled = True

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Label the calls made inside the block (``None`` phase: record nothing)."""
        before, self.current = self.current, name
        try:
            yield
        finally:
            self.current = before

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Record nothing in the block (the test's own seeding, as an application writes)."""
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True

    def add(self, provider: str, name: str, region: str | None, resource: str | None, error: str | None) -> None:
        if self.enabled:
            with self._lock:
                self.calls.append(Call(self.current, provider, name, region, resource, error))

    # -- the hooks ----------------------------------------------------------------------

    def install(self, monkeypatch: pytest.MonkeyPatch) -> "CallRecorder":
        """Patch the three SDKs' hook points for the rest of the test."""
        self._botocore(monkeypatch)
        self._azure(monkeypatch)
        self._gcs(monkeypatch)
        return self

    def _botocore(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import botocore.session

        original = botocore.session.Session.create_client
        recorder = self

        def create_client(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            client = original(session, service_name, *args, **kwargs)
            region = client.meta.region_name

            def remember(params: dict, context: dict, **_: Any) -> None:
                context["mcrepl_resource"] = params.get("TableName") or params.get("StreamArn") \
                    or params.get("Bucket") or next(iter(params.get("RequestItems") or {}), None)

            def record(http_response: Any, parsed: dict, model: Any, context: dict, **_: Any) -> None:
                error = None
                if http_response.status_code >= 300:
                    # moto answers an IAM denial with an XML body botocore's JSON parser can't read
                    denied = b"AccessDenied" in (http_response.content or b"")
                    error = "AccessDenied" if denied else \
                        str((parsed or {}).get("Error", {}).get("Code") or http_response.status_code)
                if service_name == "s3":
                    if error in ("404", "NoSuchKey", "412", "PreconditionFailed"):
                        error = None           # absent objects, lost preconditions: answers the adapter handles
                    recorder.add("s3", s3_operation(model.name), region, context.get("mcrepl_resource"), error)
                    return
                recorder.add("dynamodb", dynamodb_operation(service_name, model.name), region,
                             context.get("mcrepl_resource"), error)

            client.meta.events.register("before-parameter-build", remember)
            client.meta.events.register("after-call", record)
            return client

        monkeypatch.setattr(botocore.session.Session, "create_client", create_client)

    def _azure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from azure.core.pipeline.policies import CustomHookPolicy

        original = CustomHookPolicy.on_response
        recorder = self

        def on_response(policy: Any, request: Any, response: Any) -> None:
            http = request.http_request
            parts = [unquote(p) for p in urlparse(http.url).path.strip("/").split("/")]
            resource = f"{parts[1]}/{parts[3]}" if len(parts) >= 4 and parts[0] == "dbs" else \
                (parts[1] if len(parts) >= 2 and parts[0] == "dbs" else None)
            status = response.http_response.status_code
            recorder.add("cosmos", cosmos_operation(http.method, http.url, dict(http.headers)), None,
                         resource, str(status) if status >= 400 and status not in (404, 409, 412) else None)
            original(policy, request, response)

        monkeypatch.setattr(CustomHookPolicy, "on_response", on_response)

    def _gcs(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from google.auth.transport.requests import AuthorizedSession

        original = AuthorizedSession.__init__
        recorder = self

        def record(response: Any, *args: Any, **kwargs: Any) -> Any:
            req = response.request
            status = response.status_code
            recorder.add("gcs", gcs_operation(req.method, req.url), None, bucket_of(req.url),
                         str(status) if status >= 400 and status not in (404, 409, 412) else None)
            return response

        def init(session: Any, *args: Any, **kwargs: Any) -> None:
            original(session, *args, **kwargs)
            session.hooks["response"].append(record)

        monkeypatch.setattr(AuthorizedSession, "__init__", init)

    # -- queries --------------------------------------------------------------------------

    def of(self, provider: str | None = None, phase: str | None = None) -> list[Call]:
        """The calls of one provider and/or phase."""
        return [c for c in self.calls if (provider is None or c.provider == provider)
                and (phase is None or c.phase == phase)]


__all__ = ["Call", "CallRecorder"]
