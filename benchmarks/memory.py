"""Peak memory of the inference commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import _cache_dir, benchmark
from benchmarks.lipsync import _lipsync_template


def _peak_rss_mib(module: str, arguments: list[str]) -> float:
    """Run ``python -m module arguments`` and return its peak resident set size in MiB: the process's own VmHWM, read
    as it exits (a parent's ``ru_maxrss`` of the child would include the memory of the forked parent before exec)."""
    import subprocess
    import sys

    report = ("import atexit, runpy, sys; atexit.register(lambda: print('VmHWM', open('/proc/self/status').read()"
              ".split('VmHWM:')[1].split()[0], file=sys.stderr)); sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__')")
    finished = subprocess.run([sys.executable, "-c", report, module, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = [line.split()[1] for line in finished.stderr.splitlines() if line.startswith("VmHWM ")]
    if finished.returncode != 0 or not peaks:
        raise RuntimeError(f"{module} {' '.join(arguments)} failed: {finished.stderr[-2000:]}")
    return int(peaks[-1]) / 1024


@benchmark("memory")
def memory(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Peak RSS of ``motionlab-animate`` (a descriptor checkpoint at 64x64, so that a minute of video runs in minutes)
    and ``motionlab-lipsync`` (SyncTalk_2D-format U-Net, onnxruntime) for a 10 s and a 60 s input, each command in its
    own process: a streaming pipeline's memory does not grow with the input's length."""
    import soundfile

    from motionlab.data.audio import load_wav
    from motionlab.data.synthetic import ToyWorldSpec, ensure_toy_world
    from motionlab.data.video_io import list_frame_files, read_image, write_video
    from motionlab.models import create_model
    from motionlab.utils.checkpoint import atomic_torch_save

    cache_root = Path(_cache_dir()) / "memory-bench"
    world = ensure_toy_world(str(cache_root / "toy"), ToyWorldSpec(identities=1, frames=50, size=256))
    frames = [read_image(f) for f in list_frame_files(world / "id_0000_video")]
    torch.manual_seed(0)
    model = create_model("fomm_vox256", input_size=64, num_kp=10, kp_detector={"block_expansion": 16, "max_features": 128, "num_blocks": 4, "pad": 3},
                         generator={"block_expansion": 32, "max_features": 128, "num_bottleneck_blocks": 2,
                                    "dense_motion_params": {"block_expansion": 32, "max_features": 128, "num_blocks": 4}})
    checkpoint = cache_root / "descriptor.ckpt"  # the layout motionlab-train writes: model specs + net.* weights
    atomic_torch_save({"motionlab": {"task": "descriptor", "models": {"net": model.model_info.spec()}, "predictor": {}},
                       "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    template = _lipsync_template(str(cache_root))
    unet_file, encoder_file = cache_root / "unet_synctalk.pth", cache_root / "audio_visual_encoder.pth"
    torch.save(create_model("lipsync_unet328_ave").state_dict(), unet_file)
    torch.save({k.removeprefix("audio_encoder."): v for k, v in create_model("lipsync_audio_encoder_ave").state_dict().items()}, encoder_file)
    speech = load_wav(template / "aud.wav")
    results = []
    for seconds in (10, 60):
        driver = cache_root / f"driver_{seconds}s.mp4"
        if not driver.is_file():
            write_video(driver, (frames[i % len(frames)] for i in range(25 * seconds)), fps=25.0)
        wav = cache_root / f"speech_{seconds}s.wav"
        soundfile.write(wav, np.resize(speech, 16000 * seconds), 16000)
        animate = _peak_rss_mib("motionlab.cli.animate", [f"ckpt={checkpoint}", f"portrait={world / 'id_0000.png'}", f"driver={driver}",
                                                          f"out={cache_root / 'animate.mp4'}"])
        lipsync = _peak_rss_mib("motionlab.cli.lipsync", [f"ckpt={unet_file}", "arch=lipsync_unet328_ave", f"audio_encoder_ckpt={encoder_file}",
                                                          f"template={template}", f"audio={wav}", f"out={cache_root / 'lipsync.mp4'}",
                                                          f"onnx={cache_root / 'unet.onnx'}"])
        results += [(f"motionlab-animate, {seconds} s driver (64x64 descriptor model): peak RSS", animate, "MiB"),
                    (f"motionlab-lipsync, {seconds} s of speech (SyncTalk_2D U-Net, onnxruntime): peak RSS", lipsync, "MiB")]
    results += [("animate: peak RSS 60 s / 10 s", results[2][1] / results[0][1], "x"),
                ("lipsync: peak RSS 60 s / 10 s", results[3][1] / results[1][1], "x")]
    return results
