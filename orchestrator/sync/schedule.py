"""``mcrepl sync --schedule``: each dataset's pass on its own interval or cron schedule.

APScheduler runs one job per dataset with ``max_instances=1`` and ``coalesce=True``:
a job never overlaps itself, and runs missed while one was busy collapse into one.
Beside each, a heartbeat job writes the dataset's heartbeat to its primary every
``sync.heartbeat`` (:mod:`.heartbeat`), so ``status`` shows the end-to-end lag and RPO
estimate of scheduled datasets too.
Anti-entropy runs inside the same job: a pass ends with a comparison of the copies (and
its bounded repair) whenever the dataset's last one is older than ``anti_entropy.every``,
so a replica that lost data outside mcrepl is found and refilled without an operator,
and a sync pass and a verify of one dataset never run at the same time.
SIGINT/SIGTERM ask the engine to stop at the next batch boundary and shut the
scheduler down; in-flight batches commit first.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Callable, Iterable, Optional

from mcrepl.adapters.base.reserved import heartbeat_capable

#: called after every scheduled pass: (report or None, the exception or None, the datasets it was for)
PassObserver = Callable[[Any, Optional[BaseException], Iterable[str]], None]

log = logging.getLogger("mcrepl.schedule")


def trigger_for(schedule: Any) -> Any:
    """The APScheduler trigger of a dataset's ``schedule`` (``every`` or ``cron``)."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger
    if schedule.every is not None:
        return IntervalTrigger(seconds=schedule.every.total_seconds())
    return CronTrigger.from_crontab(schedule.cron, timezone="UTC")


def schedule_period(schedule: Any) -> float:
    """Seconds between two runs of ``schedule``: ``every``, or the gap between the next two
    cron firings (what ``/readyz`` and the no-successful-pass alert hold a dataset to)."""
    if schedule.every is not None:
        return float(schedule.every.total_seconds())
    trigger = trigger_for(schedule)
    now = _now()
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first)
    return float((second - first).total_seconds()) if first and second else 0.0


def build_scheduler(engine: Any, config: Any, dataset: str | None = None,
                    observe: PassObserver | None = None) -> Any:
    """A BlockingScheduler with one non-overlapping job per dataset (not started).

    ``observe`` is told of every pass's outcome (the metrics' ``observe_pass``).
    """
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger
    scheduler = BlockingScheduler(timezone="UTC")
    for name, ds in config.datasets.items():
        if dataset and name != dataset or ds.sync.mode == "follow":
            continue
        scheduler.add_job(_pass, trigger_for(ds.schedule), args=(engine, name, observe), id=f"sync:{name}",
                          name=f"sync {name}", max_instances=1, coalesce=True, misfire_grace_time=None,
                          next_run_time=_now())
        if ds.sync.heartbeat is None:
            continue
        if ds.kind != "blob" and not heartbeat_capable(ds.key_schema()):
            log.warning("dataset %s: no heartbeats (its partition key is not a string; status shows lane lag "
                        "only; set sync.heartbeat: null to silence this)", name)
            continue
        # beside the passes, not in them: a heartbeat waits for the next pass as a user's write does,
        # so the lag it measures is the scheduled mode's real end-to-end lag (its RPO)
        scheduler.add_job(_beat, IntervalTrigger(seconds=ds.sync.heartbeat.total_seconds()), args=(engine, name),
                          id=f"heartbeat:{name}", name=f"heartbeat {name}", max_instances=1, coalesce=True,
                          misfire_grace_time=None, next_run_time=_now())
    return scheduler


def _now() -> Any:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc)


def anti_entropy_due(engine: Any, name: str) -> bool:
    """Whether the dataset's last comparison of the copies is older than its ``anti_entropy.every``."""
    from .antientropy import anti_entropy_settings
    every = anti_entropy_settings(engine.config, name).every
    if every is None:
        return False
    last = engine.state.last_verify(name)
    return last is None or engine.clock.time() - float(last["finished_at"]) >= every.total_seconds()


def _pass(engine: Any, name: str, observe: PassObserver | None = None) -> None:
    report, error = None, None
    try:
        report = engine.run_once(name, verify=anti_entropy_due(engine, name))
        log.info("pass of %s: %s", name, report.to_dict())
    except Exception as exc:  # noqa: BLE001 - one failed pass must not stop the scheduler
        error, report = exc, getattr(exc, "report", None)
        log.error("pass of %s failed: %s", name, exc)
    if observe is not None:
        observe(report, error, [name])


def _beat(engine: Any, name: str) -> None:
    from .heartbeat import scheduled_beat
    if engine.stopping.is_set():
        return
    try:
        scheduled_beat(engine, name)
    except Exception as exc:  # noqa: BLE001 - a missed heartbeat shows as a growing heartbeat age
        log.warning("heartbeat of %s failed: %s", name, exc)


def run_scheduled(engine: Any, config: Any, dataset: str | None = None,
                  observe: PassObserver | None = None) -> None:
    """Run until SIGINT/SIGTERM; then stop between batches and return.

    Datasets with ``sync.mode: follow`` are followed continuously beside the scheduler
    (:mod:`.follow_runner`) and drained on the same signal.
    """
    from .follow_runner import Follower
    scheduler = build_scheduler(engine, config, dataset, observe)
    followed = [n for n, ds in config.datasets.items() if ds.sync.mode == "follow" and dataset in (None, n)]
    follower = Follower(engine, followed)
    thread = threading.Thread(target=follower.run, name="followers", daemon=True) if followed else None

    def stop(*_: object) -> None:
        engine.request_stop()
        scheduler.shutdown(wait=False)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    if thread is not None:
        thread.start()
    scheduler.start()
    if thread is not None:
        thread.join()
