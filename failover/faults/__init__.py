"""Fault injection for the local stack: a byte-level TCP proxy put in front of an emulator."""

from .proxy import MODES, FaultProxy

__all__ = ["FaultProxy", "MODES"]
