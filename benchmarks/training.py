"""Training throughput: the quickstart step against a bare PyTorch loop, the data loaders, LoRA."""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

from benchmarks.common import _cache_dir, alternating_medians, benchmark, quickstart_config


class StepTimer(L.Callback):
    """Wall time of training batches after ``warmup`` batches (data loading included)."""

    def __init__(self, warmup: int):
        self.warmup, self.started, self.seconds = warmup, None, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.started = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.started


class BatchList(torch.utils.data.Dataset):
    """Already-collated batches served as they are (``DataLoader(..., batch_size=None)``)."""

    def __init__(self, batches: list[dict]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        return self.batches[index]


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


@benchmark("training_overhead")
def training_overhead(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """The quickstart's Lightning training step against a bare PyTorch loop doing the same forward, loss object, backward,
    gradient clipping, AdamW and scheduler step on the same batches (alternating, median of 3); then the clip loader on the
    toy world's clips encoded as mp4 (decord; ``num_workers`` 0 and 1) against that step."""
    import shutil

    from motionlab.data.video_io import list_frame_files, read_image, write_video

    cfg = quickstart_config(_cache_dir())
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    warmup, steps = 3, args.steps
    iterator = iter(datamodule.train_dataloader())
    batches = [next(iterator) for _ in range(warmup + steps)]
    loader = torch.utils.data.DataLoader(BatchList(batches), batch_size=None)
    torch.manual_seed(0)
    lightning_task = instantiate(cfg.model, loss=cfg.loss)
    bare_task = copy.deepcopy(lightning_task)
    clip = cfg.trainer.gradient_clip_val

    def lightning_step() -> float:
        timer = StepTimer(warmup=warmup)
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=warmup + steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, gradient_clip_val=clip,
                            callbacks=[timer])
        trainer.fit(lightning_task, train_dataloaders=loader)
        return timer.seconds / steps

    # the bare loop: what training_step computes (the task's networks and loss object), without Lightning around it
    bare_task.train()
    (name, factory), = bare_task.optimizer_factories.items()
    optimizer = factory(params=list(bare_task.parameter_groups()[name]))
    scheduler = bare_task.scheduler_factories[name](optimizer=optimizer, total_steps=3 * (warmup + steps)) if name in bare_task.scheduler_factories else None

    def bare_step() -> float:
        for index, batch in enumerate(loader):
            if index == warmup:
                started = time.perf_counter()
            outputs = bare_task.animate(batch["portrait"], batch["driver"])
            loss = bare_task.loss(outputs, batch)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(bare_task.parameters(), clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        return (time.perf_counter() - started) / steps

    seconds = alternating_medians({"lightning": lightning_step, "bare": bare_step})
    batch_size = cfg.data.batch_size
    step_rate = batch_size / seconds["lightning"]
    results = [("quickstart step, Lightning (forward, losses, backward, clipping, AdamW, logging)", 1000 * seconds["lightning"], "ms"),
               ("quickstart step, bare PyTorch loop (same batches, loss object, clipping, AdamW)", 1000 * seconds["bare"], "ms"),
               ("Lightning / bare step time", seconds["lightning"] / seconds["bare"], "x")]

    # the same clips as mp4 files (the "videos" layout, decoded by decord)
    videos = Path(_cache_dir()) / "toy_world_mp4"
    if not (videos / "done").is_file():
        shutil.rmtree(videos, ignore_errors=True)
        videos.mkdir(parents=True)
        for folder in sorted(datamodule.data_root().glob("*_video")):
            frames = (read_image(f) for f in list_frame_files(folder))
            write_video(videos / f"{folder.name.removesuffix('_video')}.mp4", frames, fps=25.0, crf=18)
        (videos / "done").write_text("")
    for workers in (0, 1):
        module = instantiate(cfg.data, root=str(videos), toy_world=None, layout="videos", num_workers=workers, persistent_workers=workers > 0)
        module.setup("fit")
        iterator = iter(module.train_dataloader())
        next(iterator)
        started, samples = time.perf_counter(), 0
        for _ in range(args.steps * 2):
            try:
                samples += len(next(iterator)["portrait"])
            except StopIteration:
                iterator = iter(module.train_dataloader())
        rate = samples / (time.perf_counter() - started)
        results += [(f"clip loader on mp4 clips (decord), num_workers={workers}", rate, "samples/s"),
                    (f"  loader / Lightning step (num_workers={workers})", rate / step_rate, "x")]
    return results


@benchmark("shards_loader")
def shards_loader(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Samples/s of the quickstart's training loader reading the toy world's PNG folders and the same clips as litdata
    shards (data=clips_stream), alternating, median of 3 passes each; the two serve identical batches."""
    from motionlab.data.datamodule import ShardedClipDataModule
    from motionlab.data.shards import write_clip_shards

    cfg = quickstart_config(_cache_dir())
    folder = instantiate(cfg.data)
    root = folder.data_root()
    shards = Path(_cache_dir()) / "toy_world_shards"
    write_clip_shards(root, shards)
    common = {k: cfg.data[k] for k in ("image_size", "val_fraction", "test_fraction", "batch_size", "shuffle_seed", "max_frames")}
    modules = {"folder (PNG frames)": folder, "litdata shards": ShardedClipDataModule(root=str(shards), cache_dir=str(_cache_dir()), **common)}
    for module in modules.values():
        module.setup("fit")

    def loader_rate(module) -> Callable[[], float]:
        def run() -> float:
            started, samples = time.perf_counter(), 0
            for index, batch in enumerate(module.train_dataloader()):
                samples += len(batch["portrait"])
                if index + 1 == args.steps * 4:
                    break
            return samples / (time.perf_counter() - started)
        return run

    medians = alternating_medians({name: loader_rate(module) for name, module in modules.items()})
    return [*((f"quickstart loader, {name}, num_workers=0", rate, "samples/s") for name, rate in medians.items()),
            ("shards / folder", medians["litdata shards"] / medians["folder (PNG frames)"], "x")]


@benchmark("lora")
def lora(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """LoRA (rank 8, default targets) against full fine-tuning: training step time (forward, L1, backward, AdamW) and
    the memory of what training keeps per parameter (gradients + AdamW moments); then inference with the adapters
    unmerged against merged. Animator v1 at 64x64 (batch 16) and the lip-sync U-Net at 320x320 (batch 2 / 8)."""
    from motionlab.models.lora import merge_lora

    results = []
    cases = {"animator_v1": (16, lambda b: (torch.rand(b, 3, 64, 64), torch.rand(b, 3, 64, 64)), lambda out: out["image"]),
             "lipsync_unet328_ave": (2, lambda b: (torch.rand(b, 6, 320, 320), torch.rand(b, 32, 16, 16)), lambda out: out)}
    for name, (batch, make_inputs, image_of) in cases.items():
        base, adapted = _lora_networks(name)
        inputs, target = make_inputs(batch), torch.rand(batch, 3, *make_inputs(1)[0].shape[-2:])
        steps = max(2, args.steps // (8 if name.startswith("lipsync") else 1))
        timings = {}
        for label, net in (("full fine-tuning", base), ("LoRA rank 8", adapted)):
            net.train()
            trainable = [p for p in net.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(trainable, lr=1e-4)
            for step in range(steps + 2):  # two warm-up steps
                if step == 2:
                    started = time.perf_counter()
                loss = torch.nn.functional.l1_loss(image_of(net(*inputs)), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            timings[label] = (time.perf_counter() - started) / steps
            state_bytes = 3 * sum(p.numel() * p.element_size() for p in trainable)  # gradient + two AdamW moments
            results += [(f"{name}: {label} training step (batch {batch})", 1000 * timings[label], "ms"),
                        (f"{name}: {label} trained state (gradients + AdamW moments)", state_bytes / 2**20, "MiB")]
        results.append((f"{name}: full / LoRA step time", timings["full fine-tuning"] / timings["LoRA rank 8"], "x"))

        infer_batch = 16 if name == "animator_v1" else 8
        frames = make_inputs(infer_batch)
        unmerged = adapted.eval()
        merged = merge_lora(copy.deepcopy(unmerged)).eval()
        rates = {}
        with torch.inference_mode():
            for label, net in (("unmerged", unmerged), ("merged", merged)):
                net(*frames)
                repeats = max(2, args.steps // (8 if name.startswith("lipsync") else 2))
                started = time.perf_counter()
                for _ in range(repeats):
                    net(*frames)
                rates[label] = repeats * infer_batch / (time.perf_counter() - started)
                results.append((f"{name}: inference, adapters {label} (batch {infer_batch})", rates[label], "frames/s"))
        results.append((f"{name}: merged / unmerged inference", rates["merged"] / rates["unmerged"], "x"))
    return results


def _lora_networks(name: str):
    """A network and its rank-8 LoRA twin (default targets, adapters given non-zero values), same base weights."""
    from motionlab.models import create_model
    from motionlab.models.lora import LoraSpec, add_lora

    torch.manual_seed(0)
    base = create_model(name)
    adapted = add_lora(copy.deepcopy(base), LoraSpec(rank=8))
    with torch.no_grad():
        for parameter_name, parameter in adapted.named_parameters():
            if "lora_B" in parameter_name:
                parameter.normal_(0, 0.01)
    return base, adapted
