"""Plan-time rules: checked against the config (and a stack's outputs) before a byte moves.

Each rule yields :class:`~mcrepl.policies.rules.Violation` findings from a
:class:`PlanContext`; the engine runs them all. Examples in the docstrings are run by
``tests/test_policies_examples.py``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping
from urllib.parse import urlparse

from mcrepl.adapters.base import ConfigError

from .decisions import class_allowed_at, class_declared, class_jurisdictions, fields_to_encrypt, locations
from .model import EncryptionSpec, IamSpec, ResidencySpec
from .residency import location_jurisdictions, region_info
from .rules import Rule, Violation, register

if TYPE_CHECKING:
    from mcrepl.orchestrator.config import McreplConfig


@dataclass
class PlanContext:
    """What plan rules read: the config and, when given, a Pulumi stack's outputs."""

    config: "McreplConfig"
    stack_outputs: Mapping[str, Any] = field(default_factory=dict)

    def stack_location(self, dataset: str, location: str) -> Mapping[str, Any]:
        """``datasets.DATASET.LOCATION`` of the stack outputs (``{}`` when absent)."""
        entry = (self.stack_outputs.get("datasets") or {}).get(dataset) or {}
        return entry.get(location) or {}

    def known_locations(self) -> Iterator[tuple[str, Any, Any, bool]]:
        """Locations whose region is in the catalogue (unknown ones are reported once, by
        ``residency.region-known``, instead of by every rule)."""
        for name, ds, ref, primary in locations(self.config):
            try:
                region_info(ref.provider, ref.region)
            except ConfigError:
                continue
            yield name, ds, ref, primary


class PlanRule(Rule):
    """A rule evaluated against the whole topology."""

    kind = "plan"

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        raise NotImplementedError


@register
class RegionKnown(PlanRule):
    """Every location's region must be in the catalogue (``policies/data/regions.yaml``).

    An unknown region is never assumed to be allowed anywhere.

    Refused::

        datasets:
          orders:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [dynamodb:eu-wset-1]
    """

    id = "residency.region-known"
    summary = "every replica region is a known AWS, Azure or GCP region"
    fix = "check the region spelling or add it to policies/data/regions.yaml"

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        for name, _, ref, _ in locations(ctx.config):
            try:
                region_info(ref.provider, ref.region)
            except ConfigError as err:
                yield cls.violation(f"{name}@{ref.at}", err.message, err.fix)


@register
class ClassificationResidency(PlanRule):
    """A dataset may be stored only where its classification may live.

    Refused::

        profile: cloud
        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [dynamodb:us-east-1]
            classification: pii
        policies:
          residency:
            classes: {pii: [EU]}

    Allowed::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [cosmos:westeurope, gcs:europe-west3]
            classification: pii
        policies:
          residency:
            classes: {pii: [EU]}
    """

    id = "residency.classification"
    summary = "datasets live only in jurisdictions their classification allows"
    fix = "move the replica into an allowed jurisdiction, or change the classification rule"
    schema = ResidencySpec

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        for name, ds, ref, _ in ctx.known_locations():
            if not class_declared(ctx.config, ds.classification):
                continue            # reported once, by residency.classification-declared
            if not class_allowed_at(ctx.config, ds.classification, ref.at):
                allowed = class_jurisdictions(ctx.config, ds.classification) or []
                where = "+".join(sorted(location_jurisdictions(ref.at)))
                yield cls.violation(
                    f"{name}@{ref.at}",
                    f"{ds.classification} data may live only in {', '.join(allowed)}; "
                    f"{ref.at} is in {where}",
                    f"remove {ref.at} from datasets.{name} or use a region in {', '.join(allowed)}")


@register
class FieldClassificationResidency(PlanRule):
    """A classified field may reach a location only in plaintext where its class may live,
    or as ciphertext (an ``encryption.fields`` rule) elsewhere.

    Refused::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [gcs:us-east1]
            fields: {email: pii}
        policies:
          residency:
            classes: {pii: [EU]}

    Allowed::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [gcs:us-east1]
            fields: {email: pii}
        policies:
          residency:
            classes: {pii: [EU]}
          encryption:
            fields: [{dataset: customers, fields: [email], plaintext_in: [EU]}]
    """

    id = "residency.field-classification"
    summary = "classified fields leave their jurisdictions only encrypted"
    fix = "add an encryption.fields rule for the field, or remove the replica"
    schema = ResidencySpec

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        for name, ds, ref, _ in ctx.known_locations():
            encrypted = set(fields_to_encrypt(ctx.config, name, ref.at))
            for fld, klass in ds.fields.items():
                if fld in encrypted or not class_declared(ctx.config, klass) or \
                        class_allowed_at(ctx.config, klass, ref.at):
                    continue
                allowed = ", ".join(class_jurisdictions(ctx.config, klass) or [])
                yield cls.violation(
                    f"{name}@{ref.at}", f"field {fld!r} ({klass}, allowed in {allowed}) would be "
                    f"stored in plaintext at {ref.at}",
                    f"add {{dataset: {name}, fields: [{fld}], plaintext_in: [{allowed}]}} to "
                    "policies.encryption.fields" if ref.at != ds.primary.at else
                    f"move the primary of {name} into {allowed}")


_KEY_FORMS = {
    "dynamodb": (re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):\d{12}:(key|alias)/.+$"),
                 "arn:aws:kms:REGION:ACCOUNT:key/KEY-ID (DynamoDB SSE with a customer managed KMS key)"),
    "cosmos": (re.compile(r"^https://[a-z0-9-]+\.vault\.azure\.(net|cn|us)/keys/[^/]+(/[^/]*)?$"),
               "https://VAULT.vault.azure.net/keys/NAME (Cosmos DB customer-managed key)"),
    "gcs": (re.compile(r"^projects/[^/]+/locations/([a-z0-9-]+)/keyRings/[^/]+/cryptoKeys/[^/]+$"),
            "projects/P/locations/LOCATION/keyRings/R/cryptoKeys/K (Cloud Storage CMEK)"),
}


@register
class AtRestCustomerManagedKey(PlanRule):
    """With ``encryption.at_rest: cmk_required`` every location needs a customer-managed key
    (``kms_key`` on the replica, or one the stack reports), in the store's own key format
    and — for KMS and Cloud KMS keys — in the store's own region.

    Refused::

        datasets:
          orders:
            key: {partition: id}
            primary: {at: dynamodb:eu-west-1, kms_key: "arn:aws:kms:eu-west-1:123456789012:key/k1"}
            replicas: [gcs:europe-west1]
        policies:
          encryption: {at_rest: cmk_required}

    Allowed::

        datasets:
          orders:
            key: {partition: id}
            primary: {at: dynamodb:eu-west-1, kms_key: "arn:aws:kms:eu-west-1:123456789012:key/k1"}
            replicas:
              - at: gcs:europe-west1
                kms_key: projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k
        policies:
          encryption: {at_rest: cmk_required}
    """

    id = "encryption.at-rest-cmk"
    summary = "every store is encrypted at rest with a customer-managed key when required"
    fix = "set kms_key on the replica"
    schema = EncryptionSpec

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        if ctx.config.policies.encryption.at_rest != "cmk_required":
            return
        for name, _, ref, _ in locations(ctx.config):
            pattern, form = _KEY_FORMS[ref.provider]
            key = ref.kms_key or ctx.stack_location(name, ref.at).get("kms_key")
            resource = f"{name}@{ref.at}"
            if not key:
                yield cls.violation(resource, "no customer-managed key for encryption at rest",
                                    f"set kms_key: {form}")
                continue
            m = pattern.match(str(key))
            if m is None:
                yield cls.violation(resource, f"kms_key is not a {ref.provider} key id",
                                    f"write it as {form}")
            elif ref.provider != "cosmos" and m.group(1) not in (ref.region.lower(), "global") \
                    and not _multi_region_key_ok(ref.provider, ref.region, m.group(1)):
                yield cls.violation(resource, f"kms_key is in {m.group(1)}, the store is in "
                                    f"{ref.region}; the store cannot use a key from another region",
                                    f"use a key created in {ref.region}")


def _multi_region_key_ok(provider: str, region: str, key_location: str) -> bool:
    """GCS multi-/dual-region buckets use a key in the matching multi-region (``eu`` → ``europe``)."""
    if provider != "gcs":
        return False
    return {"eu": "europe", "us": "us", "asia": "asia"}.get(region.lower()) == key_location


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@register
class TransportTls(PlanRule):
    """Every endpoint outside the local emulator profile uses TLS (``https://``).

    Plain ``http://`` is allowed only with ``profile: local`` and a loopback host.

    Refused::

        profile: cloud
        providers:
          dynamodb: {endpoint: "http://dynamodb.internal.example.com:8000"}
        datasets:
          orders:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [dynamodb:eu-central-1]

    Allowed::

        profile: local
        providers:
          dynamodb: {endpoint: "http://127.0.0.1:8000"}
        datasets:
          orders:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [dynamodb:eu-central-1]
    """

    id = "encryption.tls"
    summary = "TLS for every non-local endpoint"
    fix = "use the https:// endpoint"

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        used = {ref.provider for _, _, ref, _ in locations(ctx.config)}
        stack_providers = ctx.stack_outputs.get("providers") or {}
        for provider in sorted(used):
            endpoints = [ctx.config.providers.settings_for(provider).endpoint,
                         (stack_providers.get(provider) or {}).get("endpoint")]
            for endpoint in filter(None, endpoints):
                if endpoint == "local":
                    continue
                url = urlparse(str(endpoint))
                if url.scheme == "https":
                    continue
                if url.scheme == "http" and ctx.config.profile == "local" and _loopback(url.hostname):
                    continue
                why = (f"endpoint uses {url.scheme or 'no scheme'}://; plain http is allowed only "
                       "for loopback emulators with profile: local")
                yield cls.violation(f"providers.{provider}.endpoint", why,
                                    "use the https:// endpoint" if url.hostname and not _loopback(url.hostname)
                                    else "set profile: local for emulators, or use https://")


@register
class CosmosRbac(PlanRule):
    """Cosmos DB is reached with Entra ID (``auth: aad``), not account keys, when the
    policy requires RBAC (the default outside the local emulator profile).

    Refused::

        profile: cloud
        providers:
          cosmos: {auth: key}
        datasets:
          orders:
            key: {partition: id}
            primary: cosmos:westeurope
            replicas: [gcs:europe-west1]

    Allowed::

        profile: cloud
        providers:
          cosmos: {auth: aad}
        datasets:
          orders:
            key: {partition: id}
            primary: cosmos:westeurope
            replicas: [gcs:europe-west1]
    """

    id = "iam.cosmos-rbac"
    summary = "Cosmos DB uses RBAC (Entra ID), local key auth disabled"
    fix = "set providers.cosmos.auth: aad (the stack then disables local key auth)"
    schema = IamSpec

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        config = ctx.config
        if config.policies.iam.cosmos_auth != "rbac":
            return
        if not any(ref.provider == "cosmos" for _, _, ref, _ in locations(config)):
            return
        stack_auth = ((ctx.stack_outputs.get("providers") or {}).get("cosmos") or {}).get("auth")
        auth = stack_auth or config.providers.cosmos.auth
        endpoint = config.providers.cosmos.endpoint
        emulator = config.profile == "local" and (
            endpoint == "local" or _loopback(urlparse(str(endpoint or "")).hostname))
        if auth == "key" and not emulator:
            yield cls.violation("providers.cosmos.auth", "Cosmos DB account keys grant full "
                                "account access and cannot be scoped to a container")


__all__ = ["PlanContext", "PlanRule"]
