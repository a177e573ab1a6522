"""Names of stores derived from a dataset: shared by the adapters whose stores are buckets."""

from __future__ import annotations

import hashlib
import re


def bucket_name(prefix: str, base: str, region: str) -> str:
    """``prefix-dataset-region`` as a valid bucket name (3-63 of ``a-z0-9-``, GCS and S3 alike).

    Too long a name is shortened in its dataset part, with a hash of the full name so two
    long datasets never collide, and keeps its region so two regions never collide either.
    """
    clean = lambda s: re.sub(r"[^a-z0-9-]", "-", s.lower()).strip("-")  # noqa: E731
    full = clean(f"{prefix}-{base}-{region}")
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    room = 63 - len(clean(prefix)) - len(clean(region)) - len(digest) - 3
    return f"{clean(prefix)}-{clean(base)[:max(room, 1)].strip('-')}-{digest}-{clean(region)}"[:63]


__all__ = ["bucket_name"]
