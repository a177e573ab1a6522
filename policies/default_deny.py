"""Default-deny plan rules: what the config does not say is refused, never assumed allowed.

* ``residency.classification-declared`` — a classification nobody declared (a typo such
  as ``pii-typo``) would otherwise be unrestricted;
* ``residency.cosmos-failover`` — Cosmos DB copies an account's containers to every
  failover region, which no replica list shows;
* ``residency.capture-log`` — the orchestrator's capture log holds every record of a
  dataset in plaintext unless it is encrypted (:mod:`.capture_log`).

Examples in the docstrings are run by ``tests/test_policies_examples.py``.
"""

from __future__ import annotations

import difflib
from typing import Iterator

from mcrepl.adapters.base import ConfigError

from .capture_log import orchestrator_jurisdictions
from .decisions import (class_declared, class_jurisdictions, field_rule, fields_to_encrypt,
                        homes_received, plaintext_kept_out_of, record_rules)
from .model import EncryptionSpec, ResidencySpec
from .plan_rules import PlanContext, PlanRule
from .residency import allowed_in, location_jurisdictions, region_info
from .rules import Violation, register


@register
class ClassificationDeclared(PlanRule):
    """Every classification a dataset or field uses is declared in
    ``policies.residency.classes`` (``"*"`` declares "anywhere"). Only the default,
    ``internal``, may stay undeclared (it is then unrestricted).

    Refused::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [dynamodb:us-east-1]
            classification: pii-typo
        policies:
          residency:
            classes: {pii: [EU]}

    Allowed::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [gcs:europe-west3]
            classification: pii
            fields: {iban: financial}
        policies:
          residency:
            classes: {pii: [EU], financial: [EU]}
    """

    id = "residency.classification-declared"
    summary = "every classification used is declared (default deny)"
    fix = "declare the classification under policies.residency.classes, or correct its spelling"
    schema = ResidencySpec

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        declared = sorted(ctx.config.policies.residency.classes)
        for name, ds in ctx.config.datasets.items():
            used = [(f"datasets.{name}.classification", ds.classification)]
            used += [(f"datasets.{name}.fields.{fld}", klass) for fld, klass in ds.fields.items()]
            for path, klass in used:
                if class_declared(ctx.config, klass):
                    continue
                close = difflib.get_close_matches(klass, declared, n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                yield cls.violation(path, f"classification {klass!r} is not declared in policies.residency."
                                    "classes, so where it may live is unknown (default deny: nowhere)",
                                    f"{hint}declare it, e.g. policies.residency.classes.{klass}: [EU] "
                                    f"(or [\"*\"] for anywhere)")


@register
class CosmosFailoverResidency(PlanRule):
    """Cosmos DB failover regions (``provisioning.azure.failover_regions``) receive every
    container of the account, so each must be allowed for everything the account's
    ``cosmos:`` locations hold: the dataset's classification, its classified fields
    stored in plaintext there, and the records per-record rules route there.

    Refused::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [cosmos:westeurope]
            classification: pii
        policies:
          residency:
            classes: {pii: [EU]}
        provisioning:
          azure: {failover_regions: [eastus]}

    Refused::

        datasets:
          people:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [cosmos:westeurope, dynamodb:us-east-1]
        policies:
          residency:
            records: [{datasets: [people], field: country, restrict: [EU]}]
        provisioning:
          azure: {failover_regions: [eastus]}

    Allowed::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [cosmos:westeurope]
            classification: pii
        policies:
          residency:
            classes: {pii: [EU]}
        provisioning:
          azure: {failover_regions: [northeurope]}
    """

    id = "residency.cosmos-failover"
    summary = "Cosmos DB failover regions may hold what the account holds"
    fix = "remove the region from provisioning.azure.failover_regions or use one in the allowed jurisdictions"
    schema = ResidencySpec

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        config = ctx.config
        for i, region in enumerate(config.provisioning.azure.failover_regions):
            path = f"provisioning.azure.failover_regions[{i}]"
            try:
                region_info("cosmos", region)
            except ConfigError as err:
                yield cls.violation(path, err.message, err.fix)
                continue
            failover = f"cosmos:{region}"
            for name, _, ref, _ in ctx.known_locations():
                if ref.provider == "cosmos":
                    for why in _cannot_hold(ctx, name, ref.at, failover):
                        yield cls.violation(path, f"Cosmos failover region {region} would hold {why} "
                                            f"that {name}@{ref.at} holds", f"remove {region} from {path} or "
                                            "use a region allowed for that data")


def _cannot_hold(ctx: PlanContext, dataset: str, source: str, failover: str) -> Iterator[str]:
    """What ``source`` holds of ``dataset`` that ``failover`` may not."""
    config = ctx.config
    ds = config.datasets[dataset]
    there = location_jurisdictions(failover)

    def outside(allowed: list[str] | None) -> bool:
        return allowed is not None and not allowed_in(there, allowed)

    if outside(class_jurisdictions(config, ds.classification)):
        yield f"{ds.classification} data"
    encrypted = set(fields_to_encrypt(config, dataset, source))
    for fld, klass in ds.fields.items():
        if fld not in encrypted and outside(class_jurisdictions(config, klass)):
            yield f"field {fld!r} ({klass}) in plaintext"
    enc = field_rule(config, dataset)
    if enc is not None and not encrypted and outside(enc.plaintext_in):
        yield "plaintext of encrypted fields"
    for rule in record_rules(config, dataset):
        for home in homes_received(rule, source):
            if outside([home, *rule.also.get(home, [])]):
                yield f"records whose {rule.field!r} is in {home}"


@register
class CaptureLogResidency(PlanRule):
    """The capture log (in the state store, on the orchestrator's host) holds every
    record of a dataset. It may hold plaintext only where all of the dataset's data may
    live — given by ``orchestrator.location``; undeclared means nowhere — otherwise it is
    encrypted with the dataset's data keys (``policies.encryption.capture_log: auto``,
    the default, does exactly that). ``capture_log: plaintext`` outside is refused.

    Refused::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [gcs:europe-west3]
            classification: pii
        orchestrator: {location: "aws:us-east-1"}
        policies:
          residency:
            classes: {pii: [EU]}
          encryption: {capture_log: plaintext}

    Allowed::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [gcs:europe-west3]
            classification: pii
        orchestrator: {location: "aws:eu-central-1"}
        policies:
          residency:
            classes: {pii: [EU]}
          encryption: {capture_log: plaintext}

    Allowed::

        datasets:
          customers:
            key: {partition: id}
            primary: dynamodb:eu-west-1
            replicas: [gcs:europe-west3]
            classification: pii
        orchestrator: {location: "aws:us-east-1"}
        policies:
          residency:
            classes: {pii: [EU]}
    """

    id = "residency.capture-log"
    summary = "the capture log holds plaintext only where the data may live"
    fix = "set policies.encryption.capture_log: auto (or encrypt), or run the orchestrator in an allowed jurisdiction"
    schema = EncryptionSpec

    @classmethod
    def check(cls, ctx: PlanContext) -> Iterator[Violation]:
        config = ctx.config
        if config.policies.encryption.capture_log != "plaintext":
            return
        where = orchestrator_jurisdictions(config)
        place = config.orchestrator.location or "an undeclared location (orchestrator.location)"
        for name in config.datasets:
            reasons = plaintext_kept_out_of(config, name, where)
            if reasons:
                yield cls.violation(f"datasets.{name}", f"the capture log at {place} would hold plaintext, but "
                                    f"{'; '.join(reasons)}")


__all__ = ["CaptureLogResidency", "ClassificationDeclared", "CosmosFailoverResidency"]
