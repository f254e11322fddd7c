"""The adapter task's inference: LandmarkDrivenPredictor (importable without the training stack: no Lightning, no
torchmetrics)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from motionlab.geometry.landmarks import normalize_landmarks
from motionlab.models import CheckpointFormatError, load_model, motionlab_meta, stored_models
from motionlab.models.adapter import apply_motion
from motionlab.utils.checkpoint import load_checkpoint
from motionlab.utils.errors import InputError
from motionlab.utils.io import file_digest


def landmark_windows(points: np.ndarray, window: int, reference: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Adapter inputs for every frame of (T, P, 2) pixel landmarks: (T, W, P, 2) windows of normalised displacements
    from frame ``reference`` (edges repeat the first / last frame) and the (T, P, 2) reference face."""
    normalised = normalize_landmarks(points, reference=reference)
    relative = normalised - normalised[reference]
    offsets = np.arange(window) - window // 2
    index = np.clip(np.arange(len(points))[:, None] + offsets, 0, len(points) - 1)
    reference_face = np.broadcast_to(normalised[reference], normalised.shape)
    return torch.from_numpy(relative[index]), torch.from_numpy(np.ascontiguousarray(reference_face))


def load_descriptor_model(path: str | os.PathLike, num_kp: int) -> nn.Module:
    model = load_model(path)
    if model.model_info.family != "keypoint_animator":
        raise CheckpointFormatError(f"{path} holds a {model.model_info.name}; an adapter maps into a descriptor (keypoint) model's space")
    if model.kp_detector.num_kp != num_kp:
        raise CheckpointFormatError(f"{path} has {model.kp_detector.num_kp} keypoints but the adapter predicts {num_kp}; set model.net.num_kp")
    return model.eval().requires_grad_(False)


class LandmarkDrivenPredictor:
    """A descriptor model's generator driven by landmarks through an adapter.

    ``motion(points, portrait, reference)`` maps (T, P, 2) pixel landmarks (relative to frame ``reference``, the one
    taken to show the portrait's expression; :meth:`LandmarkSequence.reference_frame`) to relative keypoint motion for the
    (1, 3, S, S) portrait's keypoints; ``predictor(portrait, motion)`` animates the portrait with it, returning
    ``generated`` (N, 3, S, S) and ``generated_keypoints`` (the adapted keypoints on the portrait).
    """

    def __init__(self, descriptor_model: nn.Module, adapter: nn.Module, device: str = "cpu"):
        self.device = torch.device(device)
        self.descriptor_model = descriptor_model.eval().to(self.device)
        self.adapter = adapter.eval().to(self.device)

    @property
    def image_size(self) -> int:
        return self.descriptor_model.model_info.input_size[0]

    @torch.no_grad()
    def motion(self, points: np.ndarray, portrait: torch.Tensor, reference: int = 0) -> dict[str, torch.Tensor]:
        if points.shape[1] != self.adapter.num_landmarks:
            raise InputError(f"the adapter was trained on {self.adapter.num_landmarks}-point landmarks; this source has {points.shape[1]} points")
        windows, reference = landmark_windows(points, self.adapter.window, reference)
        keypoints = self.descriptor_model.kp_detector(portrait).value.expand(len(points), -1, -1)
        return self.adapter(windows.to(self.device), reference.to(self.device), keypoints)

    @torch.no_grad()
    def __call__(self, portrait: torch.Tensor, motion: dict[str, torch.Tensor]) -> dict:
        n = motion["value"].shape[0]
        kp_portrait = self.descriptor_model.kp_detector(portrait).expand(n)
        driving = apply_motion(kp_portrait, motion)
        generated = self.descriptor_model.animate(portrait.expand(n, -1, -1, -1), kp_driving=driving, kp_source=kp_portrait)["prediction"]
        return {"generated": generated.clamp(0, 1), "generated_keypoints": driving}


def load_adapter_predictor(descriptor_ckpt: str | os.PathLike, adapter_ckpt: str | os.PathLike, device: str = "cpu") -> LandmarkDrivenPredictor:
    """The landmark-driven predictor of an adapter checkpoint and the descriptor checkpoint it was trained for; a
    descriptor file with another SHA-256 than the one the adapter recorded is refused."""
    checkpoint = load_checkpoint(adapter_ckpt)
    meta = motionlab_meta(checkpoint, adapter_ckpt)
    if meta is None or meta.get("task") != "adapter":
        raise CheckpointFormatError(f"{adapter_ckpt} is not an adapter checkpoint (task {None if meta is None else meta.get('task')}); "
                                    f"train one with motionlab-train experiment=adapter_paired_quick")
    expected = meta["predictor"]["descriptor_sha256"]
    actual = file_digest(descriptor_ckpt)
    if actual != expected:
        raise CheckpointFormatError(
            f"adapter {adapter_ckpt} was trained for the descriptor checkpoint with SHA-256 {expected[:16]}... "
            f"({meta['predictor'].get('descriptor_ckpt')}); {descriptor_ckpt} has {actual[:16]}...: give that descriptor "
            f"checkpoint, or train an adapter for this one")
    adapter = stored_models(checkpoint, adapter_ckpt)["net"]
    return LandmarkDrivenPredictor(load_descriptor_model(descriptor_ckpt, adapter.num_kp), adapter, device)
