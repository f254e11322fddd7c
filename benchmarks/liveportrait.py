"""LivePortrait: each module in PyTorch and onnxruntime, and its animate loop."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    SHARED_REAL,
    _cache_dir,
    alternating_medians,
    benchmark,
    native_bf16,
    release_computation,
    release_layout,
    with_data_statistics,
)


@benchmark("liveportrait")
def liveportrait(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """LivePortrait at the release's size (random weights: the architecture is what is timed), batch 1: each module in
    eager PyTorch and in onnxruntime (CPU provider, graphs from motionlab-export onnx), and the whole animate loop
    (dlib crop of a portrait, relative driving, stitching, paste-back) in frames/s."""
    from motionlab.inference.export import export_graph_folder
    from motionlab.models import create_model
    from motionlab.models.liveportrait import export_graphs
    from motionlab.tasks.liveportrait_predictor import LivePortraitPredictor
    from motionlab.utils.onnx_files import OnnxRunner

    repeats = max(1, args.steps // 10)
    torch.manual_seed(0)
    net = create_model("liveportrait").eval()
    folder = Path(_cache_dir()) / "liveportrait-bench"
    # random weights drive the full-size generator into large logits, where float32 sums differ by ~1e-3 between
    # runtimes (the toy-size graphs meet 1e-4 in tests/models/test_liveportrait.py); the table reports each graph's parity
    report = export_graph_folder(net, folder, "benchmark", tolerance=1e-2)
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
    source, context = predictor.prepare_portrait(portrait)
    driver = torch.rand(repeats, 3, 256, 256)
    started = time.perf_counter()
    generated = predictor(source, driver, driver[:1], context)["generated"]
    predictor.finish((generated.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8), context)
    seconds = (time.perf_counter() - started) / repeats
    label = f"whole animate loop ({'dlib crop, ' if found else ''}F, M, W, G, stitching{', paste-back' if found else ''}), {repeats} frames"
    results += [(label, seconds * 1000, "ms/frame"), (f"  = {1 / seconds:.3f} frames/s", 1 / seconds, "frames/s")]
    if native_bf16():
        # motionlab-animate precision=bf16: the networks of the same loop under bfloat16 autocast, against fp32's (the
        # networks alone on both sides, one after the other)
        def render(bf16: bool) -> tuple[torch.Tensor, float]:
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = predictor(source, driver, driver[:1], context)["generated"].float()
            return out, (time.perf_counter() - started) / repeats

        (full, full_seconds), (reduced, reduced_seconds) = render(False), render(True)
        psnr = float(10 * torch.log10(1 / ((reduced - full) ** 2).mean().clamp_min(1e-12)))
        results += [("the loop's networks, fp32", full_seconds * 1000, "ms/frame"),
                    ("the loop's networks, precision=bf16 (autocast)", reduced_seconds * 1000, "ms/frame"),
                    ("  speed-up over fp32", full_seconds / reduced_seconds, "x"),
                    ("  PSNR of bf16 against fp32 renders (random weights; the gate's floor: 35 dB)", psnr, "dB")]
    return results


@benchmark("liveportrait_pipeline")
def liveportrait_pipeline(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """LivePortrait's own pipeline (benchmarks/liveportrait_reference.py: ``execute`` at batch 1, eager fp32) against
    motionlab's LivePortrait predictor on the same networks (release size, random weights with data statistics:
    :func:`benchmarks.common.with_data_statistics`) and the same 256 px source
    and driving crops, alternating, medians of 3: motionlab in fp32 (Winograd / FFT convolutions where faster), in
    ``precision=bf16`` (G in bf16) and ``precision=int8`` (W's hourglass and mask convolution as onnxruntime int8 graphs calibrated on the
    first 4 driving frames), each where the CPU computes it natively; the renders' largest difference (uint8 levels)
    and each reduced precision's PSNR against motionlab's fp32 renders. Crop and paste-back are left out on both sides."""
    import copy

    from benchmarks.liveportrait_reference import liveportrait_execute
    from motionlab.data.datasets import frames_to_tensor
    from motionlab.data.images import to_uint8
    from motionlab.data.video_io import open_clip, read_image
    from motionlab.inference.precision import unsupported
    from motionlab.models import create_model
    from motionlab.models.bf16 import keep_float32
    from motionlab.models.fast_conv import use_fast_convolutions
    from motionlab.models.int8 import quantize_modules
    from motionlab.tasks.liveportrait_predictor import LivePortraitPredictor

    frames = max(2, args.steps // 5)
    torch.manual_seed(0)
    reference = create_model("liveportrait").eval()
    portrait_path, driver_path = SHARED_REAL / "portraits" / "portrait_s9.jpg", SHARED_REAL / "drivers" / "human_d0.mp4"
    found = portrait_path.is_file() and driver_path.is_file()
    rng = np.random.default_rng(0)
    portrait = read_image(portrait_path) if found else rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    driver = open_clip(driver_path).get(range(frames)) if found else rng.integers(0, 256, (frames, 256, 256, 3), dtype=np.uint8)
    options = {"driving_option": "expression-friendly", "stitching": True, "paste_back": False}
    plain = LivePortraitPredictor(reference, crop_portrait=found, **options)
    source, context = plain.prepare_portrait(portrait)
    driving = frames_to_tensor(driver, 256)
    with_data_statistics(reference, lambda: liveportrait_execute(reference, source, driving[:1]), reference.spade_generator.conv_img[0])
    fast = copy.deepcopy(reference)
    use_fast_convolutions(fast)
    predictors = {"fp32": LivePortraitPredictor(fast, crop_portrait=False, **options)}
    if unsupported("bf16") is None:
        # as animate_frames runs bf16: autocast around the predictor, the float32 modules (all but G) inside
        keep_float32(fast, fast.model_info.float32_modules(fast))
        predictors["bf16"] = predictors["fp32"]
    if unsupported("int8") is None:
        # as motionlab-animate runs it: the fast-convolution network with W's int8 parts
        int8 = LivePortraitPredictor(copy.deepcopy(fast), crop_portrait=False, **options)
        started = time.perf_counter()
        quantize_modules(int8.net, int8.net.model_info.int8_modules(int8.net), lambda: int8(source, driving[:4], driving[:1], context), "benchmark.int8")
        quantize_seconds = time.perf_counter() - started
        predictors["int8"] = int8
    renders: dict[str, np.ndarray] = {}

    # seconds per frame (a LivePortrait frame takes seconds on a CPU)
    def reference_run() -> float:
        started = time.perf_counter()
        with release_computation():
            renders["reference"] = np.stack(liveportrait_execute(reference, release_layout(source), release_layout(driving)))
        return (time.perf_counter() - started) / frames

    def motionlab_run(mode: str):
        predictor = predictors[mode]

        def run() -> float:
            started = time.perf_counter()
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                out = [predictor(source, batch, driving[:1], context)["generated"].float() for batch in driving.split(predictor.batch_size)]
            renders[mode] = to_uint8(torch.cat(out), "floor")
            return (time.perf_counter() - started) / frames
        return run

    predictors["fp32"](source, driving[:1], driving[:1], context)  # the convolutions choose their algorithms (once per machine and shape)
    seconds = alternating_medians({"reference": reference_run, **{mode: motionlab_run(mode) for mode in predictors}})
    inputs = "real portrait_s9 (dlib crop) / human_d0" if found else "noise portrait / noise driver"
    results = [(f"inputs: {inputs}, {frames} frames, 256 px crops -> 512 px renders, {torch.get_num_threads()} threads", float(frames), "frames"),
               ("LivePortrait's pipeline (execute: template, W + G per frame, batch 1, eager fp32)", seconds["reference"], "s/frame"),
               ("motionlab LivePortrait predictor, fp32", seconds["fp32"], "s/frame"),
               ("  speed-up over LivePortrait's pipeline (fp32)", seconds["reference"] / seconds["fp32"], "x"),
               ("  max abs difference from the pipeline's renders", float(np.abs(renders["fp32"].astype(int) - renders["reference"]).max()), "uint8 levels")]
    for mode in ("bf16", "int8"):
        if mode not in predictors:
            results.append((f"precision={mode}: not run, {unsupported(mode)}", float("nan"), ""))
            continue
        error = float(np.mean(((renders[mode].astype(np.float64) - renders["fp32"]) / 255) ** 2))
        results += [(f"motionlab LivePortrait predictor, precision={mode}", seconds[mode], "s/frame"),
                    (f"  speed-up over LivePortrait's pipeline ({mode})", seconds["reference"] / seconds[mode], "x"),
                    (f"  PSNR of {mode} against fp32 renders (random weights with data statistics; the gate's floor: 35 dB)", 10 * np.log10(1 / max(error, 1e-12)), "dB")]
    if "int8" in predictors:
        results.append(("  int8: export + quantization of W's hourglass and mask convolution (once per run)", quantize_seconds, "s"))
    return results
