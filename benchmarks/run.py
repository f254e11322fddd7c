"""``make bench``: throughput of motionlab's hot paths on this machine, printed as a markdown table.

    python -m benchmarks.run [--steps N] [--only NAME ...]

Each benchmark builds the real objects from the shipped configs (no stand-ins) and times them after
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args(argv)
    from motionlab.utils.machine import cpu_profile

    print(f"machine: {cpu_profile().describe()}; {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| benchmark | value | unit |\n|---|---:|---|")
    for name in args.only or sorted(BENCHMARKS):
        for label, value, unit in BENCHMARKS[name](args):
            print(f"| {label} | {value:.3f} | {unit} |" if unit == "x" else f"| {label} | {value:.1f} | {unit} |", flush=True)


if __name__ == "__main__":
    main()
