"""One validation for every entry point: what ``mcrepl validate`` refuses, every command refuses.

``sync``, ``verify``, ``repair``, ``local seed|create``, the drills and the Pulumi program
call :func:`load_checked` before they open a connection. It runs, in this order and with
no I/O beyond reading the file:

1. the config model (shapes, cross-field checks, endpoints holding credentials, cron
   parsed by APScheduler's own parser) — :func:`~mcrepl.orchestrator.config.load_config`;
2. a scan of every string in the config for credential-shaped values (connection strings,
   URL userinfo, access keys, SAS signatures, private keys), each finding naming where
   the credential belongs instead;
3. the policy section's own consistency and every enabled plan rule
   (:func:`mcrepl.policies.engine.evaluate`), whose findings are mapped back to the
   config path they concern (``datasets.people.replicas[1]``).

Every finding is one line ``file:path: message (fix: …) [rule-id]``. ``validate`` prints
them all and exits 1 for rule findings, 2 for the rest; every other command refuses with
exit 2 on any finding of severity ``error``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Union

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import McreplConfig, credential_home, known_providers, load_config
from mcrepl.orchestrator.observability.redaction import scrub_text

if TYPE_CHECKING:
    from mcrepl.policies.rules import Violation


@dataclass(frozen=True)
class Finding:
    """One reason a config is refused (or, for ``severity: warning``, questioned)."""

    file: str
    path: str | None
    message: str
    fix: str | None = None
    rule: str | None = None             # the policy rule id; None for config-model problems
    severity: str = "error"
    resource: str | None = None         # the rule's own name for what it concerns (dataset@location)

    def line(self) -> str:
        """``file:path: message (fix: …) [rule-id]``."""
        where = ":".join(p for p in (self.file, self.path) if p)
        text = f"{where}: {self.message}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return f"{text} [{self.rule}]" if self.rule else text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``validate --format json``)."""
        return asdict(self)


class ConfigRefused(ConfigError):
    """The config has findings that stop every command; ``findings`` holds them all."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("\n".join(f.line() for f in findings))
        self.findings = findings

    def __str__(self) -> str:
        return self.message


def location_path(config: McreplConfig, dataset: str, at: str) -> str:
    """The config path of ``at`` in ``dataset``: ``datasets.D.primary`` or ``datasets.D.replicas[N]``."""
    ds = config.datasets.get(dataset)
    if ds is None:
        return f"datasets.{dataset}"
    if ds.primary.at == at:
        return f"datasets.{dataset}.primary"
    for i, ref in enumerate(ds.replicas):
        if ref.at == at:
            return f"datasets.{dataset}.replicas[{i}]"
    return f"datasets.{dataset}"


def _resource_path(config: McreplConfig, resource: str) -> str:
    """A rule finding's resource (``people@dynamodb:us-east-1``, ``providers.x.endpoint``) as a config path."""
    dataset, sep, at = resource.partition("@")
    if sep and dataset in config.datasets:
        return location_path(config, dataset, at)
    return resource


def from_violation(config: McreplConfig, file: str, v: "Violation", stack_file: str | None = None) -> Finding:
    """A policy rule's finding as a :class:`Finding` at the config path it concerns.

    Findings on the stack's own outputs (``stack:identities:gcp``) point into the stack
    outputs file instead.
    """
    if v.resource.startswith("stack:"):
        return Finding(stack_file or "stack outputs", v.resource.removeprefix("stack:").replace(":", "."),
                       v.why, v.fix, v.rule_id, v.severity, v.resource)
    return Finding(file, _resource_path(config, v.resource), v.why, v.fix, v.rule_id, v.severity, v.resource)


def from_config_error(file: str, err: ConfigError) -> Finding:
    """A :class:`ConfigError` as a :class:`Finding`."""
    return Finding(err.file or file, err.path, err.message, err.fix)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _credential_home(config: McreplConfig, path: str) -> str:
    for provider in known_providers():
        if path.startswith(f"providers.{provider}"):
            return credential_home(provider)
    if path.startswith("datasets."):
        name, _, rest = path.removeprefix("datasets.").partition(".")
        ds = config.datasets.get(name)
        if ds is not None and rest.startswith(("primary", "replicas[")):
            index = rest.removeprefix("replicas[").split("]")[0]
            ref = ds.primary if rest.startswith("primary") else ds.replicas[int(index)]
            return credential_home(ref.provider)
    if path.startswith("policies.encryption.keyring"):
        return "the key file 'mcrepl keys init' creates, or the cloud KMS (type: aws-kms, azure-keyvault, gcp-kms)"
    return "an environment variable of the process that needs it"


def credential_findings(config: McreplConfig, file: str) -> list[Finding]:
    """Every string in the config that looks like a credential, by the redactor's own patterns.

    A value the redactor would mask is a value that must not be in a file that is checked
    in, shared and printed; the finding names the config path and where it belongs.
    """
    found = []
    for path, value in _strings(config.model_dump(mode="json", exclude={"state_dir"}), ""):
        if scrub_text(value) != value:
            found.append(Finding(file, path, "looks like a credential (key, password, token or signature); "
                                 "a config file must never hold one",
                                 f"remove it and put it in {_credential_home(config, path)}"))
    return found


def config_findings(config: McreplConfig, file: str | Path, stack_outputs: Mapping[str, Any] | None = None,
                    stack_file: str | None = None) -> list[Finding]:
    """Every finding on a loaded config: credentials, the policy section, every enabled plan rule.

    ``stack_file`` names where ``stack_outputs`` came from (findings on them point there).
    """
    from mcrepl.policies.engine import evaluate, policy_errors

    name = str(file)
    found = credential_findings(config, name)
    errors = policy_errors(config)
    if errors:
        return found + [from_config_error(name, e) for e in errors]
    return found + [from_violation(config, name, v, stack_file) for v in evaluate(config, stack_outputs)]


StackOutputs = Union[Mapping[str, Any], Callable[[McreplConfig], Mapping[str, Any]], None]


def load_checked(path: str | Path, stack_outputs: StackOutputs = None) -> McreplConfig:
    """The config at ``path``, or :class:`ConfigRefused` / :class:`ConfigError` listing every problem.

    What every command that touches a store calls first: the same checks as ``mcrepl
    validate``, so a config that ``validate`` refuses never reaches a connection.
    ``stack_outputs`` (or a function of the loaded config returning them, as the Pulumi
    program passes what it is about to create) is what ``validate --stack-outputs`` reads.
    """
    config = load_config(path)
    outputs = stack_outputs(config) if callable(stack_outputs) else stack_outputs
    blocking = [f for f in config_findings(config, path, outputs) if f.severity == "error"]
    if blocking:
        raise ConfigRefused(blocking)
    return config


__all__ = ["ConfigRefused", "Finding", "config_findings", "credential_findings", "from_violation",
           "load_checked", "location_path"]
