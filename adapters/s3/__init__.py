"""Amazon S3 adapter: a bucket per dataset per location, an object per record.

Written only against mcrepl's public adapter interface (``mcrepl.adapters.base``) and
tested only by the shipped contract suite (``mcrepl.testing``), in the layout a third
party's package would have:

* :mod:`.settings` — the settings model and the :class:`~mcrepl.adapters.base.spec.AdapterSpec`
  (``SPEC``, the entry point), importable without boto3;
* :mod:`.wire` — S3's naming rules and object layout (pure);
* :mod:`.errors` — botocore exceptions → mcrepl errors (the retry policy);
* :mod:`.bucket_io` — the S3 calls, as the object store primitives;
* :mod:`.adapter` — :class:`S3Adapter`, loaded only when a store is opened;
* :mod:`.operations` — the IAM inventory (importable without boto3).
"""

from typing import TYPE_CHECKING, Any

from .settings import SPEC

if TYPE_CHECKING:
    from .adapter import S3Adapter


def __getattr__(name: str) -> Any:
    # lazy (PEP 562): the spec and the IAM inventory are importable without boto3
    if name == "S3Adapter":
        from .adapter import S3Adapter
        return S3Adapter
    raise AttributeError(name)


__all__ = ["S3Adapter", "SPEC"]
