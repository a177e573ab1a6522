"""An in-memory reference implementation of the replica interface.

It is our own implementation of our own interface — not a fake of any cloud API — and
serves as the fastest contract-suite backend and as the oracle for property tests. It
never replaces the emulator runs.
"""

from .adapter import MemoryAdapter
from .settings import SPEC

__all__ = ["MemoryAdapter", "SPEC"]
