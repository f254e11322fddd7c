"""LivePortrait's training losses, which its release left out: stage 1 (the base networks) and stage 2 (stitching).

Stage 1 follows the paper and the community recipe (weights in ``conf/loss/liveportrait.yaml``): reconstruction
(MSE), cascaded perceptual, equivariance of the implicit keypoints under random affine + TPS warps, the keypoint
prior and the deformation prior of face-vid2vid, a head-pose loss against pseudo-labels and landmark guidance of 10
keypoints towards dlib-68 landmarks (both where the batch carries them: ``head_pose`` (B, 3) degrees, ``landmarks``
(B, 10, 2) normalised). The GAN terms on the face and on eye / mouth crops are not implemented here yet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionlab.geometry import RandomAffineTPS
from motionlab.losses.base import TaskLoss
from motionlab.losses.equivariance import equivariance_losses
from motionlab.losses.perceptual import PerceptualPyramidLoss

# dlib-68 indices the landmark guidance pairs with the first 10 implicit keypoints (eye corners and lids, mouth
# corners and lips), from the community recipe
GUIDANCE_LANDMARKS = (36, 39, 37, 42, 45, 43, 48, 54, 51, 57)


def keypoint_prior(canonical: torch.Tensor, distance: float = 0.1, depth: float = 0.33) -> torch.Tensor:
    """face-vid2vid's prior on (B, K, 3) canonical keypoints: every pair at least ``sqrt(distance)`` apart
    (``sum max(0, distance - |x_i - x_j|^2)``) and their mean depth at ``depth``."""
    squared = (canonical.unsqueeze(1) - canonical.unsqueeze(2)).square().sum(-1)
    off_diagonal = 1.0 - torch.eye(canonical.shape[1], device=canonical.device, dtype=canonical.dtype)
    spread = (F.relu(distance - squared) * off_diagonal).sum(dim=(1, 2))
    return (spread + (canonical[..., 2].mean(dim=1) - depth).abs()).mean()


class LivePortraitLoss(TaskLoss):
    """Stage 1: ``reconstruction`` (MSE), ``l1`` (off in the recipe), ``perceptual`` (pyramid), ``equivariance``, ``keypoint_prior``,
    ``deformation_prior`` (L1 of the expression offsets), ``head_pose`` and ``landmark_guidance`` (L1).

    ``outputs``: :meth:`motionlab.models.liveportrait.LivePortrait.forward` (``image``, ``kp_driving``,
    ``motion_source`` / ``motion_driving``) and ``driver_input`` (the driver at the network's input size);
    ``batch``: ``driver`` (the target, at the image's size) and the optional labels. Binds ``keypoints_2d``:
    image -> :class:`~motionlab.geometry.Keypoints` (x, y) of its own posed keypoints.
    """

    def __init__(self, perceptual: PerceptualPyramidLoss, reconstruction: float = 10.0, l1: float = 0.0, perceptual_weight: float = 1.0,
                 equivariance: float = 1.0, keypoint_prior: float = 1.0, deformation_prior: float = 1.0, head_pose: float = 1.0,
                 landmark_guidance: float = 1.0, sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5):
        super().__init__(reconstruction=reconstruction, l1=l1, perceptual=perceptual_weight, equivariance=equivariance, keypoint_prior=keypoint_prior,
                         deformation_prior=deformation_prior, head_pose=head_pose, landmark_guidance=landmark_guidance)
        self.perceptual = perceptual
        self.sigma_affine, self.sigma_tps, self.points_tps = sigma_affine, sigma_tps, points_tps

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        target, generated = batch["driver"], outputs["image"]
        terms = {"reconstruction": F.mse_loss(generated, target), "l1": (generated - target).abs().mean()}
        if self.active("perceptual"):
            terms["perceptual"] = self.perceptual(generated, target)
        if self.active("equivariance"):
            driving = outputs["driver_input"]
            transform = RandomAffineTPS(driving.shape[0], self.sigma_affine, self.sigma_tps, self.points_tps, device=driving.device, dtype=driving.dtype)
            detect = self.network("keypoints_2d")
            terms["equivariance"] = equivariance_losses(detect, driving, detect(driving), transform)[0]
        motions = (outputs["motion_source"], outputs["motion_driving"])
        if self.active("keypoint_prior"):
            terms["keypoint_prior"] = sum(keypoint_prior(m["canonical"]) for m in motions) / 2
        if self.active("deformation_prior"):
            terms["deformation_prior"] = sum(m["expression"].abs().mean() for m in motions) / 2
        if self.active("head_pose") and "head_pose" in batch:
            terms["head_pose"] = (outputs["motion_driving"]["angles"] - batch["head_pose"]).abs().mean()
        if self.active("landmark_guidance") and "landmarks" in batch:
            guided = outputs["kp_driving"][:, : len(GUIDANCE_LANDMARKS), :2]
            terms["landmark_guidance"] = (guided - batch["landmarks"]).abs().mean()
        return self.total(terms)


class StitchingLoss(TaskLoss):
    """Stage 2: driven by another identity's motion, the stitched result must keep the portrait outside the face
    (``stitching_error``: L1 over the outer ``border`` of the image, where LivePortrait's shoulders are), with a
    small penalty on the stitching offsets (``offset``, mean square).

    ``outputs``: ``image`` (rendered with stitched keypoints), ``source`` (the portrait, the image's size) and
    ``offset`` (B, K, 3).
    """

    def __init__(self, stitching_error: float = 1.0, offset: float = 0.1, border: float = 0.25):
        super().__init__(stitching_error=stitching_error, offset=offset)
        self.border = border

    def border_mask(self, size: tuple[int, int], device=None) -> torch.Tensor:
        """(1, 1, H, W): 1 on the outer ``border`` of each side, 0 inside."""
        height, width = size
        mask = torch.ones(1, 1, height, width, device=device)
        top, left = round(height * self.border), round(width * self.border)
        mask[..., top : height - top, left : width - left] = 0.0
        return mask

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        image, source = outputs["image"], outputs["source"]
        mask = self.border_mask(image.shape[-2:], image.device)
        error = ((image - source).abs() * mask).sum(dim=(1, 2, 3)) / (mask.sum() * image.shape[1])
        return self.total({"stitching_error": error.mean(), "offset": outputs["offset"].square().mean()})
