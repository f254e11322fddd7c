"""``make bench``: throughput of motionlab's hot paths on this machine, printed as a markdown table.

    python -m benchmarks.run [--steps N] [--only NAME ...]

Each benchmark builds the real objects from the shipped configs (no stand-ins) and times them after
a warm-up. Record results with the machine and command in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable

import lightning as L
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import open_dict

BENCHMARKS: dict[str, Callable[[argparse.Namespace], list[tuple[str, float, str]]]] = {}


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


class StepTimer(L.Callback):
    """Wall time of training batches after ``warmup`` batches (data loading included)."""

    def __init__(self, warmup: int):
        self.warmup, self.started, self.seconds = warmup, None, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.started = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.started


def _cache_dir() -> str:
    return os.environ.get("MOTIONLAB_BENCH_CACHE", os.path.join(tempfile.gettempdir(), "motionlab-bench"))


@benchmark("animator_quickstart")
def animator_quickstart(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Samples/s of the quickstart training step (forward, losses, backward, AdamW) and of its data loader alone."""
    cfg = quickstart_config(_cache_dir())
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    batch_size = cfg.data.batch_size

    # Data loader alone: decode + assemble batches, as the trainer would pull them.
    iterator, batches = iter(loader), 0
    next(iterator)
    started = time.perf_counter()
    for _ in range(args.steps * 4):
        try:
            next(iterator)
        except StopIteration:
            iterator = iter(loader)
            next(iterator)
        batches += 1
    loader_rate = batches * batch_size / (time.perf_counter() - started)

    # Training step: the real Lightning loop (forward, losses, backward, clipping, AdamW, logging).
    task = instantiate(cfg.model, loss=cfg.loss)
    timer = StepTimer(warmup=3)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=timer.warmup + args.steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        gradient_clip_val=cfg.trainer.gradient_clip_val, callbacks=[timer],
    )
    trainer.fit(task, datamodule=datamodule)
    step_rate = args.steps * batch_size / timer.seconds
    return [
        ("quickstart training step (batch 16, 64x64)", step_rate, "samples/s"),
        (f"quickstart data loader alone (num_workers={cfg.data.num_workers})", loader_rate, "samples/s"),
        ("loader / step ratio", loader_rate / step_rate, "x"),
    ]


@benchmark("metrics_suite")
def metrics_suite(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Frames/s of the full evaluation suite (FD, FVD, AED on EfficientNet-Lite0 at 224; temporal; colour; reconstruction) at 256x256."""
    from motionlab.metrics.suite import EvaluationSuite

    suite = EvaluationSuite(frechet=True, clip_frechet=True, identity=True, temporal=True, colour=True)
    generator = torch.Generator().manual_seed(0)
    portrait = torch.rand(2, 3, 256, 256, generator=generator)
    driver = torch.rand(2, 8, 3, 256, 256, generator=generator)
    generated = (driver + 0.05 * torch.rand(driver.shape, generator=generator)).clamp(0, 1)
    suite.update(portrait, driver, generated)  # warm-up
    rounds = max(1, args.steps // 5)
    started = time.perf_counter()
    for _ in range(rounds):
        suite.update(portrait, driver, generated)
    suite.compute()
    frames = rounds * driver.shape[0] * driver.shape[1]
    return [("full metric suite, 256x256 (generated frames scored)", frames / (time.perf_counter() - started), "frames/s")]


@benchmark("descriptors")
def descriptors(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Descriptor cache read vs recompute on the toy world, and the FOMM vox-256 generator at 256x256, batch 1 vs 8."""
    from motionlab.data.datasets import discover_clips
    from motionlab.data.descriptor_cache import DescriptorCache
    from motionlab.data.synthetic import ToyWorldSpec, ensure_toy_world
    from motionlab.models import create_model
    from motionlab.utils.checkpoint import atomic_torch_save

    results = []
    cache_root = os.path.join(_cache_dir(), "descriptor-bench")
    world = ensure_toy_world(cache_root, ToyWorldSpec(identities=8, frames=40, size=64))
    records = discover_clips(world)[1]
    torch.manual_seed(0)
    model = create_model("fomm", setting="vox-256", num_kp=10, kp_detector={"block_expansion": 16, "max_features": 128, "num_blocks": 4,
                                                                            "scale_factor": 0.5, "pad": 3}).eval()
    checkpoint = os.path.join(cache_root, "descriptor.ckpt")  # the layout motionlab-train writes: config + net.* weights
    atomic_torch_save({"motionlab": {"config": {"model": {"net": {"_target_": "motionlab.models.registry.create_model", "name": "fomm",
                       "setting": "vox-256", "num_kp": 10, "kp_detector": {"block_expansion": 16, "max_features": 128, "num_blocks": 4,
                       "scale_factor": 0.5, "pad": 3}}}, "data": {"image_size": 64}}},
                       "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    cache = DescriptorCache(cache_root, checkpoint, image_size=64)
    started = time.perf_counter()
    cache.build(records, model.kp_detector)
    recompute = time.perf_counter() - started
    started = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        for record in records:
            cache.load(record.identity)
    read = (time.perf_counter() - started) / rounds
    frames = len(records) * 40
    results += [
        ("descriptor recompute (detector, 64x64, 8 clips x 40 frames)", frames / recompute, "frames/s"),
        ("descriptor cache read (same clips)", frames / read, "frames/s"),
        ("cache read / recompute", recompute / read, "x"),
    ]
    generator = create_model("fomm", setting="vox-256").eval()
    for batch in (1, 8):
        source, driving = torch.rand(batch, 3, 256, 256), torch.rand(batch, 3, 256, 256)
        with torch.no_grad():
            kp_source, kp_driving = generator.kp_detector(source), generator.kp_detector(driving)
            generator.generator(source, kp_driving=kp_driving, kp_source=kp_source)
            repeats = max(1, args.steps // 10)
            started = time.perf_counter()
            for _ in range(repeats):
                generator.generator(source, kp_driving=kp_driving, kp_source=kp_source)
            rate = repeats * batch / (time.perf_counter() - started)
        results.append((f"FOMM vox-256 generator, 256x256, batch {batch}", rate, "frames/s"))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| benchmark | value | unit |\n|---|---:|---|")
    for name in args.only or sorted(BENCHMARKS):
        for label, value, unit in BENCHMARKS[name](args):
            print(f"| {label} | {value:.1f} | {unit} |", flush=True)


if __name__ == "__main__":
    main()
