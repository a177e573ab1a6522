"""CrossGuard pack ``mcrepl``: serve the policies of :mod:`mcrepl_policy` to the Pulumi engine.

``pulumi preview --policy-pack PATH --policy-pack-config pack-config.json``, where
``pack-config.json`` comes from ``mcrepl config policy-pack -c mcrepl.yaml``. Constructing
:class:`PolicyPack` starts the analyzer server and never returns, so the policies live in
the package beside this file, where the tests import them.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from mcrepl_policy import PACK_NAME, pack_policies

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=pack_policies())
