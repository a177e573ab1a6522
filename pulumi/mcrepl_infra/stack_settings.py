"""Provider settings in the stack file: honoured where they mean one thing, refused where ignored.

Every resource uses an explicit provider whose region comes from ``mcrepl.yaml``
(``dynamodb:REGION``, ``gcs:LOCATION``, the Cosmos write region), so ``aws:region`` and
``azure-native:location`` in ``Pulumi.STACK.yaml`` would silently do nothing: they are
refused with the fix. ``gcp:project`` and ``azure-native:subscriptionId`` are honoured
when ``mcrepl.yaml`` names none, and refused when the two disagree.
"""

from __future__ import annotations

import pulumi

from mcrepl.adapters.base import ConfigError
from mcrepl.orchestrator.config import McreplConfig

#: stack settings no resource of this program reads
IGNORED = {("aws", "region"): "each DynamoDB location names its region (dynamodb:REGION)",
           ("azure-native", "location"): "the Cosmos account's regions come from its cosmos: locations"}


def check_stack_settings(config: McreplConfig) -> None:
    """Raise :class:`ConfigError` for a stack setting the program would ignore or contradict."""
    for (namespace, key), why in IGNORED.items():
        if pulumi.Config(namespace).get(key):
            raise ConfigError(f"{namespace}:{key} is set on the stack, but this program ignores it: {why}",
                              path=f"{namespace}:{key}", fix=f"pulumi config rm {namespace}:{key}")
    for (namespace, key), ours, field in (
            (("gcp", "project"), config.provisioning.gcp.project or config.providers.gcs.project,
             "provisioning.gcp.project"),
            (("azure-native", "subscriptionId"), config.provisioning.azure.subscription_id,
             "provisioning.azure.subscription_id")):
        theirs = pulumi.Config(namespace).get(key)
        if theirs and ours and theirs != ours:
            raise ConfigError(f"{namespace}:{key} is {theirs!r} on the stack but {field} is {ours!r}",
                              path=field, fix=f"make them equal, or remove {namespace}:{key} from the stack")


def gcp_project(config: McreplConfig) -> str | None:
    """The GCP project: ``mcrepl.yaml`` first, else the stack's ``gcp:project``."""
    return config.provisioning.gcp.project or config.providers.gcs.project or pulumi.Config("gcp").get("project")


__all__ = ["IGNORED", "check_stack_settings", "gcp_project"]
