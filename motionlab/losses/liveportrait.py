"""LivePortrait's training losses, which its release left out: stage 1 (the base networks) and stage 2 (stitching).

Stage 1 follows the paper and the community recipe (weights in ``conf/loss/liveportrait.yaml``): reconstruction
(MSE), cascaded perceptual, equivariance of the implicit keypoints under random affine + TPS warps, the keypoint
prior and the deformation prior of face-vid2vid, a head-pose loss against pseudo-labels and landmark guidance of 10
keypoints towards dlib-68 landmarks (both where the batch carries the driver's face labels: ``driver_head_pose``
(B, 3) degrees, ``driver_landmarks`` (B, 68, 2) pixels; ``data.face_labels``), and a non-saturating GAN on the face and on
eye and mouth crops (:class:`~motionlab.models.liveportrait.LivePortraitDiscriminator`, crops placed by the driver's
landmarks) whose critics train in the loss's ``discriminator`` phase, with an R1 gradient penalty on real images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionlab.geometry import RandomAffineTPS
from motionlab.losses.base import TaskLoss
from motionlab.losses.equivariance import equivariance_losses
from motionlab.losses.landmarks import landmark_guidance, part_views
from motionlab.losses.perceptual import PerceptualPyramidLoss


def keypoint_prior(canonical: torch.Tensor, distance: float = 0.1, depth: float = 0.33) -> torch.Tensor:
    """face-vid2vid's prior on (B, K, 3) canonical keypoints: every pair at least ``sqrt(distance)`` apart
    (``sum max(0, distance - |x_i - x_j|^2)``) and their mean depth at ``depth``."""
    squared = (canonical.unsqueeze(1) - canonical.unsqueeze(2)).square().sum(-1)
    off_diagonal = 1.0 - torch.eye(canonical.shape[1], device=canonical.device, dtype=canonical.dtype)
    spread = (F.relu(distance - squared) * off_diagonal).sum(dim=(1, 2))
    return (spread + (canonical[..., 2].mean(dim=1) - depth).abs()).mean()


class LivePortraitLoss(TaskLoss):
    """Stage 1: ``reconstruction`` (MSE), ``l1`` (off in the recipe), ``perceptual`` (pyramid), ``equivariance``, ``keypoint_prior``,
    ``deformation_prior`` (L1 of the expression offsets), ``head_pose`` and ``landmark_guidance`` (L1), and ``gan``
    (non-saturating, the mean over the critics' views). ``phase="discriminator"`` returns the critics' terms instead:
    ``discriminator`` (non-saturating, real drivers against detached results) and ``gradient_penalty`` (R1 on the real
    images), with ``d_real`` / ``d_fake`` (mean logits) to watch.

    ``outputs``: :meth:`motionlab.models.liveportrait.LivePortrait.forward` (``image``, ``kp_driving``,
    ``motion_source`` / ``motion_driving``) and ``driver_input`` (the driver at the network's input size);
    ``batch``: ``driver`` (the target, at the image's size) and the optional labels. Binds ``keypoints_2d``:
    image -> :class:`~motionlab.geometry.Keypoints` (x, y) of its own posed keypoints; with ``gan`` on, ``discriminator``
    (:class:`~motionlab.models.liveportrait.LivePortraitDiscriminator`).
    """

    def __init__(self, perceptual: PerceptualPyramidLoss, reconstruction: float = 10.0, l1: float = 0.0, perceptual_weight: float = 1.0,
                 equivariance: float = 1.0, keypoint_prior: float = 1.0, deformation_prior: float = 1.0, head_pose: float = 1.0,
                 landmark_guidance: float = 1.0, gan: float = 0.0, gradient_penalty: float = 1.0, sigma_affine: float = 0.05,
                 sigma_tps: float = 0.005, points_tps: int = 5):
        super().__init__(reconstruction=reconstruction, l1=l1, perceptual=perceptual_weight, equivariance=equivariance, keypoint_prior=keypoint_prior,
                         deformation_prior=deformation_prior, head_pose=head_pose, landmark_guidance=landmark_guidance, gan=gan,
                         discriminator=1.0, gradient_penalty=gradient_penalty)
        self.perceptual = perceptual
        self.sigma_affine, self.sigma_tps, self.points_tps = sigma_affine, sigma_tps, points_tps

    def _views(self, images: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        return part_views(images, batch.get("driver_landmarks"), self.network("discriminator").crop_fraction)

    def _discriminator_terms(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        critic = self.network("discriminator")
        # R1 differentiates the critics at their inputs (each view), so the crops need no double backward
        real = {part: view.detach().requires_grad_(self.active("gradient_penalty")) for part, view in self._views(batch["driver"], batch).items()}
        real_logits = critic(real)
        fake_logits = critic({part: view.detach() for part, view in self._views(outputs["image"].detach(), batch).items()})
        terms = {"discriminator": sum(F.softplus(-real_logits[part]).mean() + F.softplus(fake_logits[part]).mean() for part in real_logits) / len(real_logits),
                 "d_real": torch.stack([logits.mean() for logits in real_logits.values()]).mean().detach(),
                 "d_fake": torch.stack([logits.mean() for logits in fake_logits.values()]).mean().detach()}
        if self.active("gradient_penalty"):
            gradients = torch.autograd.grad(sum(logits.sum() for logits in real_logits.values()), list(real.values()), create_graph=True)
            terms["gradient_penalty"] = sum(g.square().sum(dim=(1, 2, 3)).mean() for g in gradients) / (2.0 * len(gradients))
        return self.total(terms)

    def forward(self, outputs: dict, batch: dict, phase: str = "generator") -> dict[str, torch.Tensor]:
        if phase == "discriminator":
            return self._discriminator_terms(outputs, batch)
        if phase != "generator":
            raise ValueError(f"phase must be 'generator' or 'discriminator', got {phase!r}")
        target, generated = batch["driver"], outputs["image"]
        terms = {"reconstruction": F.mse_loss(generated, target), "l1": (generated - target).abs().mean()}
        if self.active("perceptual"):
            terms["perceptual"] = self.perceptual(generated, target)
        if self.active("equivariance"):
            driving = outputs["driver_input"]
            transform = RandomAffineTPS(driving.shape[0], self.sigma_affine, self.sigma_tps, self.points_tps, device=driving.device, dtype=driving.dtype)
            detect = self.network("keypoints_2d")
            terms["equivariance"] = equivariance_losses(detect, driving, detect(driving), transform)[0]
        if self.active("keypoint_prior"):
            terms["keypoint_prior"] = sum(keypoint_prior(outputs[m]["canonical"]) for m in ("motion_source", "motion_driving")) / 2
        if self.active("deformation_prior"):
            terms["deformation_prior"] = sum(outputs[m]["expression"].abs().mean() for m in ("motion_source", "motion_driving")) / 2
        if self.active("head_pose") and "driver_head_pose" in batch:
            terms["head_pose"] = (outputs["motion_driving"]["angles"] - batch["driver_head_pose"]).abs().mean()
        if self.active("landmark_guidance") and "driver_landmarks" in batch:
            terms["landmark_guidance"] = landmark_guidance(outputs["kp_driving"], batch["driver_landmarks"], target.shape[-1])
        if self.active("gan"):
            logits = self.network("discriminator")(self._views(generated, batch))
            terms["gan"] = sum(F.softplus(-value).mean() for value in logits.values()) / len(logits)
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


class RetargetingLoss(TaskLoss):
    """Stage 2, eye / lip retargeting: the portrait rendered with its keypoints moved by the MLP's offset must match
    the portrait re-rendered with the wanted openness: ``retargeting_error`` (L1 over the image) and ``region_error``
    (L1 over the pixels the re-rendering changed, where the eyes or the mouth moved: the part the whole-image error
    dilutes), with a small penalty on the offsets (``offset``, mean square). Where ``outputs`` carry ``unmoved`` (the
    portrait rendered without the offset, in evaluation), ``unretargeted_error`` / ``unretargeted_region_error`` are
    its errors against the same targets: what retargeting is there to remove.

    ``outputs``: ``image``, ``offset`` (B, K, 3), optionally ``unmoved``; ``batch``: ``target`` and ``source`` (the
    image's size). Changed pixels: any channel differs by more than ``threshold``.
    """

    def __init__(self, retargeting_error: float = 1.0, region_error: float = 1.0, offset: float = 0.1, threshold: float = 0.05):
        super().__init__(retargeting_error=retargeting_error, region_error=region_error, offset=offset)
        self.threshold = threshold

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        target = batch["target"]
        region = ((target - batch["portrait"]).abs().amax(dim=1, keepdim=True) > self.threshold).to(target.dtype)
        pixels = (region.sum() * target.shape[1]).clamp_min(1.0)

        def errors(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            difference = (image - target).abs()
            return difference.mean(), (difference * region).sum() / pixels

        terms = dict(zip(("retargeting_error", "region_error"), errors(outputs["image"])))
        terms["offset"] = outputs["offset"].square().mean()
        if "unmoved" in outputs:
            terms.update(zip(("unretargeted_error", "unretargeted_region_error"), errors(outputs["unmoved"])))
        return self.total(terms)
