"""Hydra callback of ``motionlab-train -m``: the sweep folder's summary once every job has ended, whatever the
launcher (it reads the job folders, not the launcher's return values)."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from motionlab.utils.runs import write_multirun_summary


class MultirunSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        csv_path, _ = write_multirun_summary(Path(config.hydra.sweep.dir), config.get("optimized_metric"))
        print(f"sweep summary: {csv_path} and {csv_path.with_suffix('.md').name}")
