"""Errors a sync pass raises as a whole (per-lane failures are reported, not raised)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcrepl.adapters.base import McreplError

if TYPE_CHECKING:
    from .report import SyncReport


class SyncDeadlineExceeded(McreplError):
    """The pass ran past ``sync.deadline``; every committed checkpoint is intact.

    ``report`` holds what was done before the deadline; the next pass resumes from the
    saved offsets and cursors.
    """

    def __init__(self, message: str, report: "SyncReport") -> None:
        super().__init__(message)
        self.report = report
