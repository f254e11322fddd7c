"""Lip-sync video inference: a template clip speaks new audio.

``LipSyncPipeline`` bounces the template's frames forward and backward for as long as the audio lasts,
crops each face by its landmarks, runs the U-Net in batches on (the frame's crop + its masked copy,
the audio context), pastes the result back (optionally feathered) and encodes H.264 with the audio
muxed. Decoding, the model and encoding run in overlapping threads. Frame count, bounce start, crop and paste
resampling follow the U-Net's :class:`~motionlab.models.lipsync.LipSyncConvention`: a SyncTalk_2D file with
``feather=0`` gives SyncTalk_2D's ``inference_328.py`` frames.

The checkpoint's :class:`~motionlab.tasks.lipsync_predictor.LipSyncPredictor` does what the task does around the U-Net
(audio features, mask, input assembly); SyncTalk_2D's plain state-dict files load with ``arch=lipsync_unet328_<mode>`` (``motionlab-lipsync``).
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from motionlab.data import toy_model_warning
from motionlab.data.audio import SAMPLE_RATE, load_wav
from motionlab.data.landmarks import read_lms
from motionlab.data.talking import CROP_SIZE, INNER_SIZE, box_region, crop_face, resize
from motionlab.data.video_io import ClipError, list_frame_files, read_image, write_video
from motionlab.inference.musetalk import EXTRA_MARGIN, musetalk_video
from motionlab.inference.precision import checked_psnr, unsupported
from motionlab.inference.sequence import build_sequence, reported, write_sequence
from motionlab.inference.wav2lip import RELEASE_PADS, wav2lip_video
from motionlab.models.lipsync import LipSyncConvention
from motionlab.models.lora import merge_lora
from motionlab.tasks import load_predictor
from motionlab.tasks.lipsync_predictor import LipSyncPredictor
from motionlab.tasks.musetalk_predictor import MuseTalkPredictor
from motionlab.tasks.wav2lip_predictor import Wav2LipPredictor
from motionlab.utils.errors import InputError, check_positive
from motionlab.utils.io import check_output_path, user_cache_dir

log = logging.getLogger(__name__)


# frames per network call when the command does not say (batch_size=null): the U-Net is fastest one frame at a time on a
# CPU (1.17x batch 8, a fraction of its memory: make bench ARGS="--only lipsync_batch"); Wav2Lip's small crops batch well
UNET_BATCH, WAV2LIP_BATCH, MUSETALK_BATCH = 1, 16, 8


def bounce_index(step: int, length: int) -> int:
    """Template frame at bounce position ``step``: 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... (no frame repeats at the turns).
    Output frame ``i`` shows position ``i + convention.template_start`` (SyncTalk_2D starts at 1)."""
    if length == 1:
        return 0
    period = 2 * (length - 1)
    position = step % period
    return position if position < length else period - position


def template_landmarks(folder: Path, count: int) -> tuple[np.ndarray, list[int]]:
    """(count, P, 2) landmarks of a template; frames whose ``.lms`` is missing or unreadable take the nearest valid
    frame's. Returns the landmarks and the indices that were filled in."""
    found: list[np.ndarray | None] = []
    for i in range(count):
        try:
            found.append(read_lms(folder / "landmarks" / f"{i}.lms"))
        except ClipError:
            found.append(None)
    valid = np.array([i for i, points in enumerate(found) if points is not None])
    if valid.size == 0:
        raise ClipError(f"{folder / 'landmarks'}: no readable .lms file for any of the {count} template frames")
    missing = [i for i, points in enumerate(found) if points is None]
    for i in missing:
        found[i] = found[int(valid[np.abs(valid - i).argmin()])]
    return np.stack(found), missing


def feather_mask(height: int, width: int, feather: int) -> np.ndarray:
    """(H, W, 1) float32 blend weights: 1 inside, ramping linearly to 0 over ``feather`` pixels at the border."""
    if feather <= 0:
        return np.ones((height, width, 1), np.float32)
    ramp_y = np.minimum(np.arange(height) + 1, np.arange(height)[::-1] + 1) / float(feather)
    ramp_x = np.minimum(np.arange(width) + 1, np.arange(width)[::-1] + 1) / float(feather)
    return np.clip(np.minimum.outer(ramp_y, ramp_x), 0.0, 1.0).astype(np.float32)[..., None]


def paste_back(frame: np.ndarray, generated: np.ndarray, box: tuple[int, int, int, int], feather: int,
               convention: LipSyncConvention) -> np.ndarray:
    """Put a generated (320, 320, 3) uint8 face back into ``frame`` at its crop ``box``.

    The inverse of :func:`crop_face`: the 320 face goes into the frame's 328 crop (keeping its 4-pixel border),
    which is resized to the box with the convention's interpolation and blended with ``feather`` pixels of linear
    ramp (0: SyncTalk_2D's hard paste); only the part of the box inside the frame is written.
    """
    x0, y0, x1, y1 = box
    region = box_region(frame, box)
    canvas = resize(region, CROP_SIZE, CROP_SIZE, convention.crop_resize).copy()
    margin = (CROP_SIZE - INNER_SIZE) // 2
    canvas[margin : margin + INNER_SIZE, margin : margin + INNER_SIZE] = generated
    pasted = resize(canvas, x1 - x0, y1 - y0, convention.paste_resize).astype(np.float32)
    alpha = feather_mask(y1 - y0, x1 - x0, feather)
    blended = np.round(region * (1.0 - alpha) + pasted * alpha).astype(np.uint8)
    h, w = frame.shape[:2]
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    out = frame.copy()
    out[iy0:iy1, ix0:ix1] = blended[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    return out


def _threaded(iterator: Iterator, depth: int = 4) -> Iterator:
    """Run ``iterator`` in a background thread, ``depth`` items ahead; its exceptions re-raise here. A consumer that
    stops early (closes this generator) stops the producer too, so no thread is left computing at exit."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(error)
            return
        put(done)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        if isinstance(iterator, Generator):
            worker.join()
            iterator.close()


class LipSyncPipeline:
    """Template folder + speech -> lip-synced video, through a :class:`LipSyncPredictor` (whose ``runner`` may be an
    onnxruntime session of the exported U-Net).

    Args:
        predictor: the U-Net's predictor (mode, audio encoder and mask come with it).
        batch_size: frames per U-Net call. feather: blend ramp in pixels (0: SyncTalk_2D's hard paste).
    """

    def __init__(self, predictor: LipSyncPredictor, batch_size: int = 8, feather: int = 16, fps: float = 25.0):
        self.predictor, self.batch_size, self.feather, self.fps = predictor, batch_size, feather, fps

    def _template_frames(self, template: Path, frames: int) -> Iterator[tuple[np.ndarray, np.ndarray, tuple]]:
        convention = self.predictor.convention
        files = list_frame_files(template / "full_body_img")
        if not files:
            raise ClipError(f"template {template}: full_body_img/ holds no frames (run motionlab-data talking)")
        landmarks, missing = template_landmarks(template, len(files))
        if missing:
            log.warning("template %s: %d frames without landmarks use the nearest valid ones (%s...)", template, len(missing), missing[:10])
        for step in range(frames):
            index = bounce_index(step + convention.template_start, len(files))
            image = read_image(files[index])
            crop, box = crop_face(image, landmarks[index], convention)
            yield image, crop, box

    def _batches(self, decoded: Iterator, features: torch.Tensor, frames: int) -> Iterator[tuple[list, np.ndarray]]:
        pending: list = []
        for step, (image, crop, box) in enumerate(decoded):
            pending.append((image, crop, box))
            if len(pending) == self.batch_size or step == frames - 1:
                audio = self.predictor.audio(features, range(step + 1 - len(pending), step + 1))
                yield pending[:], self.predictor(np.stack([p[1] for p in pending]), audio)
                pending.clear()

    def _composited(self, batches: Iterator, record: list | None = None) -> Iterator[np.ndarray]:
        for pending, generated in batches:
            for (image, _, box), face in zip(pending, generated):
                frame = paste_back(image, face, box, self.feather, self.predictor.convention)
                if record is not None:
                    record.append(_sequence_entry(image, frame, box, self.predictor.mask))
                yield frame

    def calibration_inputs(self, template: str | os.PathLike, wav: np.ndarray, features_path: str | os.PathLike | None,
                           count: int) -> list[dict[str, np.ndarray]]:
        """The U-Net's inputs of this run's first ``count`` output frames (at most as many as it has), one frame each:
        ``{"image": (1, 6, 320, 320), "audio": (1, ...)}`` float32, as :meth:`LipSyncPredictor.__call__` builds them."""
        from motionlab.data.lipsync import face_tensor
        from motionlab.tasks.lipsync_predictor import unet_input

        features, frames = self.predictor.speech_features(wav, self.fps, features_path)
        samples = []
        for step, (_, crop, _) in enumerate(self._template_frames(Path(template), min(count, frames))):
            faces = face_tensor(crop[None], self.predictor.convention)
            samples.append({"image": unet_input(faces, faces, self.predictor.mask).numpy(),
                            "audio": self.predictor.audio(features, [step]).numpy()})
        return samples

    def frames(self, template: str | os.PathLike, wav: np.ndarray, features_path: str | os.PathLike | None = None,
               record: list | None = None) -> tuple[int, Iterator[np.ndarray]]:
        """The number of output frames for 16 kHz ``wav`` and an iterator over them ((H, W, 3) uint8 RGB); with
        ``record``, each frame's downscaled template, result, crop and mask boxes are appended to it."""
        features, frames = self.predictor.speech_features(wav, self.fps, features_path)
        # decode + crop, the model, and paste-back each run in their own thread
        decoded = _threaded(self._template_frames(Path(template), frames), depth=2 * self.batch_size)
        batches = _threaded(self._batches(decoded, features, frames), depth=2)
        return frames, _threaded(self._composited(batches, record), depth=self.batch_size)

    def run(self, template: str | os.PathLike, audio_path: str | os.PathLike, out: str | os.PathLike, crf: int = 20,
            features_path: str | os.PathLike | None = None, sequence_out: str | os.PathLike | None = None,
            on_frame: Callable[[int, int], None] | None = None) -> dict:
        """Write ``out`` (H.264 at ``crf`` + AAC), and with ``sequence_out`` a sequence file of template | result with
        the crop and mask boxes as layers; ``on_frame(done, total)`` after each frame (progress; an exception from it
        stops the job with nothing written). Returns frames, seconds and the output path."""
        wav = load_wav(audio_path)
        record = [] if sequence_out is not None else None
        frames, composited = self.frames(template, wav, features_path, record)
        if on_frame is not None:
            composited = reported(composited, frames, on_frame)
        path = write_video(out, composited, fps=self.fps, crf=crf, audio=(wav, SAMPLE_RATE))
        if sequence_out is not None:
            templates, results, crops, masks = (np.stack(column) for column in zip(*record))
            write_sequence(sequence_out, build_sequence(templates[0], templates, results, self.fps,
                                                        {"crop_box": ("generated", crops), "mask_box": ("generated", masks)}))
        return {"out": str(path), "frames": frames, "audio_seconds": len(wav) / SAMPLE_RATE}


# sequence frames are kept at most this large on their longer side (a viewer's panel; memory stays small)
SEQUENCE_SIDE = 256


def _sequence_entry(image: np.ndarray, result: np.ndarray, box: tuple[int, int, int, int], mask: tuple[int, int, int, int]):
    """A frame's template and result downscaled to SEQUENCE_SIDE, the U-Net's 320 crop and its blanked rectangle
    (``mask``: x, y, width, height in the 320 crop) as corner pairs in the downscaled frame's pixels."""
    height, width = image.shape[:2]
    scale = min(1.0, SEQUENCE_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    x0, y0, x1, y1 = box
    unit = np.array([(x1 - x0) / CROP_SIZE, (y1 - y0) / CROP_SIZE])  # frame pixels per pixel of the 328 crop
    margin = (CROP_SIZE - INNER_SIZE) // 2
    mx, my, mw, mh = mask

    def corners(left: float, top: float, right: float, bottom: float) -> np.ndarray:
        return ((np.array([[x0, y0], [x0, y0]]) + np.array([[left, top], [right, bottom]]) * unit) * scale).astype(np.float32)

    return (np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)), np.asarray(Image.fromarray(result).resize(size, Image.BILINEAR)),
            corners(margin, margin, margin + INNER_SIZE, margin + INNER_SIZE),
            corners(margin + mx, margin + my, margin + mx + mw, margin + my + mh))


def lipsync_files(ckpt: str, audio: str, out: str, template: str | None = None, video: str | None = None, arch: str | None = None,
                  audio_encoder_ckpt: str | None = None, features: str | None = None, runtime: str = "torch", onnx: str | None = None,
                  batch_size: int | None = None, feather: int = 16, crf: int = 20, fps: float = 25.0, device: str = "cpu", lora_ckpt: str | None = None,
                  sequence_out: str | None = None, face_detector_ckpt: str | None = None, pads: tuple[int, int, int, int] = RELEASE_PADS,
                  box_smoothing: int = 5, on_frame: Callable[[int, int], None] | None = None, precision: str = "fp32",
                  precision_floor_db: float = 40.0, precision_force: bool = False, bbox_shift: int = 0, extra_margin: int = EXTRA_MARGIN,
                  parsing_mode: str = "jaw", blend: str = "normal", avatar: str | None = None) -> dict:
    """``motionlab-lipsync``: load the checkpoint's predictor (with ``lora_ckpt``, a speaker's LoRA adapter file trained on
    ``ckpt``, unmerged), pick the runtime, write ``out``. A lip-sync U-Net speaks through a ``template`` folder; Wav2Lip
    (``arch=wav2lip96``) through a ``video`` (or image), its faces found by S3FD (``face_detector_ckpt``) or dlib
    (:mod:`motionlab.inference.wav2lip`); MuseTalk (a release ``models/`` folder) through a ``video`` too, with its face
    rule, blending and avatar cache (:mod:`motionlab.inference.musetalk`). ``runtime=auto``: onnxruntime, except for
    MuseTalk and ``precision=bf16`` (PyTorch). ``precision=bf16`` / ``int8``: :func:`reduced_precision`."""
    from motionlab.inference.export import export_checked, onnx_source
    from motionlab.utils.onnx_files import OnnxRunner

    if runtime not in ("auto", "torch", "onnx"):
        raise InputError(f"runtime must be auto, torch or onnx, got {runtime!r}")
    if precision not in ("fp32", "bf16", "int8"):
        raise InputError(f"precision must be fp32, bf16 or int8, got {precision!r}")
    if precision == "int8" and runtime == "torch":
        raise InputError("precision=int8 runs the U-Net's quantized graph in onnxruntime: add runtime=onnx")
    if precision == "bf16" and runtime == "onnx":
        raise InputError("precision=bf16 runs the U-Net in PyTorch's bfloat16 autocast: add runtime=torch")
    check_output_path(out, "out", (".mp4",))
    if sequence_out is not None:
        check_output_path(sequence_out, "sequence_out", (".npz",))
    check_positive(batch_size=batch_size, fps=fps)
    if feather < 0 or not 0 <= crf <= 51:
        raise InputError(f"feather={feather}, crf={crf}: feather must be >= 0 and crf in [0, 51]")
    for name, value in (("template", template), ("video", video), ("audio", audio)):
        if value is not None and not Path(value).exists():
            raise FileNotFoundError(f"{name}={value} does not exist")
    predictor = load_predictor(ckpt, model=arch, device=device, lora=lora_ckpt, audio_encoder_ckpt=audio_encoder_ckpt)
    if not isinstance(predictor, (LipSyncPredictor, Wav2LipPredictor, MuseTalkPredictor)):
        raise InputError(f"{ckpt} is not a lip-sync checkpoint (its predictor is {type(predictor).__name__})")
    crops_itself = isinstance(predictor, (Wav2LipPredictor, MuseTalkPredictor))
    source = video if crops_itself else template
    if source is None or (template is not None and video is not None):
        wanted = "video=CLIP_OR_IMAGE (it crops the faces itself)" if crops_itself else "template=DIR (SyncTalk_2D layout)"
        raise InputError(f"{ckpt} ({predictor.net.model_info.name}) speaks through {wanted}; give that one")
    if runtime == "auto":
        # onnxruntime is the faster path for the U-Net and Wav2Lip on a CPU (docs/benchmarks.md); MuseTalk's 3.4 GB U-Net
        # exceeds ONNX's 2 GB protobuf and runs eagerly, as does bf16 autocast
        runtime = "torch" if isinstance(predictor, MuseTalkPredictor) or precision == "bf16" else "onnx"
    warning = toy_model_warning(predictor.trained_on, source)
    if warning is not None:
        log.warning(warning)
    if isinstance(predictor, MuseTalkPredictor):
        if precision == "int8" or sequence_out is not None or lora_ckpt is not None and runtime == "onnx":
            raise InputError("MuseTalk runs fp32 or bf16, without sequence_out=, and with a LoRA adapter only in runtime=torch")
        if runtime == "onnx":
            _musetalk_graphs(predictor, ckpt, onnx)
        summary = musetalk_video(predictor, video, audio, out, bbox_shift, extra_margin, parsing_mode, blend, avatar, batch_size or MUSETALK_BATCH,
                                 fps, crf, on_frame=on_frame, precision=precision, floor_db=precision_floor_db, force=precision_force)
        return {**summary, "runtime": runtime}
    if runtime == "onnx":
        # the graph is the U-Net with the adapters merged: an export per (base, adapter) pair
        key = onnx_source(ckpt, lora_ckpt)
        # by default in the user's cache (named by the weights' hash), never beside the user's checkpoint
        path = Path(onnx) if onnx else user_cache_dir() / "onnx" / f"{Path(ckpt).stem}.{key}.onnx"
        if not path.is_file():
            try:
                check_output_path(path, "onnx", (".onnx",))
            except InputError as error:
                if onnx:
                    raise
                raise InputError(f"{error} (the ONNX cache: set MOTIONLAB_CACHE_DIR to a writable folder, or give onnx=<file>)") from error
            net = merge_lora(copy.deepcopy(predictor.net)) if lora_ckpt is not None else predictor.net
            log.info("exported the U-Net to %s (reused by later runs); onnxruntime parity %s", path, export_checked(net, path, key)["parity"])
        else:
            log.info("runtime=onnx: the U-Net's graph from %s", path)
        # decoding, paste-back and encoding share the cores; a graph exported from other weights is refused
        predictor.runner = OnnxRunner(path, spinning=False, source=key)
    if precision != "fp32" and isinstance(predictor, Wav2LipPredictor):
        raise InputError(f"precision={precision} is the SyncTalk_2D-layout U-Net's; Wav2Lip runs fp32")
    if isinstance(predictor, Wav2LipPredictor):
        if sequence_out is not None:
            raise InputError("sequence_out= records a template's crops; it is not available for Wav2Lip yet")
        summary = wav2lip_video(predictor, video, audio, out, face_detector_ckpt, tuple(pads), box_smoothing, batch_size or WAV2LIP_BATCH, fps, crf,
                                on_frame=on_frame)
        return {**summary, "runtime": runtime}
    pipeline = LipSyncPipeline(predictor, batch_size=batch_size or UNET_BATCH, feather=feather, fps=fps)
    reduced = None
    if precision != "fp32":
        reduced = reduced_precision(pipeline, precision, path if runtime == "onnx" else None, key if runtime == "onnx" else None, template, audio,
                                    features, precision_floor_db, precision_force)
        log.info("precision=%s: %s", reduced["mode"], reduced["reason"])
    summary = pipeline.run(template, audio, out, crf=crf, features_path=features, sequence_out=sequence_out, on_frame=on_frame)
    return {**summary, "runtime": runtime, **({"precision": reduced} if reduced is not None else {})}


def _musetalk_graphs(predictor: MuseTalkPredictor, ckpt: str, onnx: str | None) -> None:
    """Run MuseTalk's U-Net and VAE decoder as onnxruntime graphs: exported (with parity checks) on first use into a
    folder of the user cache named by the release files' digests, or read from the folder ``onnx``."""
    from motionlab.inference.export import export_graph_folder, onnx_source
    from motionlab.utils.onnx_files import OnnxRunner

    key = onnx_source(ckpt)
    folder = Path(onnx) if onnx else user_cache_dir() / "onnx" / f"musetalk.{key}"
    if not folder.is_dir():
        report = export_graph_folder(predictor.net, folder, key)
        log.info("exported MuseTalk's U-Net and VAE decoder to %s (reused by later runs); onnxruntime parity %s", folder,
                 {name: graph["max_abs_difference"] for name, graph in report["graphs"].items()})
    predictor.unet_runner = OnnxRunner(folder / "musetalk_unet.onnx", spinning=False, source=key)
    predictor.decoder_runner = OnnxRunner(folder / "musetalk_vae_decoder.onnx", spinning=False, source=key)


# the run's own first frames the int8 graph is calibrated and checked on
CALIBRATION_FRAMES = 8


def reduced_precision(pipeline: "LipSyncPipeline", precision: str, fp32_path: Path | None, source: str | None, template: str, audio: str,
                      features: str | None, floor_db: float, force: bool) -> dict:
    """Run ``pipeline``'s U-Net in ``precision`` when this CPU computes it natively and the result is faithful:

    - ``int8``: the U-Net's ONNX graph (``fp32_path``) quantized by onnxruntime
      (:func:`motionlab.utils.onnx_files.quantize_int8`) on the run's first :data:`CALIBRATION_FRAMES` template crops
      and audio windows, cached beside the fp32 graph under the hash of those inputs;
    - ``bf16``: PyTorch's bfloat16 autocast on the channels-last network (oneDNN's bf16 kernels).

    int8 is compared with the fp32 graph it is quantized from (``pipeline``'s runner; equal to the network within the
    export's parity check, and 2-3x faster than the eager network), bf16 with the fp32 network, on those frames: the PSNR
    of the mouth region must reach ``floor_db`` (else an error, unless ``force``). Returns ``mode`` (the precision, or
    fp32 where the CPU lacks it), ``psnr_mouth_db`` and ``reason``."""
    import hashlib

    from motionlab.tasks.lipsync_predictor import MOUTH_REGION
    from motionlab.utils.machine import cpu_profile
    from motionlab.utils.onnx_files import OnnxRunner, quantize_int8

    reason = unsupported(precision)
    if reason is not None:
        return {"mode": "fp32", "psnr_mouth_db": None, "reason": reason}
    predictor = pipeline.predictor
    samples = pipeline.calibration_inputs(template, load_wav(audio), features, CALIBRATION_FRAMES)
    if precision == "int8":
        reference = [predictor.runner(*sample.values()) for sample in samples]
        # 7-bit weights where the CPU's int8 path saturates at 8 (AVX2 without VNNI): another graph, another name
        reduce_range = cpu_profile().int8_reduce_range
        digest = hashlib.sha256(b"".join(value.tobytes() for sample in samples for value in sample.values())).hexdigest()[:12]
        path = fp32_path.with_name(f"{fp32_path.stem}.int8{'-7bit' if reduce_range else ''}-{digest}.onnx")
        if not path.is_file():
            quantize_int8(fp32_path, path, samples, f"{source}.int8-{digest}", reduce_range)
            log.info("quantized the U-Net to int8 in %s (calibrated on this run's first %d frames)", path, len(samples))
        runner = OnnxRunner(path, spinning=False, source=f"{source}.int8-{digest}")
        candidate = [runner(*sample.values()) for sample in samples]
        where = f"graph {path.name}"
    else:
        with torch.inference_mode():
            reference = [predictor.net(torch.from_numpy(inputs["image"]), torch.from_numpy(inputs["audio"])).float().numpy() for inputs in samples]
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            candidate = [predictor.net(torch.from_numpy(inputs["image"]).contiguous(memory_format=torch.channels_last),
                                       torch.from_numpy(inputs["audio"])).float().numpy() for inputs in samples]
        where = "PyTorch bf16 autocast, channels-last"
    rows, cols = MOUTH_REGION
    psnr = checked_psnr(precision, [ref[:, :, rows, cols] for ref in reference], [out[:, :, rows, cols] for out in candidate], floor_db, force,
                        "the U-Net's mouth region")
    if precision == "int8":
        predictor.runner = runner
    else:
        predictor.autocast = torch.bfloat16
    return {"mode": precision, "psnr_mouth_db": psnr, "reason": f"mouth-region PSNR {psnr:.1f} dB against fp32 on this run's first {len(samples)} "
                                                                f"frames (floor {floor_db:g} dB{', forced' if psnr < floor_db else ''}); {where}"}
