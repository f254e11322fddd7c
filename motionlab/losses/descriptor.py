"""The descriptor task's loss (FOMM): multi-scale perceptual reconstruction, optional L1, equivariance, and, where the
batch carries the driver's face labels, optional landmark guidance of the keypoints and perceptual reconstruction of
the eye and mouth crops (LivePortrait's terms)."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from motionlab.geometry import RandomAffineTPS
from motionlab.losses.base import TaskLoss
from motionlab.losses.equivariance import equivariance_losses
from motionlab.losses.landmarks import PART_LANDMARKS, landmark_guidance, part_views
from motionlab.losses.perceptual import PerceptualPyramidLoss


class DescriptorLoss(TaskLoss):
    """``perceptual`` (pyramid, its layer weights inside) + ``reconstruction`` (L1) + ``equivariance_value`` /
    ``equivariance_jacobian`` under a random affine + TPS warp (``sigma_affine``, ``sigma_tps``, ``points_tps``) +
    ``landmark_guidance`` (:func:`~motionlab.losses.landmarks.landmark_guidance` of the driver's keypoints) +
    ``part_perceptual`` (the pyramid on the eye and mouth crops of result and driver,
    :func:`~motionlab.losses.landmarks.part_views` at ``part_crop_fraction`` of the image side, averaged over the
    parts: LivePortrait's cascaded loss, because lids and lips are a few pixels that the whole-image terms barely
    weigh); both on batches with ``driver_landmarks`` (``data.face_labels=true``).

    TPSMM's terms, for models whose forward returns them: ``warp`` (the warped, occlusion-masked encoder features of the
    source against the driver's own, summed over resolutions) and ``background`` (the background maps of source ->
    driving and driving -> source must compose to the identity, once the model's background predictor is on).
    ``equivariance_kernel`` picks the random warp's radial function (``fomm`` or ``tps``,
    :class:`~motionlab.geometry.RandomAffineTPS`).

    ``outputs``: the model's forward (``image``, ``kp_driving``; TPSMM's also ``occlusion_map``,
    ``warped_encoder_maps``, ``bg_param``); ``batch``: ``portrait``, ``driver``. Binds ``kp_detector`` and, for the
    TPSMM terms, ``driver_maps`` and ``bg_predictor``.
    """

    def __init__(self, perceptual: PerceptualPyramidLoss, equivariance_value: float = 10.0, equivariance_jacobian: float = 10.0,
                 sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5, reconstruction_l1: float = 0.0, landmark_guidance: float = 0.0,
                 part_perceptual: float = 0.0, part_crop_fraction: float = 0.5, warp: float = 0.0, background: float = 0.0,
                 equivariance_kernel: str = "fomm"):
        super().__init__(perceptual=1.0, reconstruction=reconstruction_l1, equivariance_value=equivariance_value,
                         equivariance_jacobian=equivariance_jacobian, landmark_guidance=landmark_guidance, part_perceptual=part_perceptual,
                         warp=warp, background=background)
        self.perceptual = perceptual
        self.part_crop_fraction = part_crop_fraction
        self.sigma_affine, self.sigma_tps, self.points_tps = sigma_affine, sigma_tps, points_tps
        self.equivariance_kernel = equivariance_kernel

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        driving, generated = batch["driver"], outputs["image"]
        terms = {"perceptual": self.perceptual(generated, driving)}
        if self.active("reconstruction"):
            terms["reconstruction"] = F.l1_loss(generated, driving)
        if self.active("equivariance_value") or self.active("equivariance_jacobian"):
            transform = RandomAffineTPS(driving.shape[0], self.sigma_affine, self.sigma_tps, self.points_tps,
                                        device=driving.device, dtype=driving.dtype, kernel=self.equivariance_kernel)
            value, jacobian = equivariance_losses(self.network("kp_detector"), driving, outputs["kp_driving"], transform)
            terms["equivariance_value"] = value
            if jacobian is not None and self.active("equivariance_jacobian"):
                terms["equivariance_jacobian"] = jacobian
        if self.active("landmark_guidance") and "driver_landmarks" in batch:
            terms["landmark_guidance"] = landmark_guidance(outputs["kp_driving"].value, batch["driver_landmarks"], driving.shape[-1])
        if self.active("part_perceptual") and "driver_landmarks" in batch:
            results, targets = (part_views(images, batch["driver_landmarks"], self.part_crop_fraction) for images in (generated, driving))
            terms["part_perceptual"] = sum(self.perceptual(results[part], targets[part]) for part in PART_LANDMARKS) / len(PART_LANDMARKS)
        if self.active("warp") and "warped_encoder_maps" in outputs:
            own = self.network("driver_maps")(driving, outputs["occlusion_map"])
            warped = outputs["warped_encoder_maps"]
            terms["warp"] = sum((mine - warped[-i - 1]).abs().mean() for i, mine in enumerate(own))
        if self.active("background") and outputs.get("bg_param") is not None:
            reverse = self.network("bg_predictor")(driving, batch["portrait"])
            composed = outputs["bg_param"] @ reverse
            terms["background"] = (torch.eye(3, device=composed.device, dtype=composed.dtype) - composed).abs().mean()
        return self.total(terms)


class AVDLoss(TaskLoss):
    """TPSMM's second stage (its ``train_avd``): the AVD network rebuilds a driver frame's keypoints from the portrait's
    keypoints (identity) and the frame's keypoints rescaled by a random factor in [1 - ``random_scale``, 1 + ...] on x
    and on y (pose, with the shape disturbed): ``kp_reconstruction`` = mean |kp_driving - AVD(kp_source, scaled)|.
    The detector is frozen (no gradients, eval mode).

    ``outputs``: unused (the loss calls the networks); ``batch``: ``portrait``, ``driver``. Binds ``kp_detector`` and
    ``avd_network``.
    """

    def __init__(self, kp_reconstruction: float = 1.0, random_scale: float = 0.25):
        super().__init__(kp_reconstruction=kp_reconstruction)
        self.random_scale = random_scale

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        detector, avd = self.network("kp_detector"), self.network("avd_network")
        with torch.no_grad():
            kp_source, kp_driving = detector(batch["portrait"]), detector(batch["driver"])
            factors = torch.rand(len(kp_driving.value), 1, 2, device=kp_driving.value.device) * (2 * self.random_scale) + (1 - self.random_scale)
        rebuilt = avd(kp_source, replace(kp_driving, value=kp_driving.value * factors))
        return self.total({"kp_reconstruction": (kp_driving.value - rebuilt.value).abs().mean()})
