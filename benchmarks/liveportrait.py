"""LivePortrait: each module in PyTorch and onnxruntime, and its animate loop."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import _cache_dir, benchmark, native_bf16


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
