"""``motionlab-animate``: drive a portrait with a clip using a trained checkpoint."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from motionlab.inference.animate import animate_files
from motionlab.utils.config import resolved_container


@hydra.main(version_base="1.3", config_path="../conf", config_name="animate")
def main(cfg: DictConfig) -> None:
    options = {key: value for key, value in resolved_container(cfg).items() if key != "hydra"}
    summary = animate_files(**options)
    print(f"wrote {summary['frames']} frames at {summary['fps']:g} fps to {summary['out']}" + (f" and {summary['gif']}" if summary["gif"] else ""))


if __name__ == "__main__":
    main()
