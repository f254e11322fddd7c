"""Progress of long commands on the terminal (Rich): what is done of how much, the rate and the time left.

Shown only where someone watches it: on a terminal (stderr is a TTY) and unless the command says ``progress=false``;
logs and pipes get none of it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def progress_wanted(setting: bool | None) -> bool:
    """``progress=`` of a command: false turns it off; otherwise it is on when stderr is a terminal."""
    return setting is not False and sys.stderr.isatty()


@contextmanager
def progress(description: str, unit: str, enabled: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A callback ``update(done, total)`` (the ``on_frame`` of :func:`motionlab.inference.animate.animate_files` and
    its kin) drawing a bar with ``done/total unit``, the rate in ``unit``/s and the time left; a no-op when not
    ``enabled``."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TaskProgressColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=None, rate="")

        def update(done: int, total: int | None) -> None:
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:.1f} {unit}/s" if speed else "")

        yield update
