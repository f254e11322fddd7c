"""Animation: keypoint models against FOMM's loop, descriptors, the metric suite, cross-domain driving."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    SHARED_REAL,
    _cache_dir,
    alternating_medians,
    benchmark,
    release_computation,
    release_layout,
    with_data_statistics,
)


@benchmark("metrics_suite")
def metrics_suite(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Frames/s of the full evaluation suite (FD, FVD, AED on EfficientNet-Lite0 at 224; temporal; colour; reconstruction) at 256x256."""
    from motionlab.metrics.suite import EvaluationSuite

    suite = EvaluationSuite(names=["fd_effnetlite0", "fvd_effnetlite0", "aed_effnetlite0", "temporal", "colour"])
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


def _reduced_precision_rows(release: Path, arch: str, race: dict) -> list[tuple[str, float, str]]:
    """motionlab-animate's ``precision=bf16`` and ``precision=int8`` on the frames of a :func:`_race_release_loop`, where
    the CPU computes each natively: frames/s of the same loop, the speed-up over the release's loop and over fp32,
    and the PSNR against the fp32 frames. int8 is set up as the command does it (:func:`precision_gate`: the network's
    int8 modules calibrated on the portrait and the first 4 driver frames); its set-up time is a row of its own."""
    from motionlab.inference.animate import CHECK_FRAMES, animate_frames, precision_gate
    from motionlab.inference.precision import unsupported
    from motionlab.tasks import load_predictor

    portrait_image, driver_frames, frames = race["portrait_image"], race["driver_frames"], len(race["driver_frames"])
    fp32 = torch.cat(race["ours"])
    rows = []
    for mode in ("bf16", "int8"):
        reason = unsupported(mode)
        if reason is not None:
            rows.append((f"precision={mode}: not run, {reason}", float("nan"), ""))
            continue
        predictor = race["predictor"]
        if mode == "int8":
            predictor = load_predictor(release, model=arch, fast_convolutions=True, detect_generated=False)
            started = time.perf_counter()
            precision_gate(predictor, "int8", portrait_image, driver_frames[:CHECK_FRAMES], 0.0, True)
            rows.append(("  int8 set-up: export + quantization, calibrated on the first 4 frames", time.perf_counter() - started, "s"))
        outputs: list[torch.Tensor] = []

        def loop(predictor=predictor, mode=mode, outputs=outputs) -> float:
            started = time.perf_counter()
            with torch.inference_mode():
                outputs[:] = [batch["generated"] for batch in animate_frames(predictor, portrait_image, driver_frames, predictor.batch_size, mode)]
            return frames / (time.perf_counter() - started)

        rates = alternating_medians({"fp32": race["motionlab_loop"], mode: loop})
        mse = float(((torch.cat(outputs) - fp32) ** 2).mean())
        rows += [(f"motionlab path, precision={mode}", rates[mode], "frames/s"),
                 (f"  speed-up over the release's loop ({mode})", rates[mode] / race["loops"]["reference"], "x"),
                 (f"  speed-up over motionlab fp32 (fp32 at {rates['fp32']:.2f} frames/s beside it)", rates[mode] / rates["fp32"], "x"),
                 (f"  PSNR of {mode} against fp32 frames", 10 * np.log10(1 / max(mse, 1e-12)), "dB")]
    return rows


def _statistics_frames(portrait: Path, driver: Path, frames: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """The portrait and the first driver frames at 256 px, which a random network's BatchNorm statistics are taken
    from (:func:`benchmarks.common.with_data_statistics`)."""
    from motionlab.data.datasets import frames_to_tensor
    from motionlab.data.video_io import open_clip, read_image

    return frames_to_tensor(read_image(portrait)[None], 256), frames_to_tensor(open_clip(driver).get(range(frames)), 256)


def _race_release_loop(release: Path, arch: str, portrait: Path, driver: Path, frames: int, reference_animation) -> dict:
    """A release's own animation loop (``reference_animation(source, driving) -> [(S, S, 3) predictions]``) against
    motionlab's keypoint path on the same decoded, prepared frames, alternating, medians of 3; the frames' largest
    difference. Returns the rates, the difference, and the predictor, inputs and frames for further runs."""
    from motionlab.data.video_io import open_clip, read_image
    from motionlab.inference.animate import animate_frames
    from motionlab.tasks import load_predictor

    predictor = load_predictor(release, model=arch, fast_convolutions=True, detect_generated=False)
    portrait_image, driver_frames = read_image(portrait), open_clip(driver).get(range(frames))
    (source, _), (driving, _) = predictor.prepare_portrait(portrait_image), predictor.prepare_driver(driver_frames)
    ours: list[torch.Tensor] = []
    theirs: list[np.ndarray] = []

    def reference_loop() -> float:
        started = time.perf_counter()
        with release_computation():
            theirs[:] = reference_animation(release_layout(source), release_layout(driving))
        return frames / (time.perf_counter() - started)

    def motionlab_loop() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            ours[:] = [batch["generated"] for batch in animate_frames(predictor, portrait_image, driver_frames, predictor.batch_size)]
        return frames / (time.perf_counter() - started)

    motionlab_loop()  # the convolutions choose their algorithms on the first frames (once per process and shape)
    loops = alternating_medians({"reference": reference_loop, "motionlab": motionlab_loop})
    difference = float((torch.cat(ours) - torch.from_numpy(np.stack(theirs)).permute(0, 3, 1, 2)).abs().max())
    return {"loops": loops, "difference": difference, "predictor": predictor, "ours": ours, "portrait_image": portrait_image,
            "driver_frames": driver_frames, "motionlab_loop": motionlab_loop}


@benchmark("keypoint_animate")
def keypoint_animate(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """The keypoint animate path on a FOMM release file (vox-256, random weights: the architecture is what is timed):
    FOMM's own demo loop (benchmarks/fomm_reference.py: batch 1, the source re-encoded every frame) against
    ``motionlab-animate`` (portrait state once, batch 1 at 256 px, Winograd / FFT convolutions where faster), alternating,
    median of 3: the loop alone on decoded frames (steady state), and the whole command (read, resize, animate, encode;
    model load included on both sides). Then the opt-in bf16 and int8 modes, where the CPU computes them natively."""
    from benchmarks.fomm_reference import fomm_demo, fomm_make_animation
    from motionlab.inference.animate import animate_files
    from motionlab.models import create_model
    from motionlab.models.fomm import save_fomm_checkpoint

    cache_root = Path(_cache_dir()) / "keypoint-animate-bench"
    cache_root.mkdir(parents=True, exist_ok=True)
    portrait, driver, inputs = _animate_inputs(cache_root)
    torch.manual_seed(0)
    random = create_model("fomm_vox256")
    source, driving = _statistics_frames(portrait, driver)
    with_data_statistics(random, lambda: fomm_make_animation(random.kp_detector, random.generator, source, driving))
    release = save_fomm_checkpoint(random, cache_root / "vox-random.pth.tar")
    frames = max(4, args.steps // 2)

    reference = create_model("fomm_vox256", ckpt=release).eval()
    race = _race_release_loop(release, "fomm_vox256", portrait, driver, frames,
                              lambda source, driving: fomm_make_animation(reference.kp_detector, reference.generator, source, driving))
    loops, difference = race["loops"], race["difference"]

    def reference_command() -> float:
        started = time.perf_counter()
        net = create_model("fomm_vox256", ckpt=release).eval()
        with release_computation():
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
    return results + _reduced_precision_rows(release, "fomm_vox256", race)


@benchmark("tpsmm_animate")
def tpsmm_animate(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """The TPSMM animate path on a release-layout vox file (random weights: the architecture is what is timed): the
    release demo's loop (benchmarks/tpsmm_reference.py: batch 1, the source re-encoded every frame) against
    motionlab's predictor (portrait state once), in the demo's relative mode, alternating, median of 3, on the same
    decoded frames; then how far their frames differ."""
    from benchmarks.tpsmm_reference import tpsmm_make_animation
    from motionlab.models import create_model

    cache_root = Path(_cache_dir()) / "tpsmm-animate-bench"
    cache_root.mkdir(parents=True, exist_ok=True)
    portrait, driver, inputs = _animate_inputs(cache_root)
    torch.manual_seed(0)
    random = create_model("tpsmm_vox256")
    source, driving = _statistics_frames(portrait, driver)
    with_data_statistics(random, lambda: tpsmm_make_animation(random, source, driving, "relative"))
    release = cache_root / "vox-random.pth.tar"
    torch.save({part: getattr(random, part).state_dict() for part in ("kp_detector", "dense_motion_network", "inpainting_network",
                                                                       "avd_network", "bg_predictor")}, release)
    frames = max(4, args.steps // 2)
    reference = create_model("tpsmm_vox256", ckpt=release).eval()
    race = _race_release_loop(release, "tpsmm_vox256", portrait, driver, frames,
                              lambda source, driving: tpsmm_make_animation(reference, source, driving, "relative"))
    loops, difference = race["loops"], race["difference"]
    return [(f"inputs: {inputs}, {frames} frames at 256x256, {torch.get_num_threads()} threads", float(frames), "frames"),
            ("TPSMM demo loop (relative mode, batch 1, eager)", loops["reference"], "frames/s"),
            ("motionlab TPSMM path, same frames", loops["motionlab"], "frames/s"),
            ("  speed-up over TPSMM's loop (steady state)", loops["motionlab"] / loops["reference"], "x"),
            ("  max abs difference from TPSMM's loop (1e6 x)", difference * 1e6, "1e-6"), *_reduced_precision_rows(release, "tpsmm_vox256", race)]


@benchmark("cross_domain")
def cross_domain(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Landmarks -> descriptors through the adapters (normalisation and windows included), and the whole landmark-driven
    animate loop (landmarks -> adapter -> descriptor_quick-sized FOMM at 64x64), side by side; dlib on a real frame when
    ../shared/data/real is present."""
    from motionlab.data.landmarks import read_landmarks
    from motionlab.data.synthetic import ToyWorldSpec, ensure_toy_world
    from motionlab.models import create_model
    from motionlab.tasks.adapter_predictor import LandmarkDrivenPredictor

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


@benchmark("random_weight_fidelity")
def random_weight_fidelity(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """What a reduced precision's PSNR on random weights can say. For FOMM, TPSMM (vox-256) and the SyncTalk_2D-layout
    U-Net, on real frames (the lip-sync template's mouth region): the render's spread with PyTorch's initialisation and
    with data statistics (:func:`benchmarks.common.with_data_statistics`), and, with data statistics, the fp32 render's
    PSNR when half a uint8 level of noise is added to the inputs: a precision whose PSNR lies above that is below the
    8-bit inputs' own rounding; a network whose fp32 render moves that much under such noise (a random U-Net)
    cannot rank precisions at all."""
    from benchmarks.fomm_reference import fomm_make_animation
    from benchmarks.lipsync import _stand_in_unet
    from benchmarks.tpsmm_reference import tpsmm_make_animation
    from motionlab.data.audio import load_wav
    from motionlab.inference.lipsync import CALIBRATION_FRAMES, LipSyncPipeline
    from motionlab.models import create_model
    from motionlab.tasks.lipsync_predictor import MOUTH_REGION

    portrait, driver, inputs = _animate_inputs(Path(_cache_dir()) / "keypoint-animate-bench")
    source, driving = _statistics_frames(portrait, driver)
    noise = torch.Generator().manual_seed(0)

    def noisy(images: torch.Tensor) -> torch.Tensor:
        return images + torch.randn(images.shape, generator=noise) * (0.5 / 255)

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(1 / max(float(np.mean((a - b) ** 2)), 1e-12)))

    _, template, wav_path, lipsync = _stand_in_unet(args, "speech_fidelity.wav")
    samples = LipSyncPipeline(lipsync, batch_size=1).calibration_inputs(template, load_wav(wav_path), None, CALIBRATION_FRAMES)
    rows, cols = MOUTH_REGION

    def frames(perturb: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return (noisy(source), noisy(driving)) if perturb else (source, driving)

    def lipsync_render(perturb: bool = False) -> np.ndarray:
        return np.concatenate([lipsync.net(noisy(torch.from_numpy(s["image"])) if perturb else torch.from_numpy(s["image"]),
                                           torch.from_numpy(s["audio"])).numpy()[:, :, rows, cols] for s in samples])

    torch.manual_seed(0)
    fomm, tpsmm = create_model("fomm_vox256").eval(), create_model("tpsmm_vox256").eval()
    # name: (network, render(perturb) -> frames, the convolution before its output sigmoid where its logits need a scale)
    networks = {
        "FOMM vox-256": (fomm, lambda perturb=False: np.stack(fomm_make_animation(fomm.kp_detector, fomm.generator, *frames(perturb))), None),
        "TPSMM vox-256": (tpsmm, lambda perturb=False: np.stack(tpsmm_make_animation(tpsmm, *frames(perturb))), None),
        "SyncTalk_2D U-Net (mouth region)": (lipsync.net, lipsync_render, lipsync.net.outc.conv),
    }
    results = [(f"inputs: {inputs}, {len(driving)} driver frames; the lip-sync template's first {len(samples)} frames", float(len(driving)), "frames")]
    with torch.no_grad():
        for name, (net, render, logits) in networks.items():
            plain = render()
            with_data_statistics(net, render, logits)
            rendered = render()
            perturbed = render(True)
            results += [(f"{name}: render spread (std x 1000), PyTorch's initialisation (values {plain.min():.3f} to {plain.max():.3f})",
                         1000 * float(plain.std()), "1e-3"),
                        (f"  with data statistics (values {rendered.min():.3f} to {rendered.max():.3f})", 1000 * float(rendered.std()), "1e-3"),
                        ("  fp32 PSNR with half a uint8 level of input noise", psnr(rendered, perturbed), "dB")]
    return results
