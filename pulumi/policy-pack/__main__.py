"""CrossGuard pack ``mcrepl``: residency and encryption on every store a stack declares.

Run with ``pulumi preview --policy-pack policy-pack`` (from ``pulumi/``). The pack reads
the mcrepl config named by its ``configPath`` policy config or ``$MCREPL_CONFIG``; the
policies and their rules live in ``mcrepl_policy_rules`` (unit-tested there), because
constructing :class:`PolicyPack` starts the analyzer server and never returns.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from mcrepl_policy_rules import pack_policies

PolicyPack(name="mcrepl", enforcement_level=EnforcementLevel.MANDATORY, policies=pack_policies())
