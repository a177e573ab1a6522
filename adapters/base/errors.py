"""The one error tree of mcrepl.

Every failure a user can see is a :class:`McreplError`. Three branches never mix:

* :class:`ConfigError` and :class:`PolicyError` describe bad input; they are never retried.
* :class:`RecordError` describes one record a target cannot hold; the record is
  quarantined and the rest of its batch goes on.
* :class:`AdapterError` describes a failed call to a store; retry code reads only its
  ``retryable`` bit and ``retry_after`` hint, never the provider's own exception types,
  which stay inside their adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class McreplError(Exception):
    """Root of every error mcrepl raises on purpose."""


@dataclass
class ConfigError(McreplError):
    """The configuration is wrong: names the file, the path inside it and the fix."""

    message: str
    file: str | None = None
    path: str | None = None
    fix: str | None = None

    def __str__(self) -> str:
        where = ":".join(p for p in (self.file, self.path) if p)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} (fix: {self.fix})" if self.fix else text


@dataclass
class PolicyError(McreplError):
    """A policy rule refuses a plan or a record; ``violations`` holds the rule findings."""

    message: str
    violations: list = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


@dataclass
class RecordError(McreplError):
    """One record cannot be written to one target without losing information.

    Carries the dataset, the record key, the field path and the rule it broke, so a
    quarantine entry tells the user exactly what to change — never the field's value,
    which may be sensitive.
    """

    rule: str
    message: str
    dataset: str | None = None
    key: str | None = None
    field: str | None = None
    target: str | None = None

    def __str__(self) -> str:
        parts = [f"[{self.rule}]"]
        if self.dataset:
            parts.append(f"dataset={self.dataset}")
        if self.key is not None:
            parts.append(f"key={self.key}")
        if self.field:
            parts.append(f"field={self.field}")
        if self.target:
            parts.append(f"target={self.target}")
        return " ".join(parts) + f": {self.message}"

    def located(self, *, dataset: str | None = None, key: str | None = None,
                target: str | None = None) -> "RecordError":
        """Return a copy with the context the raiser did not know filled in."""
        return RecordError(self.rule, self.message, dataset=self.dataset or dataset,
                           key=self.key if self.key is not None else key,
                           field=self.field, target=self.target or target)


@dataclass
class AdapterError(McreplError):
    """A call to a store failed.

    ``retryable`` is the only thing retry code looks at; ``retry_after`` is the store's
    own hint in seconds (Cosmos ``x-ms-retry-after-ms``, HTTP ``Retry-After``) when given.
    """

    message: str
    retryable: bool = False
    retry_after: float | None = None
    provider: str | None = None
    replica: str | None = None
    dataset: str | None = None
    key: str | None = None
    operation: str | None = None

    def __str__(self) -> str:
        ctx = " ".join(f"{k}={v}" for k, v in (("provider", self.provider), ("replica", self.replica),
                                                 ("dataset", self.dataset), ("op", self.operation),
                                                 ("key", self.key)) if v)
        return f"{self.message} ({ctx})" if ctx else self.message


class ThrottledError(AdapterError):
    """The store asked us to slow down (DynamoDB throughput exceeded, HTTP 429)."""

    def __init__(self, message: str, **kw: object) -> None:
        kw.setdefault("retryable", True)
        super().__init__(message, **kw)  # type: ignore[arg-type]


class UnavailableError(AdapterError):
    """The store could not be reached or answered 5xx; the call may succeed later."""

    def __init__(self, message: str, **kw: object) -> None:
        kw.setdefault("retryable", True)
        super().__init__(message, **kw)  # type: ignore[arg-type]


class NotFoundError(AdapterError):
    """The table, container or bucket a target names does not exist."""


class CredentialsError(AdapterError):
    """Credentials were missing or refused. The message never contains the secret."""
