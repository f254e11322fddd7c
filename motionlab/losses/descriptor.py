"""The descriptor task's loss (FOMM): multi-scale perceptual reconstruction, optional L1, equivariance, and optional
landmark guidance of the keypoints (LivePortrait's term) where the batch carries the driver's face labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionlab.geometry import RandomAffineTPS
from motionlab.losses.base import TaskLoss
from motionlab.losses.equivariance import equivariance_losses
from motionlab.losses.landmarks import landmark_guidance
from motionlab.losses.perceptual import PerceptualPyramidLoss


class DescriptorLoss(TaskLoss):
    """``perceptual`` (pyramid, its layer weights inside) + ``reconstruction`` (L1) + ``equivariance_value`` /
    ``equivariance_jacobian`` under a random affine + TPS warp (``sigma_affine``, ``sigma_tps``, ``points_tps``) +
    ``landmark_guidance`` (:func:`~motionlab.losses.landmarks.landmark_guidance` of the driver's keypoints, on batches
    with ``driver_landmarks``: ``data.face_labels=true``).

    ``outputs``: the FOMM forward (``image``, ``kp_driving``); ``batch``: ``driver``. Binds ``kp_detector``.
    """

    def __init__(self, perceptual: PerceptualPyramidLoss, equivariance_value: float = 10.0, equivariance_jacobian: float = 10.0,
                 sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5, reconstruction_l1: float = 0.0, landmark_guidance: float = 0.0):
        super().__init__(perceptual=1.0, reconstruction=reconstruction_l1, equivariance_value=equivariance_value,
                         equivariance_jacobian=equivariance_jacobian, landmark_guidance=landmark_guidance)
        self.perceptual = perceptual
        self.sigma_affine, self.sigma_tps, self.points_tps = sigma_affine, sigma_tps, points_tps

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        driving, generated = batch["driver"], outputs["image"]
        terms = {"perceptual": self.perceptual(generated, driving)}
        if self.active("reconstruction"):
            terms["reconstruction"] = F.l1_loss(generated, driving)
        if self.active("equivariance_value") or self.active("equivariance_jacobian"):
            transform = RandomAffineTPS(driving.shape[0], self.sigma_affine, self.sigma_tps, self.points_tps,
                                        device=driving.device, dtype=driving.dtype)
            value, jacobian = equivariance_losses(self.network("kp_detector"), driving, outputs["kp_driving"], transform)
            terms["equivariance_value"] = value
            if jacobian is not None and self.active("equivariance_jacobian"):
                terms["equivariance_jacobian"] = jacobian
        if self.active("landmark_guidance") and "driver_landmarks" in batch:
            terms["landmark_guidance"] = landmark_guidance(outputs["kp_driving"].value, batch["driver_landmarks"], driving.shape[-1])
        return self.total(terms)
