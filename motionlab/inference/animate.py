"""Animate a portrait with a driver clip: any animation checkpoint (Animator, descriptor model, FOMM release file)
through the predictor its task defines, or a descriptor model driven by another domain's landmarks through an
adapter checkpoint."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from motionlab.data import toy_model_warning
from motionlab.data.crops import letterbox, unletterbox
from motionlab.data.datasets import frames_to_tensor
from motionlab.data.images import side_by_side, to_uint8
from motionlab.data.landmarks import LandmarkSequence, read_landmarks
from motionlab.data.toy_human import human_style_for, render_human
from motionlab.data.video_io import (
    VIDEO_EXTENSIONS,
    VideoFileClip,
    input_limits,
    open_clip,
    read_image,
    write_gif,
    write_video,
)
from motionlab.geometry import Keypoints
from motionlab.inference.precision import checked_psnr, unsupported
from motionlab.inference.sequence import build_sequence, draw_keypoints, write_sequence
from motionlab.models.bf16 import keep_float32
from motionlab.tasks import AnimationPredictor, load_predictor
from motionlab.tasks.adapter_predictor import LandmarkDrivenPredictor, load_adapter_predictor
from motionlab.utils.errors import InputError, check_positive
from motionlab.utils.io import check_output_path

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"precision={precision!r}: expected one of {PRECISIONS} (bf16: bfloat16 autocast; int8: the network's heavy "
                         "parts as onnxruntime int8 graphs; both for processors that compute them natively)")


def _as_float32(value):
    if isinstance(value, torch.Tensor):
        return value.float()
    return value.map(torch.Tensor.float) if isinstance(value, Keypoints) else value


def animate_frames(predictor: AnimationPredictor, portrait: np.ndarray, frames: np.ndarray | Iterable[np.ndarray], batch_size: int = 16,
                   precision: str = "fp32", driver_scan: dict | None = None):
    """Yield the predictor's outputs for (T, H, W, 3) uint8 ``frames`` (an array, or an iterable of such batches as a
    driver is decoded) in batches, with the ``source`` and ``driver`` tensors (N, 3, S, S) they were computed from
    (S: the network's input size; the predictor prepares them, e.g. crops a face). ``precision="bf16"`` runs the
    networks under bfloat16 autocast (fast only where the processor computes in bf16 natively: AVX512-BF16 / AMX, or a
    GPU), but for the network's :attr:`~motionlab.models.ModelInfo.float32_modules`; the outputs come back as float32. A predictor that looks at the whole driver first
    (:attr:`~motionlab.tasks.AnimationPredictor.needs_driver_scan`) gets ``driver_scan``, or scans an array itself."""
    _check_precision(precision)
    info = getattr(predictor.net, "model_info", None)
    if precision == "bf16" and info is not None and info.float32_modules is not None:
        keep_float32(predictor.net, info.float32_modules(predictor.net))
    if predictor.needs_driver_scan and driver_scan is None:
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"{type(predictor).__name__} scans the whole driver first: pass driver_scan= with streamed frames")
        driver_scan = predictor.scan_driver([frames])
    batches = (frames[start : start + batch_size] for start in range(0, len(frames), batch_size)) if isinstance(frames, np.ndarray) else frames
    source, portrait_context = predictor.prepare_portrait(portrait)
    source = source.to(predictor.device)
    initial = None
    for batch in batches:
        driver, driver_context = predictor.prepare_driver(batch, driver_scan)
        driver = driver.to(predictor.device)
        initial = driver[:1] if initial is None else initial
        # int8 is in the network itself (precision_gate has replaced its modules); bf16 is autocast around it, with the
        # network's float32_modules computing in float32 inside
        with torch.autocast(predictor.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            outputs = predictor(source, driver, initial, {**portrait_context, **driver_context})
        yield {"portrait": source.expand(driver.shape[0], -1, -1, -1), "driver": driver, "portrait_context": portrait_context,
               **{key: _as_float32(value) for key, value in outputs.items()}}


# the driver frames a reduced precision is calibrated (int8) and checked on before a run
CHECK_FRAMES = 4


def precision_gate(predictor: AnimationPredictor, precision: str, portrait: np.ndarray, frames: np.ndarray, floor_db: float, force: bool) -> float:
    """Switch ``predictor`` to ``precision`` and return the PSNR (dB) of its animated ``frames`` against fp32's (the
    networks' outputs in [0, 1], before paste-back); an error below ``floor_db`` unless ``force``.

    bf16 is autocast around each call (:func:`animate_frames`). int8 replaces the network's
    :attr:`~motionlab.models.ModelInfo.int8_modules` in place by onnxruntime int8 graphs
    (:func:`motionlab.models.int8.quantize_modules`), calibrated on what they receive while the fp32 reference of these
    frames is computed: the portrait and the first driver frames of this run."""
    scan = predictor.scan_driver([frames]) if predictor.needs_driver_scan else None

    def animated(mode: str) -> np.ndarray:
        return torch.cat([batch["generated"] for batch in animate_frames(predictor, portrait, frames, len(frames), mode, scan)]).cpu().numpy()

    if precision == "int8":
        from motionlab.models.int8 import quantize_modules

        info = predictor.net.model_info
        if info.int8_modules is None:
            raise InputError(f"precision=int8: {info.name} lists no modules to quantize (int8 serves FOMM, TPSMM and LivePortrait); "
                             "use precision=bf16 or fp32")
        reference: list[np.ndarray] = []
        quantize_modules(predictor.net, info.int8_modules(predictor.net), lambda: reference.append(animated("fp32")), f"{info.name}.int8")
        return checked_psnr("int8", reference, [animated("fp32")], floor_db, force, "the animated frames")
    return checked_psnr(precision, [animated("fp32")], [animated(precision)], floor_db, force, "the animated frames")


def decoded_batches(clip, count: int, batch_size: int) -> Iterator[np.ndarray]:
    """The first ``count`` frames of ``clip``, ``batch_size`` at a time, decoded as they are needed: a driver is never
    held whole."""
    frames = clip.stream(count)
    while batch := list(itertools.islice(frames, batch_size)):
        yield np.stack(batch)


def _upscaled(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, h, w, 3) uint8 frames resized to (size, size) with nearest neighbours (pixels stay visible)."""
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.NEAREST)) for f in frames])


def driver_views(driver: str | os.PathLike, landmarks: LandmarkSequence, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, S, S, 3) uint8 views of a landmark driver and its landmarks (T, P, 2) in their pixels: its frames when it
    is a video, the human-style render of a toy clip's human performance, a blank canvas for landmark files."""
    path = Path(driver)
    count = len(landmarks)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        frames = open_clip(path).get(range(count))
        height, width = frames.shape[1:3]
    elif path.is_dir() and (path / "motion.npz").is_file() and landmarks.frame_size is not None:
        style = human_style_for(path.name.removesuffix("_video"))
        height, width = landmarks.frame_size
        frames = np.stack([render_human(points, style, width) for points in landmarks.points])
    else:
        height, width = landmarks.frame_size or (np.nanmax(landmarks.points[..., 1]) * 1.1, np.nanmax(landmarks.points[..., 0]) * 1.1)
        frames = np.full((count, size, size, 3), 235, np.uint8)
    views = side_by_side(frames_to_tensor(frames, size)) if frames.shape[1:3] != (size, size) else frames
    scale = np.array([size / width, size / height])
    return views, (landmarks.points + 0.5) * scale - 0.5


def animate_with_landmarks(predictor: LandmarkDrivenPredictor, portrait: np.ndarray, landmarks: LandmarkSequence, batch_size: int = 16,
                           reference: str = "neutral"):
    """Yield ``generated`` / ``generated_keypoints`` / ``source`` batches of a landmark-driven animation, its motion
    measured from the driver frame ``reference`` picks (:meth:`LandmarkSequence.reference_frame`)."""
    source = frames_to_tensor(portrait[None], predictor.image_size).to(predictor.device)
    motion = predictor.motion(landmarks.points, source, landmarks.reference_frame(reference))
    for start in range(0, len(landmarks), batch_size):
        part = {key: value[start : start + batch_size] for key, value in motion.items()}
        yield {"portrait": source.expand(part["value"].shape[0], -1, -1, -1), **predictor(source, part)}


def _warn_if_variable_rate(clip, fps: float | None) -> None:
    """Frames are generated one per driver frame and written at one rate: say so when the driver's frames were not
    evenly spaced (a phone video's variable frame rate), since its timing then changes."""
    if not isinstance(clip, VideoFileClip):
        return
    shortest, longest = clip.frame_interval_range()
    if longest > 1.5 * shortest:
        log.warning("driver %s has a variable frame rate (%.0f to %.0f ms between frames); its %d frames are written "
                    "evenly at %.3g fps, so the timing differs (convert it to a constant rate to keep it)",
                    clip.path, shortest * 1000, longest * 1000, len(clip), fps or clip.fps)


def animate_files(
    ckpt: str | os.PathLike,
    portrait: str | os.PathLike,
    driver: str | os.PathLike,
    out: str | os.PathLike,
    gif: str | os.PathLike | None = None,
    fps: float | None = None,
    crf: int = 20,
    max_frames: int | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    side_by_side_out: str | os.PathLike | None = None,
    arch: str | None = None,
    adapter_ckpt: str | os.PathLike | None = None,
    landmark_reference: str = "neutral",
    lora_ckpt: str | os.PathLike | None = None,
    sequence_out: str | os.PathLike | None = None,
    on_frame: Callable[[int, int], None] | None = None,
    predictor: dict | None = None,
    fast_convolutions: bool = True,
    precision: str = "fp32",
    size: int | None = None,
    precision_floor_db: float = 35.0,
    precision_force: bool = False,
) -> dict:
    """Animate ``portrait`` (an image; a video for predictors that animate one, LivePortrait's video-to-video) with
    ``driver`` and write ``out`` (mp4).

    Without ``adapter_ckpt`` the driver is a video or frame folder fed to the checkpoint's predictor; ``arch`` names the
    architecture of a published file (``fomm_vox256`` ...). With ``adapter_ckpt`` (an adapter checkpoint trained for the
    descriptor checkpoint ``ckpt``) the driver is any landmark source (:func:`motionlab.data.landmarks.read_landmarks`:
    a video through dlib, ``.npy`` / ``.lms``, a toy clip) and drives the descriptor model's generator through the
    adapter, its motion measured from the driver frame ``landmark_reference`` picks (``"neutral"``: lips closed, eyes
    open, a typical head pose; ``"first"``). ``gif`` / ``side_by_side_out`` write portrait | driver | result side by side (GIF / mp4), with the
    keypoints (or the driver's landmarks) drawn. ``sequence_out`` writes the frames at the network's size with the
    keypoints / landmarks as layers and per-frame traces, for the viewer (:mod:`motionlab.inference.sequence`).
    ``lora_ckpt`` adds a LoRA adapter file trained on ``ckpt`` (unmerged). ``predictor`` holds options of the checkpoint's
    predictor (its family's :attr:`~motionlab.tasks.Predictor.options`: relative motion for keypoint models; stitching,
    retargeting, crop and paste-back for LivePortrait); a ``None`` value keeps the family's default, an option of
    another family is an error. ``batch_size`` (driver frames per forward pass) defaults to the
    predictor's choice. ``fast_convolutions`` lets the network's convolutions use Winograd / FFT where that is faster on
    the CPU (:mod:`motionlab.models.fast_conv`); ``precision="bf16"`` (autocast) and ``"int8"`` (the network's heavy
    parts as onnxruntime int8 graphs calibrated on this run's portrait and first driver frames) are opt-in reduced
    precisions, used where the CPU computes them natively and the first driver frames' results reach
    ``precision_floor_db`` PSNR against fp32's (:func:`precision_gate`; ``precision_force`` runs them below). The video keeps the
    portrait's size and aspect (the predictor's :meth:`finish`) unless
    ``size`` sets its longer side. ``on_frame(done, total)`` is called
    after each generated frame (progress); an exception from it stops the job with nothing written. Returns a summary.
    """
    check_output_path(out, "out", (".mp4",))
    for key, value, suffix in (("gif", gif, ".gif"), ("side_by_side_out", side_by_side_out, ".mp4"), ("sequence_out", sequence_out, ".npz")):
        if value is not None:
            check_output_path(value, key, (suffix,))
    check_positive(batch_size=batch_size, fps=fps, max_frames=max_frames, size=size)
    _check_precision(precision)
    psnr = None
    if precision == "int8" and torch.device(device).type != "cpu":
        raise InputError(f"precision=int8 runs onnxruntime's CPU int8 kernels; with device={device} use precision=bf16")
    if precision != "fp32" and torch.device(device).type == "cpu":
        reason = unsupported(precision)
        if reason is not None:
            log.warning("precision=%s: %s", precision, reason)
            precision = "fp32"
    # Frames stream from the decoder through the network into the encoder; only the side-by-side views (asked for
    # with gif / side_by_side_out) and the sequence's frames (sequence_out) are kept until the end.
    keep_views = gif is not None or side_by_side_out is not None
    triptychs: list[np.ndarray] = []
    kept: dict[str, list[np.ndarray]] = {"portrait": [], "driver": [], "generated": [], "driver_keypoints": [],
                                         "generated_keypoints": [], "driver_landmarks": [], "adapted_keypoints": []}
    if adapter_ckpt is not None:
        if lora_ckpt is not None:
            raise InputError("lora_ckpt= applies to the animation network of ckpt; a landmark adapter run (adapter_ckpt=) takes none")
        predictor = load_adapter_predictor(ckpt, adapter_ckpt, device)
        landmarks = read_landmarks(driver, max_frames=max_frames)
        # panels of at least 256 px: 64 px generators give results too small to read the landmarks on
        panel = max(predictor.image_size, 256)
        views, view_points = driver_views(driver, landmarks, panel) if keep_views else (None, None)
        if sequence_out is not None:
            frames, points = driver_views(driver, landmarks, predictor.image_size)
            kept["driver"], kept["driver_landmarks"] = list(frames), list(points)
        rate = fps or landmarks.fps or 25.0
        total = len(landmarks)

        # the whole portrait at its aspect, and the result back at its size (a cartoon: no face for dlib to crop on)
        square, box = letterbox(read_image(portrait, max_side=input_limits().max_portrait_side), predictor.image_size)

        def generated_frames() -> Iterator[np.ndarray]:
            for batch in animate_with_landmarks(predictor, square, landmarks, batch_size or 16, landmark_reference):
                generated = side_by_side(batch["generated"])
                adapted = batch["generated_keypoints"].to_pixels().value.cpu().numpy()
                if keep_views:
                    drawn = draw_keypoints(_upscaled(generated, panel), (adapted + 0.5) * panel / predictor.image_size - 0.5, radius=2)
                    done = len(triptychs)
                    shown = draw_keypoints(views[done : done + len(drawn)], view_points[done : done + len(drawn)], radius=1)
                    triptychs.extend(np.concatenate([shown, _upscaled(side_by_side(batch["portrait"]), panel), drawn], axis=-2))
                if sequence_out is not None:
                    kept["portrait"][:1] = side_by_side(batch["portrait"][:1])
                    kept["generated"].extend(generated)
                    kept["adapted_keypoints"].extend(adapted)
                yield from (unletterbox(frame, box) for frame in generated)
    else:
        # keypoint models detect keypoints on their output only for what draws or records them
        chosen = {key: value for key, value in (predictor or {}).items() if value is not None}
        predictor = load_predictor(ckpt, model=arch, device=device, lora=lora_ckpt, fast_convolutions=fast_convolutions, user_options=chosen,
                                   detect_generated=keep_views or sequence_out is not None)
        if not isinstance(predictor, AnimationPredictor):
            raise InputError(f"{ckpt} is not an animation checkpoint (its predictor is {type(predictor).__name__}); see motionlab-lipsync")
        warning = toy_model_warning(predictor.trained_on, portrait)
        if warning is not None:
            log.warning(warning)
        clip = open_clip(driver)
        _warn_if_variable_rate(clip, fps)
        source_clip = open_clip(portrait) if Path(portrait).suffix.lower() in VIDEO_EXTENSIONS else None
        if source_clip is not None and not predictor.supports_source_video:
            raise InputError(f"portrait={portrait} is a video; {predictor.net.model_info.name} animates a still portrait "
                             "(video-to-video, a video as the source, is LivePortrait's): give an image")
        count = len(clip) if source_clip is None else min(len(clip), len(source_clip))
        count = count if max_frames is None else min(count, max_frames)
        if precision == "int8" and source_clip is not None:
            raise InputError("precision=int8 is calibrated on a still portrait and the first driver frames; a video source "
                             f"({portrait}) runs in fp32 or bf16")
        if precision != "fp32" and source_clip is None:
            psnr = precision_gate(predictor, precision, read_image(portrait, max_side=input_limits().max_portrait_side),
                                  next(decoded_batches(clip, min(count, CHECK_FRAMES), CHECK_FRAMES)), precision_floor_db, precision_force)
            log.info("precision=%s: animated frames %.1f dB from fp32's on the first %d driver frames (floor %g dB)", precision, psnr,
                     min(count, CHECK_FRAMES), precision_floor_db)
        # video-to-video keeps the source's timing, as the release writes it at the source's rate
        rate = fps or (source_clip.fps if source_clip is not None else None) or clip.fps or 25.0
        total = count

        def record(batch: dict, generated: np.ndarray) -> None:
            """Keep what the side-by-side views and the sequence file need of a batch."""
            # panels at the generated size (a network may upsample: LivePortrait renders 512 from 256)
            panel = generated.shape[1]
            sources, drivers = _upscaled(side_by_side(batch["portrait"]), panel), _upscaled(side_by_side(batch["driver"]), panel)
            points = {key: batch[key].to_pixels().value.cpu().numpy() for key in ("driver_keypoints", "generated_keypoints") if key in batch}
            if "driver_keypoints" in points:
                points["driver_keypoints"] = (points["driver_keypoints"] + 0.5) * panel / batch["driver"].shape[-1] - 0.5
            if keep_views:
                drawn_drivers, drawn = drivers, generated
                if points:
                    drawn_drivers = draw_keypoints(drivers, points["driver_keypoints"])
                    drawn = draw_keypoints(generated, points["generated_keypoints"])
                triptychs.extend(np.concatenate([sources, drawn_drivers, drawn], axis=-2))
            if sequence_out is not None:
                kept["portrait"][:1] = sources[:1]
                kept["driver"].extend(drivers)
                kept["generated"].extend(generated)
                for key, value in points.items():
                    kept[key].extend(value)

        def generated_frames() -> Iterator[np.ndarray]:
            # driver frames per forward pass (size= is the written video's side)
            chunk = batch_size or predictor.batch_size
            # a predictor that crops the driver with one box for the whole clip sees every frame first (decoded twice)
            scan = predictor.scan_driver(decoded_batches(clip, count, chunk)) if predictor.needs_driver_scan else None
            if source_clip is not None:
                # two passes: the motion of every frame pair first (it is smoothed through time), then the rendering
                plan = predictor.plan_source_video(decoded_batches(source_clip, count, chunk), decoded_batches(clip, count, chunk), scan)
                start = 0
                for frames, driver_frames in zip(decoded_batches(source_clip, count, chunk), decoded_batches(clip, count, chunk)):
                    batch = predictor.render_source_video(frames, plan, start)
                    batch["driver"] = frames_to_tensor(driver_frames, predictor.image_size)
                    generated = to_uint8(batch["generated"], predictor.quantize)
                    record(batch, generated)
                    yield from predictor.finish_source_video(generated, batch["crops"])
                    start += len(frames)
                return
            batches = decoded_batches(clip, count, chunk)
            for batch in animate_frames(predictor, read_image(portrait, max_side=input_limits().max_portrait_side), batches, precision=precision,
                                        driver_scan=scan):
                generated = to_uint8(batch["generated"], predictor.quantize)
                record(batch, generated)
                yield from predictor.finish(generated, batch["portrait_context"])

    written = 0

    def counted(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal written
        for frame in frames:
            if size is not None and max(frame.shape[:2]) != size:  # the longer side at size, the aspect kept
                scale = size / max(frame.shape[:2])
                shape = (max(2, round(frame.shape[1] * scale)), max(2, round(frame.shape[0] * scale)))
                frame = np.asarray(Image.fromarray(frame).resize(shape, Image.LANCZOS if scale < 1 else Image.BICUBIC))
            written += 1
            if on_frame is not None:
                on_frame(written, total)
            yield frame

    with torch.inference_mode():
        write_video(out, counted(generated_frames()), fps=rate, crf=crf)
    if gif is not None:
        write_gif(gif, triptychs, fps=rate)
    if side_by_side_out is not None:
        write_video(side_by_side_out, triptychs, fps=rate, crf=crf)
    if sequence_out is not None:
        panels = {"driver_keypoints": "driver", "generated_keypoints": "generated", "driver_landmarks": "driver", "adapted_keypoints": "generated"}
        layers = {name: (panel, np.stack(kept[name])) for name, panel in panels.items() if kept[name]}
        write_sequence(sequence_out, build_sequence(kept["portrait"][0], np.stack(kept["driver"][:written]), np.stack(kept["generated"]), rate, layers))
    return {"frames": written, "fps": rate, "out": str(Path(out)), "gif": str(gif) if gif else None, "precision": precision, "precision_psnr_db": psnr,
            "sequence": str(sequence_out) if sequence_out else None, "crop_model": getattr(predictor, "crop_model", None)}
