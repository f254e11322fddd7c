"""``make bench``: throughput of motionlab's hot paths on this machine, printed as a markdown table.

    python -m benchmarks.run [--steps N] [--only NAME ...]

``--only ratios`` runs every comparison with a release's own code (FOMM's and TPSMM's loops, LivePortrait's
pipeline, SyncTalk_2D's command, Wav2Lip's inference) in one run and ends with their ratios side by side. Each benchmark builds the real objects from the shipped configs (no stand-ins) and times them after
a warm-up. Record results with the machine and command in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

# each subject's module registers its benchmarks
from benchmarks import animation, cli, lipsync, liveportrait, memory, roofline, training  # noqa: F401
from benchmarks.common import BENCHMARKS

# names that stand for several benchmarks run together
GROUPS = {"ratios": ("keypoint_animate", "tpsmm_animate", "liveportrait_pipeline", "lipsync_video", "wav2lip_video")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--only", nargs="*", choices=sorted([*BENCHMARKS, *GROUPS]), help="run only these benchmarks (or groups: ratios)")
    args = parser.parse_args(argv)
    from motionlab.utils.machine import cpu_profile

    print(f"machine: {cpu_profile().describe()}; {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| benchmark | value | unit |\n|---|---:|---|")
    names = [member for name in args.only or sorted(BENCHMARKS) for member in GROUPS.get(name, (name,))]
    ratios = []
    for name in dict.fromkeys(names):
        for label, value, unit in BENCHMARKS[name](args):
            print(f"| {label} | {value:.3f} | {unit} |" if unit == "x" else f"| {label} | {value:.1f} | {unit} |", flush=True)
            if unit == "x":
                ratios.append((name, label.strip(), value))
    if len(set(names)) > 1 and ratios:
        print("\n| ratios of this run | benchmark | x |\n|---|---|---:|")
        for name, label, value in ratios:
            print(f"| {label} | {name} | {value:.2f} |")


if __name__ == "__main__":
    main()
