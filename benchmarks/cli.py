"""How fast the commands answer ``--help`` (each in its own process, as a user types it): no torch, Lightning or
torchmetrics is imported for it."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import benchmark

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
