"""Lip-sync video inference: a template clip speaks new audio.

``LipSyncPipeline`` bounces the template's frames forward and backward for as long as the audio lasts,
crops each face by its landmarks, runs the U-Net in batches on (the frame's crop + its masked copy,
the audio context), pastes the result back (optionally feathered) and encodes H.264 with the audio
muxed. Decoding, the model and encoding run in overlapping threads.

Weights load from motionlab checkpoints (the run config rebuilds the network) or from SyncTalk_2D's
plain state-dict files (``mode`` names the audio features), always weights-only and key-checked.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from motionlab.data.audio import SAMPLE_RATE, audio_input, load_wav, mel_windows, melspectrogram
from motionlab.data.lipsync import encode_audio, face_tensor
from motionlab.data.talking import CROP_SIZE, INNER_SIZE, LANDMARK_ROLES, crop_face
from motionlab.data.video_io import ClipError, list_frame_files, read_image, write_video
from motionlab.inference.animate import motionlab_network
from motionlab.models.lipsync import AudioEncoder, LipSyncUNet, SyncNet
from motionlab.tasks.lipsync import SYNCTALK_MASK, mask_face
from motionlab.utils.checkpoint import load_checkpoint, load_state_dict_strict

log = logging.getLogger(__name__)


def _plain_state_dict(checkpoint: dict, path: str | os.PathLike, what: str) -> dict:
    state = checkpoint.get("state_dict", checkpoint)
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is neither a motionlab checkpoint nor a plain state dict of tensors ({what})")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel-saved files


def load_audio_encoder(path: str | os.PathLike) -> AudioEncoder:
    """The frozen ``ave`` audio encoder from a ``lipsync_av`` run or SyncTalk_2D's ``audio_visual_encoder.pth``."""
    checkpoint = load_checkpoint(path)
    built = motionlab_network(checkpoint, path)
    if built is not None:
        net = built[0]
        if not hasattr(net, "audio") or not isinstance(net.audio, AudioEncoder):
            raise ValueError(f"{path} holds a {type(net).__name__}, not an audio-visual encoder (train experiment=lipsync_av_quick)")
        return net.audio.eval().requires_grad_(False)
    state = _plain_state_dict(checkpoint, path, "audio encoder")
    encoder = AudioEncoder()
    if not any(k.startswith("audio_encoder.") for k in state):  # SyncTalk_2D saves the Sequential's own keys
        state = {f"audio_encoder.{k}": v for k, v in state.items()}
    load_state_dict_strict(encoder, state, str(path))
    return encoder.eval().requires_grad_(False)


def load_syncnet(path: str | os.PathLike, mode: str = "ave") -> SyncNet:
    """A frozen SyncNet from a ``lipsync_syncnet`` run or a SyncTalk_2D ``syncnet_328`` state dict."""
    checkpoint = load_checkpoint(path)
    built = motionlab_network(checkpoint, path)
    if built is not None:
        net = built[0]
        if not isinstance(net, SyncNet):
            raise ValueError(f"{path} holds a {type(net).__name__}, not a SyncNet (train experiment=lipsync_syncnet_quick)")
    else:
        net = SyncNet(mode)
        load_state_dict_strict(net, _plain_state_dict(checkpoint, path, "SyncNet"), str(path))
    if net.mode != mode:
        raise ValueError(f"{path} is a SyncNet for {net.mode} audio features, the U-Net uses {mode}")
    return net.eval().requires_grad_(False)


def load_lipsync_unet(path: str | os.PathLike, mode: str | None = None) -> tuple[LipSyncUNet, dict]:
    """The U-Net and its settings (``mode``, ``mask``, ``audio_encoder_ckpt``) from a motionlab run or a
    SyncTalk_2D state dict (then ``mode`` is required and the mask is SyncTalk_2D's)."""
    checkpoint = load_checkpoint(path)
    built = motionlab_network(checkpoint, path)
    if built is not None:
        net, config = built
        if not isinstance(net, LipSyncUNet):
            raise ValueError(f"{path} holds a {type(net).__name__}, not a lip-sync U-Net (train experiment=lipsync_quick)")
        if mode is not None and mode != net.mode:
            raise ValueError(f"{path} is a U-Net for {net.mode} audio features, not {mode}")
        settings = {"mode": net.mode, "mask": tuple(config["model"].get("mask", SYNCTALK_MASK)),
                    "audio_encoder_ckpt": config.get("data", {}).get("audio_encoder_ckpt")}
        return net, settings
    if mode is None:
        raise ValueError(f"{path} is a plain state dict (SyncTalk_2D format): say its audio features with mode=ave|hubert|wenet")
    net = LipSyncUNet(mode)
    load_state_dict_strict(net, _plain_state_dict(checkpoint, path, "U-Net"), str(path))
    return net.eval(), {"mode": mode, "mask": SYNCTALK_MASK, "audio_encoder_ckpt": None}


def bounce_index(step: int, length: int) -> int:
    """Template frame shown at output step ``step``: 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... (no frame repeats at the turns)."""
    if length == 1:
        return 0
    period = 2 * (length - 1)
    position = step % period
    return position if position < length else period - position


def template_landmarks(folder: Path, count: int) -> tuple[np.ndarray, list[int]]:
    """(count, P, 2) landmarks of a template; frames whose ``.lms`` is missing or unreadable take the nearest valid
    frame's. Returns the landmarks and the indices that were filled in."""
    from motionlab.data.talking import read_lms

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


def paste_back(frame: np.ndarray, generated: np.ndarray, box: tuple[int, int, int, int], feather: int) -> np.ndarray:
    """Put a generated (320, 320, 3) uint8 face back into ``frame`` at its crop ``box``.

    The inverse of :func:`crop_face`: the 320 face goes into the 328 crop of the frame (keeping its 4-pixel
    border), which is resized (bicubic) to the box and blended with ``feather`` pixels of linear ramp.
    """
    x0, y0, x1, y1 = box
    region = frame[y0:y1, x0:x1]
    canvas = np.asarray(Image.fromarray(region).resize((CROP_SIZE, CROP_SIZE), Image.BOX)).copy()
    margin = (CROP_SIZE - INNER_SIZE) // 2
    canvas[margin : margin + INNER_SIZE, margin : margin + INNER_SIZE] = generated
    pasted = np.asarray(Image.fromarray(canvas).resize((x1 - x0, y1 - y0), Image.BICUBIC), dtype=np.float32)
    alpha = feather_mask(y1 - y0, x1 - x0, feather)
    out = frame.copy()
    out[y0:y1, x0:x1] = np.round(region * (1.0 - alpha) + pasted * alpha).astype(np.uint8)
    return out


def _threaded(iterator: Iterator, depth: int = 4) -> Iterator:
    """Run ``iterator`` in a background thread, ``depth`` items ahead; its exceptions re-raise here."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in iterator:
                items.put(item)
        except BaseException as error:  # handed to the consumer, which re-raises it
            items.put(error)
        items.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := items.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


class LipSyncPipeline:
    """Template folder + speech -> lip-synced video.

    Args:
        net: the U-Net (eager PyTorch) or any callable ``(image, audio) -> image`` on numpy float32 arrays
            when ``runtime="onnx"`` (an onnxruntime session wrapper from :mod:`motionlab.inference.export`).
        mode: the U-Net's audio features; ``ave`` computes them from the speech with ``audio_encoder``.
        mask: the rectangle blanked in the current frame, as in training.
        batch_size: frames per U-Net call. feather: blend ramp in pixels (0: SyncTalk_2D's hard paste).
    """

    def __init__(self, net, mode: str = "ave", audio_encoder: AudioEncoder | None = None, mask=SYNCTALK_MASK,
                 batch_size: int = 8, feather: int = 16, fps: float = 25.0, device: str = "cpu"):
        if mode == "ave" and audio_encoder is None:
            raise ValueError("ave U-Nets need the audio encoder they were trained with (audio_encoder_ckpt=...)")
        self.net, self.mode, self.audio_encoder, self.mask = net, mode, audio_encoder, tuple(mask)
        self.batch_size, self.feather, self.fps, self.device = batch_size, feather, fps, torch.device(device)
        if isinstance(net, nn.Module):
            self.net = net.to(self.device).eval().to(memory_format=torch.channels_last)

    def speech_features(self, audio_path: str | os.PathLike, features_path: str | os.PathLike | None = None) -> tuple[np.ndarray, torch.Tensor, int]:
        """The samples, per-frame features and frame count (25 fps x the audio's duration, rounded)."""
        wav = load_wav(audio_path)
        frames = max(1, int(round(len(wav) / SAMPLE_RATE * self.fps)))
        if self.mode == "ave":
            features = torch.from_numpy(encode_audio(self.audio_encoder, mel_windows(melspectrogram(wav), frames, self.fps)))
        else:
            if features_path is None:
                raise ValueError(f"{self.mode} U-Nets read per-frame features from a .npy you computed (features=PATH)")
            features = torch.from_numpy(np.load(features_path, allow_pickle=False)).float()
            if len(features) < frames:
                raise ValueError(f"{features_path}: {len(features)} feature rows for {frames} video frames of {audio_path}")
            features = features[:frames].reshape(frames, -1)
        return wav, features, frames

    def _template_frames(self, template: Path, frames: int) -> Iterator[tuple[np.ndarray, np.ndarray, tuple]]:
        files = list_frame_files(template / "full_body_img")
        if not files:
            raise ClipError(f"template {template}: full_body_img/ holds no frames (run motionlab-data talking)")
        landmarks, missing = template_landmarks(template, len(files))
        if missing:
            log.warning("template %s: %d frames without landmarks use the nearest valid ones (%s...)", template, len(missing), missing[:10])
        for step in range(frames):
            index = bounce_index(step, len(files))
            image = read_image(files[index])
            crop, box = crop_face(image, landmarks[index])
            yield image, crop, box

    def _batches(self, decoded: Iterator, features: torch.Tensor, frames: int) -> Iterator[tuple[list, np.ndarray]]:
        pending: list = []
        for step, (image, crop, box) in enumerate(decoded):
            pending.append((image, crop, box, audio_input(features, step, self.mode)))
            if len(pending) == self.batch_size or step == frames - 1:
                yield pending[:], self._infer(np.stack([p[1] for p in pending]), torch.stack([p[3] for p in pending]))
                pending.clear()

    @torch.inference_mode()
    def _infer(self, crops: np.ndarray, audio: torch.Tensor) -> np.ndarray:
        faces = face_tensor(crops)
        image = torch.cat([faces, mask_face(faces, self.mask)], dim=1)
        if isinstance(self.net, nn.Module):
            image = image.to(self.device, memory_format=torch.channels_last)
            out = self.net(image, audio.to(self.device)).float().cpu()
        else:
            out = torch.from_numpy(self.net(image.numpy(), audio.numpy()))
        return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def _composited(self, batches: Iterator) -> Iterator[np.ndarray]:
        for pending, generated in batches:
            for (image, _, box, _), face in zip(pending, generated):
                yield paste_back(image, face, box, self.feather)

    def run(self, template: str | os.PathLike, audio_path: str | os.PathLike, out: str | os.PathLike, crf: int = 20,
            features_path: str | os.PathLike | None = None) -> dict:
        """Write ``out`` (H.264 at ``crf`` + AAC); returns frames, seconds and the output path."""
        template = Path(template)
        wav, features, frames = self.speech_features(audio_path, features_path)
        # decode + crop, the model, and paste-back each run in their own thread; encoding runs here
        decoded = _threaded(self._template_frames(template, frames), depth=2 * self.batch_size)
        batches = _threaded(self._batches(decoded, features, frames), depth=2)
        path = write_video(out, _threaded(self._composited(batches), depth=self.batch_size), fps=self.fps, crf=crf, audio=(wav, SAMPLE_RATE))
        return {"out": str(path), "frames": frames, "audio_seconds": len(wav) / SAMPLE_RATE}


def lipsync_files(ckpt: str, template: str, audio: str, out: str, mode: str | None = None, audio_encoder_ckpt: str | None = None,
                  features: str | None = None, runtime: str = "torch", onnx: str | None = None, batch_size: int = 8,
                  feather: int = 16, crf: int = 20, fps: float = 25.0, device: str = "cpu") -> dict:
    """``motionlab-lipsync``: load the U-Net (and audio encoder), pick the runtime, write ``out``."""
    from motionlab.data.descriptor_cache import file_digest
    from motionlab.inference.export import OnnxRunner, check_parity, export_onnx

    if runtime not in ("torch", "onnx"):
        raise ValueError(f"runtime must be torch or onnx, got {runtime!r}")
    for name, value in (("template", template), ("audio", audio)):
        if not Path(value).exists():
            raise FileNotFoundError(f"{name}={value} does not exist")
    net, settings = load_lipsync_unet(ckpt, mode)
    encoder_path = audio_encoder_ckpt or settings["audio_encoder_ckpt"]
    if settings["mode"] == "ave" and encoder_path is None:
        raise ValueError(f"{ckpt}: give the ave audio encoder it was trained with (audio_encoder_ckpt=...)")
    encoder = load_audio_encoder(encoder_path) if settings["mode"] == "ave" else None
    runner = net
    if runtime == "onnx":
        path = Path(onnx) if onnx else Path(ckpt).with_name(f"{Path(ckpt).stem}.{file_digest(ckpt)[:12]}.onnx")
        if not path.is_file():
            export_onnx(net, path)
            try:
                log.info("exported %s; onnxruntime parity %s", path, check_parity(net, path))
            except Exception:
                path.unlink(missing_ok=True)  # never leave an unchecked graph to be picked up by the next run
                raise
        runner = OnnxRunner(path)
    pipeline = LipSyncPipeline(runner, mode=settings["mode"], audio_encoder=encoder, mask=settings["mask"],
                               batch_size=batch_size, feather=feather, fps=fps, device=device)
    return {**pipeline.run(template, audio, out, crf=crf, features_path=features), "runtime": runtime}
