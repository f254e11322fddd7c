"""``motionlab-animate``: drive a portrait with a clip using any animation checkpoint."""

from __future__ import annotations

from omegaconf import DictConfig

from motionlab.cli.app import hydra_app
from motionlab.inference.animate import animate_files
from motionlab.utils.config import resolved_container


def _animate(cfg: DictConfig) -> None:
    options = {key: value for key, value in resolved_container(cfg).items() if key != "hydra"}
    summary = animate_files(**options)
    print(f"wrote {summary['frames']} frames at {summary['fps']:g} fps to {summary['out']}" + (f" and {summary['gif']}" if summary["gif"] else ""))


main = hydra_app("animate", _animate)

if __name__ == "__main__":
    main()
