"""Google Cloud Storage adapter: a bucket per dataset per replica, an object per record.

Importing this package loads no SDK: ``google-cloud-storage`` comes with :class:`GCSAdapter`,
which :mod:`mcrepl.adapters` imports only when a target names the ``gcs`` provider;
:mod:`.operations` (the IAM inventory) never needs it.
"""

from typing import TYPE_CHECKING, Any

from .settings import SPEC

if TYPE_CHECKING:
    from .adapter import GCSAdapter


def __getattr__(name: str) -> Any:
    # lazy (PEP 562): ``.operations`` (the IAM inventory) is importable without the SDK
    if name == "GCSAdapter":
        from .adapter import GCSAdapter
        return GCSAdapter
    raise AttributeError(name)


__all__ = ["GCSAdapter", "SPEC"]
