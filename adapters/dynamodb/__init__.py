"""DynamoDB adapter: conditional puts for apply, a scan then the table's stream for capture.

Modules: :mod:`.wire` (canonical values ⇄ attribute values, pure), :mod:`.errors`
(botocore exceptions → mcrepl errors), :mod:`.clients` (sessions and the guarded call),
:mod:`.tables` (create/check/drop), :mod:`.streams` and :mod:`.capture` (change capture),
:mod:`.adapter` (the :class:`DynamoDBAdapter` itself). No boto3 type leaves this package.
"""

from .adapter import DynamoDBAdapter

__all__ = ["DynamoDBAdapter"]
