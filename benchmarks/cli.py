"""How fast the commands answer ``--help`` (each in its own process, as a user types it: no torch, Lightning or
torchmetrics is imported for it), and how fast an inference command gets a frame out."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import _cache_dir, benchmark

COMMANDS = {"motionlab-train": [], "motionlab-animate": [], "motionlab-lipsync": [], "motionlab-eval": [], "motionlab-export": ["onnx"],
            "motionlab-data": ["synth"], "motionlab-cache": ["descriptors"], "motionlab-app": []}


@benchmark("cli_help")
def cli_help(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    rows = []
    script_dir = Path(sys.executable).parent
    for command, kind in COMMANDS.items():
        times = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([str(script_dir / command), *kind, "--help"], check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        rows.append((f"{command} {' '.join(kind)} --help, wall time (median of 3)".replace("  ", " "), 1000 * sorted(times)[1], "ms"))
    return rows


@benchmark("startup")
def startup(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Launch to exit of ``motionlab-animate`` (a FOMM vox-256 release-format file, random weights, one 256 px frame)
    and ``motionlab-lipsync`` (a SyncTalk_2D-layout U-Net, onnxruntime with its graph already in the cache, 0.2 s of
    speech: 5 frames, the least it takes): launch to the first generated frame (as the command reports it) and to exit.
    Median of 3, each in its own process."""
    import numpy as np
    import soundfile
    import torch
    from PIL import Image

    from benchmarks.lipsync import _stand_in_unet
    from motionlab.data.video_io import write_video
    from motionlab.models import create_model
    from motionlab.models.fomm import save_fomm_checkpoint

    folder = Path(_cache_dir()) / "startup"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    fomm = save_fomm_checkpoint(create_model("fomm_vox256"), folder / "vox-cpk.pth.tar")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(folder / "portrait.png")
    write_video(folder / "driver.mp4", [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(2)], fps=25.0)
    cache_root, template, wav_path, predictor = _stand_in_unet(args, "speech_startup.wav")
    soundfile.write(folder / "speech.wav", np.zeros(3200, np.float32), 16000)  # 0.2 s, the shortest audio it takes: 5 frames
    script_dir = Path(sys.executable).parent
    commands = {
        "motionlab-animate, FOMM vox-256 file, 1 frame at 256 px": [str(script_dir / "motionlab-animate"), f"ckpt={fomm}", "arch=fomm_vox256",
                                                                   f"portrait={folder / 'portrait.png'}", f"driver={folder / 'driver.mp4'}",
                                                                   f"out={folder / 'animate.mp4'}", "max_frames=1", "progress=false"],
        "motionlab-lipsync, SyncTalk_2D-layout U-Net, onnxruntime, 5 frames (0.2 s of audio)": [
            str(script_dir / "motionlab-lipsync"), f"ckpt={cache_root / 'unet_synctalk.pth'}", "arch=lipsync_unet328_ave",
            f"audio_encoder_ckpt={cache_root / 'audio_visual_encoder.pth'}", f"template={template}", f"audio={folder / 'speech.wav'}",
            f"out={folder / 'lipsync.mp4'}", "progress=false"],
    }
    rows = []
    for label, command in commands.items():
        subprocess.run(command, check=True, capture_output=True)  # the first run fills the caches (the ONNX graph, file pages)
        times, first_frames = [], []
        for _ in range(3):
            started = time.perf_counter()
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            # the command's own report: seconds from its launch to the first generated frame
            found = re.search(r"first frame ([\d.]+) s after launch", result.stdout)
            first_frames.append(float(found.group(1)) if found else float("nan"))
        rows += [(f"{label}: launch to first frame (median of 3)", sorted(first_frames)[1], "s"),
                 (f"{label}: launch to exit (median of 3)", sorted(times)[1], "s")]
    return rows
