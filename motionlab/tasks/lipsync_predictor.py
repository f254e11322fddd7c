"""The lipsync task's inference: LipSyncPredictor (importable without the training stack: no Lightning, no
torchmetrics)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from motionlab.data.audio import audio_input, frame_count
from motionlab.data.lipsync import TalkingClip, audio_features, face_tensor, read_feature_file, speech_features
from motionlab.models import create_model
from motionlab.models.lipsync import lipsync_convention, to_channel_order
from motionlab.tasks.predictor import Predictor, register_predictor
from motionlab.utils.errors import InputError

# (x, y, width, height) blanked in the current frame's 320 crop: SyncTalk_2D's rectangle
SYNCTALK_MASK = (5, 5, 310, 305)


# rows / columns of the 320 crop scored as the mouth region (the crop starts at the nose bridge)
MOUTH_REGION = (slice(160, 310), slice(60, 260))


def mask_face(face: torch.Tensor, rect: tuple[int, int, int, int] = SYNCTALK_MASK) -> torch.Tensor:
    """A copy of (B, 3, H, W) faces with the ``(x, y, width, height)`` rectangle set to black."""
    x, y, w, h = rect
    masked = face.clone()
    masked[..., y : y + h, x : x + w] = 0
    return masked


def unet_input(reference: torch.Tensor, face: torch.Tensor, mask: tuple[int, int, int, int]) -> torch.Tensor:
    """The U-Net's (B, 6, 320, 320) image input: the reference crop and the current crop with ``mask`` blanked."""
    return torch.cat([reference, mask_face(face, mask)], dim=1)


@register_predictor
class LipSyncPredictor(Predictor):
    """A lip-sync U-Net at inference: speech -> per-frame audio features (through its ``ave`` encoder), face crops
    -> the U-Net input with the checkpoint's mask, -> generated crops, all in the U-Net's
    :class:`~motionlab.models.lipsync.LipSyncConvention` (``motionlab`` for checkpoints trained here, ``synctalk_2d``
    for SyncTalk_2D's files).

    ``runner`` is what computes the U-Net: the eager network (default) or any callable ``(image, audio) -> array`` on
    numpy float32 arrays (an onnxruntime session of the exported net, :class:`motionlab.utils.onnx_files.OnnxRunner`).
    """

    families = ("lipsync_unet",)

    def __init__(self, net: nn.Module, audio_encoder: nn.Module | None = None, mask=SYNCTALK_MASK, convention: str = "motionlab"):
        super().__init__(net=net, audio_encoder=audio_encoder)
        self.mode, self.mask, self.convention = net.mode, tuple(mask), lipsync_convention(convention)
        self.runner: Callable | None = None
        # a reduced-precision autocast dtype for the eager network (motionlab-lipsync precision=bf16), None for fp32
        self.autocast: torch.dtype | None = None
        if self.mode == "ave" and audio_encoder is None:
            raise InputError("ave U-Nets need the audio encoder they were trained with (audio_encoder_ckpt=...)")

    @classmethod
    def from_models(cls, models: dict[str, nn.Module], settings: dict, audio_encoder_ckpt: str | os.PathLike | None = None,
                    **options) -> "LipSyncPredictor":
        """``audio_encoder_ckpt`` replaces the checkpoint's own encoder (needed for SyncTalk_2D ``ave`` U-Net files)."""
        encoder = models.get("audio_encoder")
        if audio_encoder_ckpt is not None:
            encoder = create_model("lipsync_audio_encoder_ave", ckpt=audio_encoder_ckpt)
        # checkpoints from before conventions were recorded were trained in motionlab's
        return cls(models["net"], encoder, settings.get("mask", SYNCTALK_MASK), settings.get("convention", "motionlab"))

    def speech_features(self, wav: np.ndarray, fps: float, features_path: str | os.PathLike | None = None) -> tuple[torch.Tensor, int]:
        """(rows, F) per-frame audio features of 16 kHz ``wav`` and the number of output frames, in the U-Net's convention:
        computed by the ``ave`` encoder, or read from a ``.npy`` (a SyncTalk_2D ``aud_*.npy``, or your HuBERT / WeNet
        pipeline's) whose convention must be the U-Net's."""
        if features_path is not None:
            features = read_feature_file(features_path, self.mode, self.convention)
        elif self.mode == "ave":
            features = speech_features(self.audio_encoder, wav, self.convention, fps)
        else:
            raise InputError(f"{self.mode} U-Nets read per-frame features from a .npy you computed (features=PATH)")
        if self.convention.frame_count == "mel_windows":
            return features, len(features)  # SyncTalk_2D writes one frame per feature row
        frames = frame_count(len(wav), self.convention, fps)
        if len(features) < frames:
            raise InputError(f"{features_path}: {len(features)} feature rows for {frames} video frames")
        return features, frames

    def audio(self, features: torch.Tensor, steps) -> torch.Tensor:
        """The U-Net's audio inputs of output frames ``steps``."""
        return torch.stack([audio_input(features, step, self.mode, self.convention) for step in steps])

    def template_inputs(self, template: str | os.PathLike, part: str = "net", frames: int = 2) -> dict[str, torch.Tensor]:
        """The first ``frames`` frames of a template folder as the inputs of network ``part`` (real-input parity checks)."""
        clip = TalkingClip(template, convention=self.convention)
        if part == "audio_encoder":
            return {"mel": clip.mel[:frames]}
        features = self.speech_features(clip.wav(), clip.fps)[0] if self.mode == "ave" else audio_features(clip, self.mode)
        faces = face_tensor(clip.crops[:frames], self.convention)
        return {"image": unet_input(faces, faces, self.mask), "audio": self.audio(features, range(frames))}

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray, audio: torch.Tensor) -> np.ndarray:
        """(N, 320, 320, 3) uint8 RGB crops and (N, ...) U-Net-layout audio -> (N, 320, 320, 3) uint8 RGB generated crops."""
        faces = face_tensor(crops, self.convention)
        image = unet_input(faces, faces, self.mask)
        if self.runner is None:
            with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
                out = self.net(image.to(self.device, memory_format=torch.channels_last), audio.to(self.device)).float().cpu()
        else:
            out = torch.from_numpy(self.runner(image.numpy(), audio.numpy()))
        scaled = to_channel_order(out, self.convention).clamp(0, 1) * 255
        quantized = scaled.round() if self.convention.quantize == "round" else scaled.floor()
        return quantized.to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def to(self, device: str | torch.device) -> "LipSyncPredictor":
        super().to(device)
        self.net = self.net.to(memory_format=torch.channels_last)
        return self
