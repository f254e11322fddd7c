"""The Animator's loss: reconstruction, alignment, identity consistency, total variation of the flow."""

from __future__ import annotations

import math

import kornia.filters as KF
import torch
import torch.nn.functional as F

from motionlab.geometry import flow_at, keypoints_to_flow_coordinates, total_variation
from motionlab.losses.base import TaskLoss


def blurred_residual(image: torch.Tensor, reference: torch.Tensor, sigma: float) -> torch.Tensor:
    """Low-pass residual ``blur(image) - blur(reference)`` of (B, C, H, W) images: where and how much things moved."""
    kernel = 2 * int(round(3 * sigma)) + 1
    blur = lambda x: KF.gaussian_blur2d(x, (kernel, kernel), (sigma, sigma), border_type="replicate")  # noqa: E731
    return blur(image) - blur(reference)


class AnimatorLoss(TaskLoss):
    """Weighted sum of the Animator's terms; every weight comes from ``conf/loss/``.

    - ``reconstruction``: L1 between the generated frame and the driver frame.
    - ``alignment`` (``alignment_mode="blurred_residual"``): L1 between the blurred residuals
      (generated - portrait) and (driver - portrait): the coarse motion must match even where fine
      detail cannot. (``alignment_mode="descriptor"``): L1 between the descriptor deltas of the
      generated and the driver frame relative to the portrait, through the frozen ``descriptor_model``;
      the self-driven portrait must show a zero delta. (``alignment_mode="flow_keypoints"``): the flow must carry each
      driver keypoint to the portrait's same keypoint (L1 between ``kp_driver + flow(kp_driver)`` and ``kp_portrait``):
      descriptors of the real frames supervise the motion directly, no detector runs on generated frames.
    - ``identity``: the first ``identity_batch_fraction`` of the batch's portraits, driven by themselves at
      ``identity_strength`` (a second pass through the bound ``animate``), must return the portrait (L1).
    - ``tv``: total variation of the flow field (piecewise-smooth motion).
    - ``residual_magnitude``: mean |blurred residual of the output|, a diagnostic.

    ``outputs``: the Animator's forward (``image``, ``flow``); ``batch``: ``source``, ``driver`` and, in descriptor
    mode, ``portrait_descriptors`` / ``driver_descriptors`` (B, K, 2). Binds ``animate`` and ``descriptor_model``.
    """

    def __init__(self, reconstruction: float = 1.0, alignment: float = 1.0, identity: float = 0.5, tv: float = 0.01,
                 identity_strength: float = 0.5, identity_batch_fraction: float = 0.5, alignment_blur_sigma: float = 2.0,
                 alignment_mode: str = "blurred_residual"):
        super().__init__(reconstruction=reconstruction, alignment=alignment, identity=identity, tv=tv)
        if not 0.0 <= identity_strength <= 1.0:
            raise ValueError(f"identity_strength must be in [0, 1], got {identity_strength}")
        if not 0.0 < identity_batch_fraction <= 1.0:
            raise ValueError(f"identity_batch_fraction must be in (0, 1], got {identity_batch_fraction}")
        if alignment_mode not in ("blurred_residual", "descriptor", "flow_keypoints"):
            raise ValueError(f"alignment_mode must be 'blurred_residual', 'descriptor' or 'flow_keypoints', got {alignment_mode!r}")
        self.identity_strength, self.identity_batch_fraction = identity_strength, identity_batch_fraction
        self.alignment_blur_sigma, self.alignment_mode = alignment_blur_sigma, alignment_mode

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        portrait, driver, generated = batch["portrait"], batch["driver"], outputs["image"]
        portrait_descriptors, driver_descriptors = batch.get("portrait_descriptors"), batch.get("driver_descriptors")
        identity_outputs = None
        if self.active("identity"):
            count = max(1, math.ceil(portrait.shape[0] * self.identity_batch_fraction))
            own = None if portrait_descriptors is None else portrait_descriptors[:count]
            identity_outputs = self.network("animate")(portrait[:count], portrait[:count], own, own, strength=self.identity_strength)
        generated_residual = blurred_residual(generated, portrait, self.alignment_blur_sigma)
        terms = {"reconstruction": F.l1_loss(generated, driver), "tv": total_variation(outputs["flow"].permute(0, 3, 1, 2))}
        if self.alignment_mode == "blurred_residual":
            terms["alignment"] = F.l1_loss(generated_residual, blurred_residual(driver, portrait, self.alignment_blur_sigma))
        else:
            portrait_descriptors, driver_descriptors = outputs.get("portrait_descriptors", portrait_descriptors), outputs.get("driver_descriptors", driver_descriptors)
            if portrait_descriptors is None or driver_descriptors is None:
                raise ValueError(f"alignment_mode={self.alignment_mode} needs descriptors of portrait and driver (a net with num_descriptors)")
        if self.alignment_mode == "flow_keypoints":
            height, width = generated.shape[-2:]
            driver_points = keypoints_to_flow_coordinates(driver_descriptors, height, width)
            terms["alignment"] = F.l1_loss(driver_points + flow_at(outputs["flow"], driver_points),
                                           keypoints_to_flow_coordinates(portrait_descriptors, height, width))
        elif self.alignment_mode == "descriptor":
            detector = self.network("descriptor_model")
            generated_delta = detector(generated).value - portrait_descriptors
            terms["alignment"] = F.l1_loss(generated_delta, driver_descriptors - portrait_descriptors)
            if identity_outputs is not None:
                count = identity_outputs["image"].shape[0]
                self_delta = detector(identity_outputs["image"]).value - portrait_descriptors[:count]
                terms["alignment"] = terms["alignment"] + self_delta.abs().mean()
        if identity_outputs is not None:
            terms["identity"] = F.l1_loss(identity_outputs["image"], portrait[: identity_outputs["image"].shape[0]])
        return {**self.total(terms), "residual_magnitude": generated_residual.detach().abs().mean()}
