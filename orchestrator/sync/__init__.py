"""The sync engine: capture log, replica lanes, versions, conflicts and failure handling.

``SyncEngine(config, state).run_once()`` is the whole public surface; the CLI
(``mcrepl sync``), the demo, the drills and the benchmark all call it.
"""

from .engine import AdapterFactory, SyncEngine
from .errors import SyncDeadlineExceeded
from .promotion import PromotionRefused, PromotionResult
from .report import DatasetReport, LaneReport, SyncReport, VerifySummary

__all__ = ["AdapterFactory", "DatasetReport", "LaneReport", "PromotionRefused", "PromotionResult",
           "SyncDeadlineExceeded", "SyncEngine", "SyncReport", "VerifySummary"]
