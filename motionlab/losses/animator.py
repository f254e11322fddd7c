"""Losses of the Animator: reconstruction, alignment, identity consistency, total variation."""

from __future__ import annotations

import kornia.filters as KF
import torch
import torch.nn.functional as F
from torch import nn

from motionlab.geometry import total_variation


def blurred_residual(image: torch.Tensor, reference: torch.Tensor, sigma: float) -> torch.Tensor:
    """Low-pass residual ``blur(image) - blur(reference)`` of (B, C, H, W) images: where and how much things moved."""
    kernel = 2 * int(round(3 * sigma)) + 1
    blur = lambda x: KF.gaussian_blur2d(x, (kernel, kernel), (sigma, sigma), border_type="replicate")  # noqa: E731
    return blur(image) - blur(reference)


class AnimatorLoss(nn.Module):
    """Weighted sum of the Animator's terms; every weight comes from ``conf/loss/``.

    - ``reconstruction``: L1 between the generated frame and the driver frame.
    - ``alignment`` (``alignment_mode="blurred_residual"``): L1 between the blurred residuals
      (generated - portrait) and (driver - portrait): the coarse motion must match even where fine
      detail cannot. (``alignment_mode="descriptor"``): L1 between the descriptor deltas of the
      generated and the driver frame relative to the portrait, through the frozen descriptor model; the
      self-driven portrait must show a zero delta.
    - ``identity``: L1 between the portrait driven by itself at ``identity_strength`` and the portrait.
    - ``tv``: total variation of the flow field (piecewise-smooth motion).

    Returns a dict with each term, ``residual_magnitude`` (mean |blurred residual of the output|, a
    diagnostic) and ``total``.
    """

    def __init__(
        self,
        reconstruction: float = 1.0,
        alignment: float = 1.0,
        identity: float = 0.5,
        tv: float = 0.01,
        identity_strength: float = 0.5,
        alignment_blur_sigma: float = 2.0,
        alignment_mode: str = "blurred_residual",
    ):
        super().__init__()
        for name, value in (("reconstruction", reconstruction), ("alignment", alignment), ("identity", identity), ("tv", tv)):
            if value < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {value}")
        if not 0.0 <= identity_strength <= 1.0:
            raise ValueError(f"identity_strength must be in [0, 1], got {identity_strength}")
        self.weights = {"reconstruction": reconstruction, "alignment": alignment, "identity": identity, "tv": tv}
        self.identity_strength = identity_strength
        self.alignment_blur_sigma = alignment_blur_sigma
        if alignment_mode not in ("blurred_residual", "descriptor"):
            raise ValueError(f"alignment_mode must be 'blurred_residual' or 'descriptor', got {alignment_mode!r}")
        self.alignment_mode = alignment_mode

    def forward(self, outputs: dict, identity_outputs: dict | None, portrait: torch.Tensor, driver: torch.Tensor,
                descriptor_model: nn.Module | None = None, portrait_descriptors: torch.Tensor | None = None,
                driver_descriptors: torch.Tensor | None = None) -> dict:
        """``descriptor_model`` ((B, 3, H, W) -> {"value": (B, K, 2)}) and the (B, K, 2) descriptors are needed in descriptor mode."""
        generated = outputs["image"]
        generated_residual = blurred_residual(generated, portrait, self.alignment_blur_sigma)
        terms = {
            "reconstruction": F.l1_loss(generated, driver),
            "tv": total_variation(outputs["flow"].permute(0, 3, 1, 2)),
        }
        if self.alignment_mode == "blurred_residual":
            terms["alignment"] = F.l1_loss(generated_residual, blurred_residual(driver, portrait, self.alignment_blur_sigma))
        else:
            if descriptor_model is None or portrait_descriptors is None or driver_descriptors is None:
                raise ValueError("alignment_mode=descriptor needs a descriptor model and the batch's source/driver descriptors (data.descriptor_checkpoint)")
            generated_delta = descriptor_model(generated)["value"] - portrait_descriptors
            terms["alignment"] = F.l1_loss(generated_delta, driver_descriptors - portrait_descriptors)
            if identity_outputs is not None:
                count = identity_outputs["image"].shape[0]
                self_delta = descriptor_model(identity_outputs["image"])["value"] - portrait_descriptors[:count]
                terms["alignment"] = terms["alignment"] + self_delta.abs().mean()
        if identity_outputs is not None:
            terms["identity"] = F.l1_loss(identity_outputs["image"], portrait[: identity_outputs["image"].shape[0]])
        total = sum(self.weights[name] * value for name, value in terms.items())
        return {**terms, "residual_magnitude": generated_residual.detach().abs().mean(), "total": total}
