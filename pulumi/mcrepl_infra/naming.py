"""Physical names for one stack: derived from the Pulumi project and stack, never shared.

A second stack of the same config (``dev`` next to ``prod``, or two regions' stacks in one
account) must not collide on a single name: tables and IAM roles are unique per account,
buckets, Cosmos accounts and Traffic Manager names are global, GCP service accounts and
custom roles are unique per project. So every name starts with ``PROJECT-STACK``, and
names that must be globally unique end with a short hash of project, stack and the
cloud account they live in (stable across runs, so ``pulumi up`` never renames).

Names a user sets explicitly in ``mcrepl.yaml`` (a location's ``resource``,
``provisioning.azure.account_name`` / ``resource_group``) are used as given.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


def _clean(text: str, allowed: str = "a-z0-9-") -> str:
    return re.sub(rf"[^{allowed}]+", "-", text.lower()).strip("-")


def safe_name(text: str) -> str:
    """``text`` with every character outside ``A-Za-z0-9+=,.@_-`` (IAM's set) replaced by ``-``."""
    return re.sub(r"[^A-Za-z0-9+=,.@_-]", "-", text)


def _hash(*parts: str, n: int = 6) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:n]


def _fit(base: str, tail: str, limit: int) -> str:
    """``base-tail`` cut to ``limit`` chars in ``base`` (the tail — role, region, hash — is kept)."""
    room = limit - len(tail) - 1
    if room <= 0:
        return tail[:limit]
    return f"{base[:room].rstrip('-')}-{tail}" if tail else base[:limit].rstrip("-")


@dataclass(frozen=True)
class Names:
    """Every physical name of one stack (``project``/``stack`` as Pulumi reports them)."""

    project: str
    stack: str
    scope: str = ""          # the cloud account/project ids, mixed into global-name hashes

    @property
    def base(self) -> str:
        """``project-stack``, lowercase, for names unique per account or project."""
        return _clean(f"{self.project}-{self.stack}")

    @property
    def suffix(self) -> str:
        """A short, stable hash of project, stack and scope for globally unique names."""
        return _hash(self.project, self.stack, self.scope)

    def table(self, dataset: str) -> str:
        """DynamoDB table (per account and region; 3-255 of ``a-zA-Z0-9_.-``)."""
        return _fit(self.base, _clean(dataset), 255)

    def bucket(self, dataset: str, location: str) -> str:
        """Cloud Storage bucket (global; 3-63 of ``a-z0-9-``)."""
        return _fit(self.base, f"{_clean(dataset)}-{_clean(location)}-{self.suffix}", 63)

    def cosmos_account(self) -> str:
        """Cosmos DB account (global DNS name; 3-44 of ``a-z0-9-``)."""
        return _fit(self.base, self.suffix, 44)

    def resource_group(self) -> str:
        """Azure resource group (per subscription)."""
        return _fit(self.base, "", 90)

    def aws_role(self, role: str) -> str:
        """IAM role (per account; up to 64 chars)."""
        return _fit(self.base, role, 64)

    def kms_alias(self, region: str) -> str:
        """``alias/...`` of the stack's DynamoDB key in ``region``."""
        return f"alias/{_fit(self.base, region, 200)}"

    def key_ring(self, location: str, generation: str) -> str:
        """Cloud KMS key ring (per project and location; can never be deleted, so a new
        ``generation`` gives a stack that was destroyed a fresh ring)."""
        return _fit(self.base, f"{_clean(location)}-k{_clean(generation)}", 63)

    def service_account(self, role: str) -> str:
        """GCP service account id (per project; 6-30 of ``a-z0-9-``, starting with a letter)."""
        name = _fit(f"m{_hash(self.project, self.stack, n=8)}", role, 30)
        return name if name[0].isalpha() else f"m{name[1:]}"

    def workload_pool(self, generation: str) -> str:
        """GCP workload identity pool id (per project; 4-32 of ``a-z0-9-``). A deleted pool's
        id stays taken for 30 days, so a new ``generation`` lets a destroyed stack come back."""
        return _fit(self.base, f"{_hash(self.project, self.stack, n=4)}-g{_clean(generation)}", 32)

    def custom_role_prefix(self) -> str:
        """Prefix of the stack's GCP custom role ids (``[a-zA-Z0-9_.]``)."""
        return _clean(self.base, "a-z0-9").replace("-", "_")[:40] or "mcrepl"

    def identity(self, role: str) -> str:
        """Azure user-assigned managed identity (per resource group)."""
        return _fit(self.base, role, 128)

    def traffic_manager(self, dataset: str) -> str:
        """Traffic Manager relative DNS name (global under trafficmanager.net; up to 63)."""
        return _fit(self.base, f"{_clean(dataset)}-{self.suffix}", 63)


__all__ = ["Names", "safe_name"]
