"""The registry and the timing helpers every benchmark uses: alternating medians, FLOP counts, the quickstart config."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module
from omegaconf import open_dict

BENCHMARKS: dict[str, Callable[[argparse.Namespace], list[tuple[str, float, str]]]] = {}


SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def benchmark(name: str):
    def register(function):
        BENCHMARKS[name] = function
        return function

    return register


def quickstart_config(cache_dir: str):
    with initialize_config_module(config_module="motionlab.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=quickstart", "logger=none", "callbacks=none"])
    with open_dict(cfg):
        cfg.paths = {"root_dir": cache_dir, "data_dir": cache_dir, "log_dir": cache_dir, "cache_dir": cache_dir, "output_dir": cache_dir, "work_dir": cache_dir}
    return cfg


def _cache_dir() -> str:
    return os.environ.get("MOTIONLAB_BENCH_CACHE", os.path.join(tempfile.gettempdir(), "motionlab-bench"))


def alternating_medians(runs: dict[str, Callable[[], float]], rounds: int = 3) -> dict[str, float]:
    """Median over ``rounds`` of each run's returned value, the runs taking turns (A B A B ...), so that a change in
    the machine's load touches both sides of a ratio alike."""
    values: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            values[name].append(run())
    return {name: float(np.median(found)) for name, found in values.items()}


def counted_flops(function: Callable[[], object]) -> float:
    """FLOPs of one call (torch's FlopCounterMode: matmuls and convolutions, 2 per multiply-add, direct algorithm)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        function()
    return float(counter.get_total_flops())


def median_seconds(function: Callable[[], object], repeats: int = 3) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): :func:`motionlab.utils.machine.cpu_profile`."""
    from motionlab.utils.machine import cpu_profile

    return cpu_profile().native_bf16
