"""Typed adapter settings: the base model every adapter's ``providers.<name>`` block extends.

An adapter owns one pydantic model (``S3Settings``, ``CosmosSettings`` …) derived from
:class:`AdapterSettings`. The config validates ``providers.<name>`` with it, so a typo
or a wrong type is reported with the file, the path and the fix before anything
connects, and ``mcrepl adapters show NAME`` documents the block from the model's own
fields and descriptions. The validated settings travel to the adapter as plain values in
``ReplicaTarget.options`` (picklable, for work units in other processes); the adapter
reads them back typed with :meth:`AdapterSettings.from_options`.

What no settings block may hold is a credential: endpoints are checked here for
connection strings and ``user:password@`` URLs, and each adapter's ``credentials`` text
(:class:`~.spec.AdapterSpec`) says where they belong instead.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

S = TypeVar("S", bound="AdapterSettings")

_CONNECTION_STRING = re.compile(r"(?i)(^|;)\s*(AccountKey|SharedAccessKey|SharedAccessSignature|Password|"
                                r"AccountEndpoint|DefaultEndpointsProtocol)\s*=")
# scheme://anything-without-spaces@: urlparse misses a userinfo whose password holds a "/"
USERINFO = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://[^\s@]*@")


class LocatedValueError(ValueError):
    """Raised by a model's validators to point below the field they validate.

    ``at`` is appended to the error's location (``replicas[1]``, ``endpoint``) and ``fix``
    becomes the error's fix, so a cross-field check can still name the exact list entry.
    Pydantic keeps the original exception in the error's context, which is how the
    config loader finds them.
    """

    def __init__(self, message: str, *, at: str | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.at = at
        self.fix = fix


def credential_problem(value: str, home: str) -> LocatedValueError | None:
    """Why ``value`` (an endpoint or URL from the config) carries a credential, or ``None``.

    The message never repeats the value: it is the secret.
    """
    if _CONNECTION_STRING.search(value):
        return LocatedValueError(
            "holds a connection string (with its account key); the config must name only the endpoint",
            fix=f"write just the account URL here (https://ACCOUNT.documents.azure.com:443/) and put the "
                f"key in {home}")
    if USERINFO.match(value):
        return LocatedValueError("holds credentials in the URL (user:password@host)",
                                 fix=f"remove the user and password from the URL and put them in {home}")
    return None


class AdapterSettings(BaseModel):
    """Settings every adapter has; subclass it and add the store's own fields.

    ``endpoint`` is the service URL (``None``: the cloud's default for the region;
    ``local``: the stack of ``mcrepl local up``). Unknown keys are refused and the model
    is frozen, like the rest of the config. Give each field a ``description``: it is the
    documentation ``mcrepl adapters show`` prints.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = Field(None, description="the service URL (default: the cloud's endpoint for the "
                                                  "region; 'local': the stack of 'mcrepl local up')")

    #: where this provider's credentials belong (the fix of a credential found in the
    #: config); a subclass overrides it
    credential_home: ClassVar[str] = ("the provider's standard credential chain (environment variables or "
                                      "files), never the config file")

    @model_validator(mode="after")
    def _endpoint_holds_no_credential(self) -> "AdapterSettings":
        if self.endpoint is not None:
            problem = credential_problem(self.endpoint, self.credentials_fix())
            if problem is not None:
                problem.at = "endpoint"
                raise problem
        return self

    def credentials_fix(self) -> str:
        """Where this block's credentials belong, for error fixes (may use the block's own fields)."""
        return self.credential_home

    @classmethod
    def from_options(cls: type[S], options: Mapping[str, Any]) -> S:
        """The settings in a target's ``options`` (runtime keys such as ``local`` are ignored)."""
        fields = {k: v for k, v in options.items() if k in cls.model_fields}
        return cls.model_validate(fields)

    def options(self) -> dict[str, Any]:
        """The plain values that travel in ``ReplicaTarget.options``."""
        return self.model_dump()


__all__ = ["AdapterSettings", "LocatedValueError", "USERINFO", "credential_problem"]
