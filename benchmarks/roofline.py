"""The machine's measured peaks and each hot path placed against them."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from hydra.utils import instantiate

from benchmarks.common import _cache_dir, benchmark, counted_flops, median_seconds, native_bf16, quickstart_config
from motionlab.utils.machine import cpu_profile

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
        _PEAKS.update(onnxruntime_conv_peaks())
    return _PEAKS


def onnxruntime_conv_peaks() -> dict[str, float]:
    """GFLOP/s (GOP/s for int8) of four 3x3 convolutions 128 -> 128 at 80x80 in onnxruntime: fp32, and int8 as
    ``precision=int8`` runs it (pre-processed, static QDQ, per-channel int8 weights, uint8 activations)."""
    import numpy as np

    from motionlab.utils.onnx_files import OnnxRunner, quantize_int8

    folder = Path(_cache_dir()) / "roofline"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    layers = torch.nn.Sequential(*(torch.nn.Sequential(torch.nn.Conv2d(128, 128, 3, padding=1), torch.nn.ReLU()) for _ in range(4))).eval()
    x = torch.rand(1, 128, 80, 80)
    torch.onnx.export(layers, (x,), str(folder / "convs.onnx"), input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)
    samples = [{"x": np.random.default_rng(i).random((1, 128, 80, 80), dtype=np.float32)} for i in range(4)]
    int8 = quantize_int8(folder / "convs.onnx", folder / "convs.int8.onnx", samples, "roofline", cpu_profile().int8_reduce_range)
    with torch.no_grad():
        flops = counted_flops(lambda: layers(x))
    threads = torch.get_num_threads()
    peaks = {}
    for name, path in (("conv fp32 (onnxruntime)", folder / "convs.onnx"), ("conv int8 (onnxruntime, QDQ)", int8)):
        runner = OnnxRunner(path, threads=threads)
        peaks[name] = flops / median_seconds(lambda runner=runner: runner(samples[0]["x"])) / 1e9
    return peaks


@benchmark("roofline")
def roofline(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """The machine's measured peaks, then each hot path's FLOPs per item (FlopCounterMode), the rate it reaches, its
    GFLOP/s and that as a share of the fp32 convolution peak, and the rate the peak would allow (the ceiling). FLOPs are
    those of the direct algorithm: a path using Winograd / FFT convolutions does fewer operations, so its effective
    GFLOP/s can pass the peak."""

    from motionlab.inference.export import export_onnx
    from motionlab.models import create_model
    from motionlab.models.fast_conv import use_fast_convolutions
    from motionlab.utils.onnx_files import OnnxRunner

    peaks = measured_peaks()
    cpu = cpu_profile()

    def support(name: str) -> str:
        if "int8" in name and cpu.int8_reduce_range:
            return "AVX2 byte multiply-add, 7-bit weights"
        native = native_bf16() if "bf16" in name else cpu.native_int8 if "int8" in name else True
        return "native" if native else "not native on this CPU"

    results = [(f"peak: {name} ({support(name)})", value, "GOP/s" if "int8" in name else "GFLOP/s") for name, value in peaks.items()]
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
        loss = task.loss(task.animate(batch["portrait"], batch["driver"]), batch)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    size = len(batch["portrait"])
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
