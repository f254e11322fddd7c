"""``make bench``: throughput of motionlab's hot paths on this machine, printed as a markdown table.

    python -m benchmarks.run [--steps N] [--only NAME ...]

Each benchmark builds the real objects from the shipped configs (no stand-ins) and times them after
a warm-up. Record results with the machine and command in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
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


def alternating_medians(runs: dict[str, Callable[[], float]], rounds: int = 3) -> dict[str, float]:
    """Median over ``rounds`` of each run's returned value, the runs taking turns (A B A B ...), so that a change in
    the machine's load touches both sides of a ratio alike."""
    values: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            values[name].append(run())
    return {name: float(np.median(found)) for name, found in values.items()}


class BatchList(torch.utils.data.Dataset):
    """Already-collated batches served as they are (``DataLoader(..., batch_size=None)``)."""

    def __init__(self, batches: list[dict]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        return self.batches[index]


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
            outputs = bare_task.animate(batch["source"], batch["driver"])
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
                samples += len(next(iterator)["source"])
            except StopIteration:
                iterator = iter(module.train_dataloader())
        rate = samples / (time.perf_counter() - started)
        results += [(f"clip loader on mp4 clips (decord), num_workers={workers}", rate, "samples/s"),
                    (f"  loader / Lightning step (num_workers={workers})", rate / step_rate, "x")]
    return results


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


_PEAKS: dict[str, float] = {}


def measured_peaks() -> dict[str, float]:
    """GFLOP/s this machine reaches, with this PyTorch and its threads: a 2048^3 fp32 matmul, a 256 -> 256 3x3 fp32
    convolution at 64x64 (direct, as PyTorch runs it), and a 512^3 bf16 matmul. Measured once per process."""
    if not _PEAKS:
        generator = torch.Generator().manual_seed(0)
        a, b = torch.randn(2048, 2048, generator=generator), torch.randn(2048, 2048, generator=generator)
        _PEAKS["matmul fp32"] = counted_flops(lambda: a @ b) / median_seconds(lambda: a @ b) / 1e9
        x, conv = torch.randn(1, 256, 64, 64, generator=generator), torch.nn.Conv2d(256, 256, 3, padding=1)
        with torch.no_grad():
            _PEAKS["conv fp32"] = counted_flops(lambda: conv(x)) / median_seconds(lambda: conv(x)) / 1e9
        a16, b16 = a[:512, :512].bfloat16(), b[:512, :512].bfloat16()
        _PEAKS["matmul bf16"] = counted_flops(lambda: a16 @ b16) / median_seconds(lambda: a16 @ b16) / 1e9
    return _PEAKS


@benchmark("roofline")
def roofline(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """The machine's measured peaks, then each hot path's FLOPs per item (FlopCounterMode), the rate it reaches, its
    GFLOP/s and that as a share of the fp32 convolution peak, and the rate the peak would allow (the ceiling). FLOPs are
    those of the direct algorithm: a path using Winograd / FFT convolutions does fewer operations, so its effective
    GFLOP/s can pass the peak."""
    import copy

    from motionlab.inference.export import OnnxRunner, export_onnx
    from motionlab.models import create_model
    from motionlab.models.fast_conv import use_fast_convolutions

    peaks = measured_peaks()
    results = [(f"peak: {name} ({'native' if name.endswith('fp32') or native_bf16() else 'not native on this CPU'})", value, "GFLOP/s")
               for name, value in peaks.items()]
    peak = peaks["conv fp32"]
    rows: list[tuple[str, float, float]] = []  # (hot path, FLOPs per item, seconds per item)

    cfg = quickstart_config(_cache_dir())
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(0)
    task = instantiate(cfg.model, loss=cfg.loss).train()
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4)

    def train_step():
        loss = task.loss(task.animate(batch["source"], batch["driver"]), batch)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    size = len(batch["source"])
    rows.append((f"quickstart training step, per sample (forward + backward, batch {size}, 64x64)", counted_flops(train_step) / size, median_seconds(train_step) / size))

    fomm = create_model("fomm_vox256").eval()
    fast = copy.deepcopy(fomm)
    use_fast_convolutions(fast)
    source, driving = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        kp_source, kp_driving = fomm.kp_detector(source), fomm.kp_detector(driving)
        features = fast.generator.encode_source(source)
        direct_generator = lambda: fomm.generator(source, kp_driving, kp_source, source_features=features)  # noqa: E731
        fast.generator(source, kp_driving, kp_source, source_features=features)  # its convolutions choose their algorithms
        paths = {  # label: (what is counted, what is timed)
            "FOMM keypoint detector, 256x256": (lambda: fomm.kp_detector(driving),) * 2,
            "FOMM generator, 256x256, FOMM's loop (source encoded every frame)": (lambda: fomm.generator(source, kp_driving, kp_source),) * 2,
            "FOMM generator, source encoded once, direct convolutions": (direct_generator,) * 2,
            "FOMM generator, source encoded once, Winograd / FFT where faster (motionlab-animate)":
                (direct_generator, lambda: fast.generator(source, kp_driving, kp_source, source_features=features)),
        }
        for label, (counted, timed) in paths.items():
            rows.append((label, counted_flops(counted), median_seconds(timed)))

        unet = create_model("lipsync_unet328_ave").eval()
        image, audio = torch.rand(8, 6, 320, 320), torch.rand(8, 32, 16, 16)
        flops = counted_flops(lambda: unet(image[:1], audio[:1]))
        rows.append(("lip-sync U-Net (328), eager, batch 1 (SyncTalk_2D's loop)", flops, median_seconds(lambda: unet(image[:1], audio[:1]))))
        runner = OnnxRunner(export_onnx(unet, Path(_cache_dir()) / "roofline_unet.onnx"), threads=torch.get_num_threads())
        arrays = image.numpy(), audio.numpy()
        rows.append(("lip-sync U-Net (328), onnxruntime, batch 8 (motionlab)", flops, median_seconds(lambda: runner(*arrays)) / 8))
    for label, flops, seconds in rows:
        achieved = flops / seconds / 1e9
        results.append((f"{label}: {flops / 1e9:.2f} GFLOP/item, {1 / seconds:.2f} items/s (ceiling at the conv peak: {peak * 1e9 / flops:.2f})",
                        achieved, f"GFLOP/s = {100 * achieved / peak:.0f} % of peak"))
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
                samples += len(batch["source"])
                if index + 1 == args.steps * 4:
                    break
            return samples / (time.perf_counter() - started)
        return run

    medians = alternating_medians({name: loader_rate(module) for name, module in modules.items()})
    return [*((f"quickstart loader, {name}, num_workers=0", rate, "samples/s") for name, rate in medians.items()),
            ("shards / folder", medians["litdata shards"] / medians["folder (PNG frames)"], "x")]


@benchmark("metrics_suite")
def metrics_suite(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Frames/s of the full evaluation suite (FD, FVD, AED on EfficientNet-Lite0 at 224; temporal; colour; reconstruction) at 256x256."""
    from motionlab.metrics.suite import SUITE_METRICS, EvaluationSuite

    suite = EvaluationSuite(names=list(SUITE_METRICS))
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
    model = create_model("fomm_vox256", input_size=64, num_kp=10, kp_detector={"block_expansion": 16, "max_features": 128, "num_blocks": 4,
                                                                               "scale_factor": 0.5, "pad": 3}).eval()
    checkpoint = os.path.join(cache_root, "descriptor.ckpt")  # the layout motionlab-train writes: model specs + net.* weights
    atomic_torch_save({"motionlab": {"task": "descriptor", "models": {"net": model.model_info.spec()}, "predictor": {}},
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
    generator = create_model("fomm_vox256").eval()
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


def _lipsync_template(cache_root: str) -> Path:
    """The preprocessed real clip when present (``motionlab-data talking video=... out=data/talking/human_talk_d6``), else a toy talking head at 512 px."""
    real = Path("data/talking/human_talk_d6")
    if (real / "full_body_img").is_dir():
        return real
    from motionlab.data.talking import synth_talking_clip

    toy = Path(cache_root) / "toy_talk_512"
    if not (toy / "done").is_file():
        synth_talking_clip(toy, seconds=4.0, size=512, seed=0)
        (toy / "done").write_text("")
    return toy


@benchmark("lipsync_video")
def lipsync_video(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Lip-sync video end to end (decode, crop, U-Net, paste back, H.264 + AAC mux) on SyncTalk_2D-format weights: SyncTalk_2D's
    own inference loop (BGR, its audio padding and bounce, batch 1) vs motionlab's pipeline (``synctalk_2d`` convention,
    onnxruntime and eager PyTorch, batch 8, threads overlapping decode / model / encode): their frames, then their speed."""
    import soundfile

    from benchmarks.synctalk_reference import synctalk_aud_ave, synctalk_reference_loop, synctalk_template_indices
    from motionlab.data.audio import load_wav
    from motionlab.data.lipsync import speech_features
    from motionlab.data.talking import crop_box, frame_box
    from motionlab.inference.export import OnnxRunner, export_onnx
    from motionlab.inference.lipsync import LipSyncPipeline
    from motionlab.models import create_model
    from motionlab.tasks import load_predictor

    cache_root = Path(_cache_dir()) / "lipsync-bench"
    template = _lipsync_template(str(cache_root))
    seconds = max(2.0, args.steps / 5)  # 20 steps: 4 s, 99 frames
    cache_root.mkdir(parents=True, exist_ok=True)
    wav_path = cache_root / "speech.wav"
    soundfile.write(wav_path, load_wav(template / "aud.wav")[: int(seconds * 16000)], 16000)
    wav = load_wav(wav_path)
    torch.manual_seed(0)  # SyncTalk_2D-format files of an untrained U-Net and ave encoder: the format is what is measured
    unet_file, encoder_file = cache_root / "unet_synctalk.pth", cache_root / "audio_visual_encoder.pth"
    torch.save(create_model("lipsync_unet328_ave").state_dict(), unet_file)
    torch.save({k.removeprefix("audio_encoder."): v for k, v in create_model("lipsync_audio_encoder_ave").state_dict().items()}, encoder_file)
    predictor = load_predictor(unet_file, model="lipsync_unet328_ave", audio_encoder_ckpt=encoder_file)
    net, encoder = predictor.net, predictor.audio_encoder
    reference_features = synctalk_aud_ave(encoder, wav_path)
    ours = speech_features(encoder, wav, predictor.convention).numpy()
    frames = len(reference_features)
    results = [(f"template: {template} ({'real' if 'human' in str(template) else 'toy'}), {frames} frames, convention {predictor.convention.name}", float(frames), "frames"),
               ("aud_ave.npy rows: max abs difference, motionlab vs SyncTalk_2D's writer", float(np.abs(ours - reference_features).max()) if ours.shape == reference_features.shape else float("nan"), "")]

    reference_seconds, kept = synctalk_reference_loop(net, reference_features, wav, template, cache_root / "reference.mp4")
    results.append(("SyncTalk_2D inference loop (batch 1, eager, BGR, MJPG + mux)", frames / reference_seconds, "frames/s"))
    # frame fidelity: motionlab's first frames against the loop's, inside the paste box (outside, both are the template)
    pipeline = LipSyncPipeline(predictor, batch_size=8, feather=0)
    _, produced = pipeline.frames(template, wav)
    worst, differing = 0.0, 0
    count = len(list((template / "full_body_img").glob("*.jpg")))
    for index, (reference, *_), frame in zip(synctalk_template_indices(len(kept), count), kept, produced):
        x0, y0, x1, y1 = frame_box(crop_box(np.loadtxt(str(template / "landmarks" / f"{index}.lms"))), frame, "clip")
        difference = np.abs(reference[y0:y1, x0:x1].astype(np.int16) - frame[y0:y1, x0:x1].astype(np.int16))
        worst, differing = max(worst, float(difference.max()) / 255.0), differing + int((difference > 0).sum())
    results += [(f"paste box, first {len(kept)} frames: max abs difference, motionlab vs SyncTalk_2D (0-1 scale)", worst, ""),
                ("  pixel values that differ", float(differing), "values")]
    onnx_path = export_onnx(net, cache_root / "unet_ave.onnx")
    onnx = OnnxRunner(onnx_path, threads=torch.get_num_threads(), spinning=False)  # as motionlab-lipsync runs it
    difference = max(float(np.abs(onnx(image[None].numpy(), audio[None].numpy())[0] - output.numpy()).max()) for _, image, audio, output in kept)
    for label, runner in (("onnxruntime", onnx), ("eager PyTorch, channels_last", None)):
        predictor.runner = runner  # None: the eager network
        pipeline = LipSyncPipeline(predictor.to("cpu"), batch_size=8, feather=0)
        started = time.perf_counter()
        summary = pipeline.run(template, wav_path, cache_root / f"motionlab_{label.split()[0]}.mp4")
        rate = summary["frames"] / (time.perf_counter() - started)
        results += [(f"motionlab-lipsync, {label}, batch 8", rate, "frames/s"), (f"  speed-up over the SyncTalk_2D loop ({label})", rate * reference_seconds / frames, "x")]
    results.append(("U-Net max abs difference, onnxruntime vs the loop's eager outputs (1e6 x)", difference * 1e6, "1e-6"))
    # whole commands on 6 s of speech, start-up included: SyncTalk_2D's feature writer + inference script as one process
    # against motionlab-lipsync (its ONNX file exported beforehand, as after a first run), alternating, median of 3
    import subprocess
    import sys

    long_wav = cache_root / "speech_6s.wav"
    soundfile.write(long_wav, np.resize(load_wav(template / "aud.wav"), 6 * 16000), 16000)

    def command_seconds(argv: list[str]) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - started
        return run

    commands = alternating_medians({
        "reference": command_seconds([sys.executable, "-m", "benchmarks.synctalk_reference", str(unet_file), str(encoder_file), str(template),
                                      str(long_wav), str(cache_root / "reference_6s.mp4")]),
        "motionlab": command_seconds([sys.executable, "-m", "motionlab.cli.lipsync", f"ckpt={unet_file}", "arch=lipsync_unet328_ave",
                                      f"audio_encoder_ckpt={encoder_file}", f"template={template}", f"audio={long_wav}", "feather=0",
                                      f"out={cache_root / 'motionlab_6s.mp4'}", f"onnx={onnx_path}"])})
    results += [("SyncTalk_2D, whole commands (features + inference), 6 s of speech", commands["reference"], "s"),
                ("motionlab-lipsync, whole command, same files", commands["motionlab"], "s"),
                ("  speed-up over SyncTalk_2D (whole command, 6 s)", commands["reference"] / commands["motionlab"], "x")]
    # the roofline: no fp32 pipeline outruns its U-Net computed at the machine's convolution peak
    _, image, audio, _ = kept[0]
    ceiling = measured_peaks()["conv fp32"] * 1e9 / counted_flops(lambda: net(image[None], audio[None]))
    loop_rate = frames / reference_seconds
    results += [("6x the SyncTalk_2D loop would need", 6 * loop_rate, "frames/s"),
                ("the U-Net alone at the measured fp32 convolution peak (roofline ceiling)", ceiling, "frames/s"),
                ("  ceiling of the speed-up over the loop", ceiling / loop_rate, "x")]
    return results


SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo's flags."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _animate_inputs(cache_root: Path) -> tuple[Path, Path, str]:
    """A real portrait and driver from ../shared when present, else a toy portrait and an mp4 of its clip."""
    portrait, driver = SHARED_REAL / "portraits" / "portrait_s9.jpg", SHARED_REAL / "drivers" / "human_d0.mp4"
    if portrait.is_file() and driver.is_file():
        return portrait, driver, "real portrait_s9 / human_d0"
    from motionlab.data.synthetic import ToyWorldSpec, ensure_toy_world
    from motionlab.data.video_io import list_frame_files, read_image, write_video

    world = ensure_toy_world(str(cache_root / "toy"), ToyWorldSpec(identities=1, frames=60, size=256))
    driver = cache_root / "toy_driver.mp4"
    if not driver.is_file():
        write_video(driver, (read_image(f) for f in list_frame_files(world / "id_0000_video")), fps=25.0, crf=18)
    return world / "id_0000.png", driver, "toy portrait / toy driver"


@benchmark("keypoint_animate")
def keypoint_animate(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """The keypoint animate path on a FOMM release file (vox-256, random weights: the architecture is what is timed):
    FOMM's own demo loop (benchmarks/fomm_reference.py: batch 1, the source re-encoded every frame) against
    ``motionlab-animate`` (portrait state once, batch 1 at 256 px, Winograd / FFT convolutions where faster), alternating,
    median of 3: the loop alone on decoded frames (steady state), and the whole command (read, resize, animate, encode;
    model load included on both sides). Then the opt-in bf16 mode, where the CPU computes bf16 natively."""
    from benchmarks.fomm_reference import fomm_demo, fomm_make_animation
    from motionlab.data.video_io import open_clip, read_image
    from motionlab.inference.animate import animate_files, animate_frames
    from motionlab.models import create_model
    from motionlab.models.fomm import save_fomm_checkpoint
    from motionlab.tasks import load_predictor

    cache_root = Path(_cache_dir()) / "keypoint-animate-bench"
    cache_root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    release = save_fomm_checkpoint(create_model("fomm_vox256"), cache_root / "vox-random.pth.tar")
    portrait, driver, inputs = _animate_inputs(cache_root)
    frames = max(4, args.steps // 2)

    reference = create_model("fomm_vox256", ckpt=release).eval()
    predictor = load_predictor(release, model="fomm_vox256", fast_convolutions=True, detect_generated=False)
    portrait_image, driver_frames = read_image(portrait), open_clip(driver).get(range(frames))
    source, driving = predictor.prepare_portrait(portrait_image), predictor.prepare_driver(driver_frames)
    ours: list[torch.Tensor] = []
    theirs: list[np.ndarray] = []

    def reference_loop() -> float:
        started = time.perf_counter()
        theirs[:] = fomm_make_animation(reference.kp_detector, reference.generator, source, driving)
        return frames / (time.perf_counter() - started)

    def motionlab_loop() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            ours[:] = [batch["generated"] for batch in animate_frames(predictor, portrait_image, driver_frames, predictor.batch_size)]
        return frames / (time.perf_counter() - started)

    motionlab_loop()  # the convolutions choose their algorithms on the first frames (once per process and shape)
    loops = alternating_medians({"reference": reference_loop, "motionlab": motionlab_loop})
    expected = torch.from_numpy(np.stack(theirs)).permute(0, 3, 1, 2)
    difference = float((torch.cat(ours) - expected).abs().max())

    def reference_command() -> float:
        started = time.perf_counter()
        net = create_model("fomm_vox256", ckpt=release).eval()
        fomm_demo(net.kp_detector, net.generator, portrait, driver, cache_root / "fomm.mp4", max_frames=2 * frames)
        return 2 * frames / (time.perf_counter() - started)

    # the whole command on more frames: it includes each side's start-up (and motionlab's convolution timing)
    def motionlab_command() -> float:
        started = time.perf_counter()
        animate_files(release, portrait, driver, cache_root / "motionlab.mp4", arch="fomm_vox256", max_frames=2 * frames)
        return 2 * frames / (time.perf_counter() - started)

    commands = alternating_medians({"reference": reference_command, "motionlab": motionlab_command})
    results = [(f"inputs: {inputs}, {frames} frames at 256x256, {torch.get_num_threads()} threads", float(frames), "frames"),
               ("FOMM demo loop (batch 1, eager)", loops["reference"], "frames/s"),
               ("motionlab keypoint path, same frames", loops["motionlab"], "frames/s"),
               ("  speed-up over FOMM's loop (steady state)", loops["motionlab"] / loops["reference"], "x"),
               ("  max abs difference from FOMM's loop (1e6 x)", difference * 1e6, "1e-6"),
               (f"FOMM demo script, whole ({2 * frames} frames; model load, read, resize, animate, H.264)", commands["reference"], "frames/s"),
               ("motionlab-animate, whole command, same files", commands["motionlab"], "frames/s"),
               ("  speed-up over FOMM's demo (whole command)", commands["motionlab"] / commands["reference"], "x")]
    if native_bf16():
        bf16: list[torch.Tensor] = []
        started = time.perf_counter()
        with torch.inference_mode():
            bf16[:] = [batch["generated"] for batch in animate_frames(predictor, portrait_image, driver_frames, predictor.batch_size, "bf16")]
        rate = frames / (time.perf_counter() - started)
        mse = float(((torch.cat(bf16) - torch.cat(ours)) ** 2).mean())
        results += [("motionlab keypoint path, precision=bf16", rate, "frames/s"),
                    ("  speed-up over FOMM's loop (bf16)", rate / loops["reference"], "x"),
                    ("  PSNR of bf16 against fp32 frames", 10 * np.log10(1 / max(mse, 1e-12)), "dB")]
    else:
        results.append(("precision=bf16: not run, this CPU has no native bf16 (no avx512_bf16 / amx_bf16 flag; see roofline)", float("nan"), ""))
    return results


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


@benchmark("liveportrait")
def liveportrait(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """LivePortrait at the release's size (random weights: the architecture is what is timed), batch 1: each module in
    eager PyTorch and in onnxruntime (CPU provider, graphs from motionlab-export onnx), and the whole animate loop
    (dlib crop of a portrait, relative driving, stitching, paste-back) in frames/s."""
    from motionlab.inference.export import OnnxRunner, export_liveportrait_onnx
    from motionlab.models import create_model
    from motionlab.models.liveportrait import export_graphs
    from motionlab.tasks.liveportrait import LivePortraitPredictor

    repeats = max(1, args.steps // 10)
    torch.manual_seed(0)
    net = create_model("liveportrait").eval()
    folder = Path(_cache_dir()) / "liveportrait-bench"
    # random weights drive the full-size generator into large logits, where float32 sums differ by ~1e-3 between
    # runtimes (the toy-size graphs meet 1e-4 in tests/test_liveportrait.py); the table reports each graph's parity
    report = export_liveportrait_onnx(net, folder, "benchmark", tolerance=1e-2)
    graphs = export_graphs(net, 1, torch.Generator().manual_seed(0))
    labels = {"appearance_feature_extractor": "F", "motion_extractor": "M", "warping_module": "W", "warping_module_4d": "W (depth-sliced 4-D)",
              "spade_generator": "G", "stitching": "S (stitching)"}
    results = []
    for name, label in labels.items():
        graph = graphs[name]
        inputs = tuple(graph.inputs.values())
        runner = OnnxRunner(report["graphs"][name]["out"], threads=torch.get_num_threads())
        arrays = [t.numpy() for t in inputs]
        with torch.no_grad():
            graph.module(*inputs)
            started = time.perf_counter()
            for _ in range(repeats):
                graph.module(*inputs)
            eager = (time.perf_counter() - started) / repeats
        runner.outputs(*arrays)
        started = time.perf_counter()
        for _ in range(repeats):
            runner.outputs(*arrays)
        onnx = (time.perf_counter() - started) / repeats
        results += [(f"{label}: eager PyTorch", eager * 1000, "ms/frame"), (f"{label}: onnxruntime (parity {report['graphs'][name]['max_abs_difference']:.1e})", onnx * 1000, "ms/frame")]
    from motionlab.data.video_io import read_image

    portrait_path = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "portraits" / "portrait_s9.jpg"
    # the real portrait of ../shared when present (a dlib crop and paste-back), else a noise image used whole
    found = portrait_path.is_file()
    portrait = read_image(portrait_path) if found else np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    predictor = LivePortraitPredictor(net, crop_portrait=found)
    source = predictor.prepare_portrait(portrait)
    driver = torch.rand(repeats, 3, 256, 256)
    started = time.perf_counter()
    generated = predictor(source, driver, driver[:1])["generated"]
    predictor.finish((generated.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8))
    seconds = (time.perf_counter() - started) / repeats
    label = f"whole animate loop ({'dlib crop, ' if found else ''}F, M, W, G, stitching{', paste-back' if found else ''}), {repeats} frames"
    results += [(label, seconds * 1000, "ms/frame"), (f"  = {1 / seconds:.3f} frames/s", 1 / seconds, "frames/s")]
    return results


@benchmark("cross_domain")
def cross_domain(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Landmarks -> descriptors through the adapters (normalisation and windows included), and the whole landmark-driven
    animate loop (landmarks -> adapter -> descriptor_quick-sized FOMM at 64x64), side by side; dlib on a real frame when
    ../shared/data/real is present."""
    from motionlab.data.landmarks import read_landmarks
    from motionlab.data.synthetic import ToyWorldSpec, ensure_toy_world
    from motionlab.models import create_model
    from motionlab.tasks.adapter import LandmarkDrivenPredictor

    torch.manual_seed(0)
    world = ensure_toy_world(os.path.join(_cache_dir(), "cross-domain-bench"), ToyWorldSpec(identities=2, frames=200, size=64))
    landmarks = read_landmarks(world / "id_0000_video")
    frames = len(landmarks)
    results = []
    fomm = create_model("fomm_vox256", input_size=64, num_kp=10,
                        kp_detector={"block_expansion": 16, "max_features": 128, "num_blocks": 4, "scale_factor": 0.5, "pad": 3},
                        generator={"block_expansion": 32, "max_features": 128, "num_bottleneck_blocks": 2,
                                   "dense_motion_params": {"block_expansion": 32, "max_features": 128, "num_blocks": 4, "scale_factor": 0.5}})
    portrait = torch.rand(1, 3, 64, 64)
    for name in ("landmark_adapter_mlp", "landmark_adapter_temporal"):
        predictor = LandmarkDrivenPredictor(fomm, create_model(name, num_kp=10, rigid_roll=True))  # as conf/model/adapter_mlp.yaml
        predictor.motion(landmarks.points, portrait)  # warm-up
        repeats = max(1, args.steps // 4)
        started = time.perf_counter()
        for _ in range(repeats):
            motion = predictor.motion(landmarks.points, portrait)
        adapter_rate = repeats * frames / (time.perf_counter() - started)
        started = time.perf_counter()
        motion = predictor.motion(landmarks.points, portrait)
        for start in range(0, frames, 16):
            predictor(portrait, {key: value[start : start + 16] for key, value in motion.items()})
        loop_rate = frames / (time.perf_counter() - started)
        results += [(f"{name}: landmarks -> descriptors ({frames} frames)", adapter_rate, "frames/s"),
                    (f"{name}: whole landmark-driven animate loop, 64x64, batch 16", loop_rate, "frames/s"),
                    (f"{name}: adapter / whole loop", adapter_rate / loop_rate, "x")]
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "drivers" / "human_d0.mp4"
    if real.is_file():
        from motionlab.data.landmarks import DlibLandmarks
        from motionlab.data.video_io import open_clip

        frame, detector = open_clip(real).get([0])[0], DlibLandmarks()
        detector(frame)
        started = time.perf_counter()
        for _ in range(max(1, args.steps // 4)):
            detector(frame)
        results.append((f"dlib 68 landmarks on a {frame.shape[1]}x{frame.shape[0]} real frame", max(1, args.steps // 4) / (time.perf_counter() - started), "frames/s"))
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| benchmark | value | unit |\n|---|---:|---|")
    for name in args.only or sorted(BENCHMARKS):
        for label, value, unit in BENCHMARKS[name](args):
            print(f"| {label} | {value:.3f} | {unit} |" if unit == "x" else f"| {label} | {value:.1f} | {unit} |", flush=True)


if __name__ == "__main__":
    main()
