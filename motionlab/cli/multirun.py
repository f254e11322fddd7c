"""Hydra callback of ``motionlab-train -m``: tags checked before any job starts, and the sweep folder's summary once
every job has ended, whatever the sweeper and launcher (it reads the job folders, not the launcher's return values)."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from motionlab.utils.errors import EXIT_USAGE
from motionlab.utils.runs import write_multirun_summary

# train.yaml's tags: a sweep left with them could not be told apart from other runs on a W&B dashboard
DEFAULT_TAGS = ["dev"]


class MultirunSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        tags = list(config.get("tags") or [])
        if not tags or tags == DEFAULT_TAGS:
            # an exit, not an exception: Hydra turns a callback's exceptions into warnings and starts the jobs anyway
            print("motionlab-train: error: a multirun needs tags that name it (W&B groups and filters its jobs by them): "
                  "add tags=[my_sweep] (an experiment's own tags count)", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        csv_path, _ = write_multirun_summary(Path(config.hydra.sweep.dir), config.get("optimized_metric"))
        print(f"sweep summary: {csv_path} and {csv_path.with_suffix('.md').name}")
