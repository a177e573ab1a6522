"""Google Cloud Storage adapter: a bucket per dataset per replica, an object per record.

Importing this package loads ``google-cloud-storage``; :mod:`mcrepl.adapters` imports it
lazily, only when a target names the ``gcs`` provider.
"""

from .adapter import GCSAdapter

__all__ = ["GCSAdapter"]
