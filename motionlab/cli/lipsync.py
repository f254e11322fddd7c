"""``motionlab-lipsync``: make a template clip speak new audio with a trained lip-sync U-Net."""

from __future__ import annotations

from omegaconf import DictConfig

from motionlab.cli.app import command_options, hydra_app


def _lipsync(cfg: DictConfig) -> None:
    from motionlab.inference.lipsync import lipsync_files
    from motionlab.utils.progress import FirstFrame, progress, progress_wanted

    options = command_options(cfg)
    with progress("lip-syncing", "frames", progress_wanted(options.pop("progress"))) as on_frame:
        first_frame = FirstFrame(on_frame)
        summary = lipsync_files(**options, on_frame=first_frame)
    detector = f", faces by {summary['face_detector']}" if "face_detector" in summary else ""
    reduced = summary.get("precision")
    precision = f", {reduced['mode']}" + (f" at {reduced['psnr_mouth_db']:.1f} dB from fp32" if reduced["psnr_mouth_db"] is not None else "") if reduced else ""
    print(f"wrote {summary['frames']} frames ({summary['audio_seconds']:.2f} s of audio, {summary['runtime']}{precision}{detector}) to {summary['out']}"
          f"{first_frame.describe()}")


main = hydra_app("lipsync", _lipsync)

if __name__ == "__main__":
    main()
