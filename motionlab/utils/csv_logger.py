"""Lightning's CSV logger, made to keep a resumed run's earlier rows.

Lightning's writer deletes ``metrics.csv`` when it starts in a folder that holds one, so a run resumed from its
``last.ckpt`` (the same command again, a Train-tab Resume, a requeued job) lost every curve point logged before the
interruption. This logger reads the file first and writes it back, then appends as usual; rows logged between the
last checkpoint and the interruption appear twice at their steps (they were logged twice).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from lightning.pytorch.loggers.csv_logs import CSVLogger


class ResumableCSVLogger(CSVLogger):
    """:class:`lightning.pytorch.loggers.CSVLogger` that keeps an existing ``metrics.csv`` of its folder."""

    @property
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        kept = path.read_text() if path.is_file() else ""
        with warnings.catch_warnings():  # its "will be deleted" warning: not so here
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = super().experiment  # deletes the file it finds (on rank 0; other ranks get a stand-in that writes nothing)
        if self._experiment is not None and kept.strip():
            path.write_text(kept)
            writer.metrics_keys = list(next(csv.reader([kept.splitlines()[0]])))
        return writer
