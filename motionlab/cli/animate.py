"""``motionlab-animate``: drive a portrait with a clip using any animation checkpoint."""

from __future__ import annotations

from omegaconf import DictConfig

from motionlab.cli.app import command_options, hydra_app
from motionlab.inference.animate import animate_files


def _animate(cfg: DictConfig) -> None:
    options = command_options(cfg)
    summary = animate_files(**options)
    crop = f" (faces cropped with {summary['crop_model']})" if summary["crop_model"] else ""
    print(f"wrote {summary['frames']} frames at {summary['fps']:g} fps to {summary['out']}" + (f" and {summary['gif']}" if summary["gif"] else "") + crop)


main = hydra_app("animate", _animate)

if __name__ == "__main__":
    main()
