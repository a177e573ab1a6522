"""The sync engine: capture log, replica lanes, versions, conflicts and failure handling.

``SyncEngine(config, state).run_once()`` is the whole public surface; the CLI
(``mcrepl sync``), the demo, the drills and the benchmark all call it.
"""

from .engine import AdapterFactory, SyncEngine
from .errors import SyncDeadlineExceeded
from .report import DatasetReport, LaneReport, SyncReport

__all__ = ["AdapterFactory", "DatasetReport", "LaneReport", "SyncDeadlineExceeded", "SyncEngine", "SyncReport"]
