"""The terminal progress of a pass: one bar per dataset and location, with its rate and time left.

Each bar counts the dataset's logged changes that location has applied (its lane's
offset against the log's head, which grows while capture runs), so records/s is the
lane's apply rate and the time left is the backlog at that rate. Shown only on a
terminal (``sync --once`` in table format); a pipe gets the report alone.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def pass_progress(enabled: bool) -> Iterator[Any]:
    """A ``rich`` progress display for :class:`~.dataset_pass.DatasetPass`, or ``None`` when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Records applied per second (rich's own speed columns speak bytes)."""

        def render(self, task: Task) -> Text:
            return Text(f"{task.speed:,.0f} rec/s" if task.speed else "- rec/s", style="progress.data.speed")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=False) as bar:
        yield bar


__all__ = ["pass_progress"]
