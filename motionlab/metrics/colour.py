"""Colour drift between the portrait and generated frames, in CIE Lab (kornia)."""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from motionlab.metrics.colour_difference import delta_e76, delta_e2000, mean_lab


class ColourDrift(Metric):
    """How far the generated frames' mean colour drifts from the portrait's, and how fast.

    ``update(portrait, generated, mask=None)``: portrait (B, 3, H, W), generated (B, T, 3, H, W) in
    [0, 1], mask (B, 1, H, W) the face region (whole image when omitted). Per frame, the region's mean
    Lab colour is compared with the portrait's. ``compute`` returns ``delta_e76`` and ``delta_e2000``
    (means over frames) and ``delta_e76_slope`` (mean over clips of the least-squares slope of ΔE76
    against the frame index, ΔE per frame; needs T >= 2).
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("de76_total", "de2000_total", "frames", "slope_total", "clips"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, portrait: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        if generated.ndim != 5 or portrait.ndim != 4 or generated.shape[0] != portrait.shape[0]:
            raise ValueError(f"ColourDrift expects portrait (B, 3, H, W) and generated (B, T, 3, H, W), got {tuple(portrait.shape)}, {tuple(generated.shape)}")
        b, t = generated.shape[:2]
        frame_mask = None if mask is None else mask.repeat_interleave(t, dim=0)
        reference = mean_lab(portrait, mask).repeat_interleave(t, dim=0)
        colours = mean_lab(generated.flatten(0, 1), frame_mask)
        de76 = delta_e76(reference, colours).view(b, t)
        self.de76_total += de76.sum()
        self.de2000_total += delta_e2000(reference, colours).sum()
        self.frames += b * t
        if t >= 2:
            index = torch.arange(t, dtype=torch.float64, device=de76.device)
            centred = index - index.mean()
            slopes = ((de76 - de76.mean(dim=1, keepdim=True)) * centred).sum(dim=1) / centred.square().sum()
            self.slope_total += slopes.sum()
            self.clips += b

    def compute(self) -> dict[str, torch.Tensor]:
        frames = self.frames.clamp_min(1)
        slope = self.slope_total / self.clips if self.clips > 0 else torch.tensor(math.nan, dtype=torch.float64)
        return {"delta_e76": self.de76_total / frames, "delta_e2000": self.de2000_total / frames, "delta_e76_slope": slope}
