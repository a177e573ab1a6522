"""The library applications write with, so that failover can fence them (``mcrepl.client``).

:class:`FencedWriter` writes to a dataset's current primary with the epoch as the
store's condition; see :mod:`.writer` and docs/failover.md ("Fenced writers").
"""

from mcrepl.adapters.base.fence import EpochRecord, StaleEpoch

from .stamping import OpKind, WriterClocks, stamp
from .writer import FencedWriter, WriteResult

__all__ = ["EpochRecord", "FencedWriter", "OpKind", "StaleEpoch", "WriteResult", "WriterClocks", "stamp"]
