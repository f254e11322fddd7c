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


class FirstFrame:
    """A per-frame callback (``on_frame(done, total)``) that notes when the first frame was done, in seconds since the
    process was launched (:func:`motionlab.utils.machine.seconds_since_launch`), and passes every call on to
    ``on_frame``: the launch-to-first-frame time a command reports."""

    def __init__(self, on_frame: Callable[[int, int | None], None]):
        self.on_frame = on_frame
        self.seconds: float | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.seconds is None:
            from motionlab.utils.machine import seconds_since_launch

            self.seconds = seconds_since_launch()
        self.on_frame(done, total)

    def describe(self) -> str:
        """``"; first frame 2.7 s after launch"``, or nothing where it is unknown."""
        return "" if self.seconds is None else f"; first frame {self.seconds:.1f} s after launch"
