"""The spans of a sync pass: names and attributes, in one place (see docs/observability.md).

The engine carries one decorator line per point (``@traced(*LANE_BATCH)``); what each span
says lives here, so the engine's code is untouched by it and a rewritten engine keeps the
same span tree by putting the same line on its equivalent method. The functions read the
engine's objects by attribute only (no import of the sync package: no import cycle).

Span tree of one pass::

    mcrepl.sync.pass                 datasets, verify, outcome, captured, lanes.caught_up
    └─ mcrepl.sync.dataset           dataset, primary, epoch, captured, lanes, lanes.caught_up, outcome
       ├─ mcrepl.capture.page        dataset, location, epoch, stamped, echoes, unchanged, quarantined,
       │                             staged, more, scanned, outcome
       │  └─ DynamoDB.GetRecords …   (botocore / requests instrumentation: one span per store call)
       └─ mcrepl.lane.batch          dataset, replica, offset, new_offset, applied, replayed, stale,
          └─ DynamoDB.PutItem …      rejected, withheld, conflicts, merged, outcome
"""

from __future__ import annotations

from typing import Any

from .tracing import traced

PASS = "mcrepl.sync.pass"
DATASET = "mcrepl.sync.dataset"
CAPTURE_PAGE = "mcrepl.capture.page"
LANE_BATCH = "mcrepl.lane.batch"


def _pass_before(engine: Any, dataset: str | None = None, *, verify: bool = False) -> dict[str, Any]:
    return {"datasets": dataset or ",".join(engine.config.datasets), "verify": verify}


def _pass_after(report: Any, *_: Any, **__: Any) -> dict[str, Any]:
    lanes = [lane for ds in report.datasets.values() for lane in ds.lanes.values()]
    return {"outcome": "ok" if report.ok else "not_caught_up", "stopped": report.stopped,
            "captured": sum(ds.captured for ds in report.datasets.values()),
            "lanes": len(lanes), "lanes.caught_up": sum(1 for lane in lanes if lane.caught_up)}


def _dataset_before(engine: Any, name: str, *_: Any, **__: Any) -> dict[str, Any]:
    return {"dataset": name}


def _dataset_after(_: Any, engine: Any, name: str, report: Any, *__: Any, **___: Any) -> dict[str, Any]:
    ds = report.datasets.get(name)
    if ds is None:
        return {}
    caught_up = sum(1 for lane in ds.lanes.values() if lane.caught_up)
    outcome = ("capture_failed" if ds.capture_error else
               "ok" if caught_up == len(ds.lanes) else "not_caught_up")
    return {"primary": ds.primary, "epoch": ds.epoch, "captured": ds.captured, "lanes": len(ds.lanes),
            "lanes.caught_up": caught_up, "outcome": outcome, "capture_error": ds.capture_error}


def _capture_before(capturer: Any, *_: Any, **__: Any) -> dict[str, Any]:
    return {"dataset": capturer.target.dataset, "location": capturer.target.replica, "epoch": capturer.epoch}


def _capture_after(result: Any, *_: Any, **__: Any) -> dict[str, Any]:
    return {"stamped": result.stamped, "echoes": result.echoes, "unchanged": result.unchanged,
            "quarantined": result.quarantined, "staged": result.staged, "more": result.more,
            "scanned": result.scanned, "outcome": "deposed" if result.deposed else "ok"}


def _batch_before(applier: Any, offset: int, *_: Any, **__: Any) -> dict[str, Any]:
    return {"dataset": applier.target.dataset, "replica": applier.target.replica, "offset": offset}


def _batch_after(outcome: Any, *_: Any, **__: Any) -> dict[str, Any]:
    if outcome is None:
        return {"outcome": "idle"}                 # the lane was at the log head
    return {**outcome.counts, "new_offset": outcome.new_offset, "merged": outcome.merged,
            "outcome": "ok"}


#: ``traced(*X)`` arguments for each point: (name, before, after)
PASS_SPAN = (PASS, _pass_before, _pass_after)
DATASET_SPAN = (DATASET, _dataset_before, _dataset_after)
CAPTURE_PAGE_SPAN = (CAPTURE_PAGE, _capture_before, _capture_after)
LANE_BATCH_SPAN = (LANE_BATCH, _batch_before, _batch_after)

__all__ = ["CAPTURE_PAGE_SPAN", "DATASET_SPAN", "LANE_BATCH_SPAN", "PASS_SPAN", "traced"]
