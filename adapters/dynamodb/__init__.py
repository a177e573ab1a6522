"""DynamoDB adapter: conditional puts for apply, a scan then the table's stream for capture.

Modules: :mod:`.wire` (canonical values ⇄ attribute values, pure), :mod:`.errors`
(botocore exceptions → mcrepl errors), :mod:`.clients` (sessions and the guarded call),
:mod:`.tables` (create/check/drop), :mod:`.streams` and :mod:`.capture` (change capture),
:mod:`.adapter` (the :class:`DynamoDBAdapter` itself, loaded lazily), :mod:`.operations`
(the IAM inventory, importable without boto3). No boto3 type leaves this package.
"""

from typing import TYPE_CHECKING, Any

from .settings import SPEC

if TYPE_CHECKING:
    from .adapter import DynamoDBAdapter


def __getattr__(name: str) -> Any:
    # lazy (PEP 562): ``.operations`` (the IAM inventory) is importable without the SDK
    if name == "DynamoDBAdapter":
        from .adapter import DynamoDBAdapter
        return DynamoDBAdapter
    raise AttributeError(name)


__all__ = ["DynamoDBAdapter", "SPEC"]
