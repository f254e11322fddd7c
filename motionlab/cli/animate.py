"""``motionlab-animate``: drive a portrait with a clip using any animation checkpoint."""

from __future__ import annotations

from omegaconf import DictConfig

from motionlab.cli.app import command_options, hydra_app


def _animate(cfg: DictConfig) -> None:
    from motionlab.inference.animate import animate_files
    from motionlab.utils.progress import FirstFrame, progress, progress_wanted

    options = command_options(cfg)
    with progress("animating", "frames", progress_wanted(options.pop("progress"))) as on_frame:
        first_frame = FirstFrame(on_frame)
        summary = animate_files(**options, on_frame=first_frame)
    crop = f" (faces cropped with {summary['crop_model']})" if summary["crop_model"] else ""
    print(f"wrote {summary['frames']} frames at {summary['fps']:g} fps to {summary['out']}" + (f" and {summary['gif']}" if summary["gif"] else "") + crop
          + first_frame.describe())


main = hydra_app("animate", _animate)

if __name__ == "__main__":
    main()
