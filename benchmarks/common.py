"""The registry and the timing helpers every benchmark uses: alternating medians, FLOP counts, the quickstart config."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
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


def with_data_statistics(model, run: Callable[[], object], logits=None):
    """``model`` (random weights) with every BatchNorm's running mean and variance set to what it sees while ``run()``
    passes real frames through it (one cumulative pass, in place; returns the model in eval mode); ``logits``, the
    convolution before an output sigmoid, is then scaled so that its outputs have unit spread on those frames.

    PyTorch's default initialisation shrinks activations layer after layer, and its BatchNorm statistics (mean 0,
    variance 1) do not undo that: a random FOMM renders a flat grey image (pixel spread 0.001), on which any precision
    scores ~95 dB; a random LivePortrait's spectral-normalised SPADE decoder does the opposite, its logits so large
    that every pixel is 0 or 1. With the statistics of real frames every normalised layer has unit spread and the
    render varies as a trained network's does (FOMM: spread 0.09, values 0.02 to 0.96), so that a PSNR against fp32
    measures the rounding of a precision rather than a flat or saturated image."""
    import torch
    from torch import nn

    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the pass
    model.eval()
    for norm in norms:
        norm.train()
    with torch.no_grad():
        run()
    for norm in norms:
        norm.momentum = 0.1
    model.eval()
    if logits is not None:
        outputs: list[torch.Tensor] = []
        handle = logits.register_forward_hook(lambda module, inputs, output: outputs.append(output.detach().flatten()))
        try:
            with torch.no_grad():
                run()
        finally:
            handle.remove()
        spread = float(torch.cat(outputs).std())
        with torch.no_grad():
            logits.weight.div_(spread)
            if logits.bias is not None:
                logits.bias.div_(spread)
    return model


def release_layout(images):
    """(N, 3, S, S) images as the releases' demos hold them: ``torch.tensor(hwc_array).permute(0, 3, 1, 2)``, a view
    with channels-last strides, which PyTorch then keeps through every layer (each 3x3 convolution that falls to its
    direct THNN path copies its weight to channels-last on every call). motionlab's data layer makes the same views
    (frames_to_tensor), so both sides of a race run the same layout."""
    return images.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


@contextmanager
def release_computation():
    """Inside: two computations as the releases' own code does them, where motionlab computes the same numbers faster.
    The reference loops run motionlab's modules (the releases' architectures) and must pay what the releases pay:

    - keypoint Gaussians as ``kp2gaussian``: a plain ``exp``, its subnormal tails kept (a CPU computes on subnormals
      tens of times slower), in place of :func:`~motionlab.geometry.keypoints.gaussian_without_subnormals`;
    - ``AntiAliasInterpolation2d``: the blur computed at every pixel, then every step-th pixel kept, in place of the
      strided convolution (equal to the bit)."""
    import torch
    import torch.nn.functional as F

    from motionlab.geometry import head_pose, keypoints
    from motionlab.models.fomm import AntiAliasInterpolation2d

    def blur_then_subsample(self, x):
        out = F.conv2d(F.pad(x, (self.ka, self.kb, self.ka, self.kb)), self.weight, groups=self.groups)
        return out[:, :, :: self.step, :: self.step]

    modules = (keypoints, head_pose)
    gaussians, anti_alias = [module.gaussian_without_subnormals for module in modules], AntiAliasInterpolation2d.forward
    for module in modules:
        module.gaussian_without_subnormals = torch.exp
    AntiAliasInterpolation2d.forward = blur_then_subsample
    try:
        yield
    finally:
        for module, gaussian in zip(modules, gaussians):
            module.gaussian_without_subnormals = gaussian
        AntiAliasInterpolation2d.forward = anti_alias
