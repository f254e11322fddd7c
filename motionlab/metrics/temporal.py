"""Temporal coherence of generated sequences.

All states are sums and counts reduced by summation, so DDP values equal single-process values.
Frames are (B, T, 3, H, W) in [0, 1]; ``Δx_t = x_{t+1} - x_t``.
"""

from __future__ import annotations

import kornia.filters as KF
import torch

from motionlab.metrics.base import MeanState


def _check_clips(name: str, *clips: torch.Tensor, min_frames: int = 2) -> None:
    for clip in clips:
        if clip.ndim != 5 or clip.shape[1] < min_frames:
            raise ValueError(f"{name} expects (B, T>={min_frames}, C, H, W) clips, got {tuple(clip.shape)}")
    if len({tuple(c.shape) for c in clips}) > 1:
        raise ValueError(f"{name}: clips differ in shape: {[tuple(c.shape) for c in clips]}")


class TemporalDifferenceConsistency(MeanState):
    """Mean over pixels and frame pairs of ``|Δgenerated_t - Δdriver_t|``.

    The generated clip is aligned with the driver (it re-renders the driver's motion), so its
    frame-to-frame change should equal the driver's; 0 when they change identically. A generated
    clip lagging the driver by k frames scores higher the larger k.
    """

    def update(self, generated: torch.Tensor, driver: torch.Tensor) -> None:
        _check_clips("TemporalDifferenceConsistency", generated, driver)
        self._add(((generated.diff(dim=1)) - driver.diff(dim=1)).abs())


class Flicker(MeanState):
    """High-frequency energy of the generated frame-to-frame change where the driver is static.

    With ``Δg`` the generated change and ``HP(x) = x - gaussian_blur(x, sigma)``, flicker is the mean
    of ``HP(Δg)^2`` over pixels whose driver change ``max_c |Δdriver|`` is below ``static_threshold``
    (the background and still parts of the face). 0 for a perfectly stable output.
    """

    def __init__(self, static_threshold: float = 0.02, sigma: float = 1.5, **kwargs):
        super().__init__(**kwargs)
        self.static_threshold, self.sigma = static_threshold, sigma
        self.kernel = 2 * int(round(3 * sigma)) + 1

    def update(self, generated: torch.Tensor, driver: torch.Tensor) -> None:
        _check_clips("Flicker", generated, driver)
        change = generated.diff(dim=1).flatten(0, 1)
        blurred = KF.gaussian_blur2d(change, (self.kernel, self.kernel), (self.sigma, self.sigma), border_type="replicate")
        static = (driver.diff(dim=1).flatten(0, 1).abs().amax(dim=1, keepdim=True) < self.static_threshold).to(change.dtype)
        self._add((change - blurred).square().mean(dim=1, keepdim=True), static)


class MotionSmoothness(MeanState):
    """Mean second difference ``||k_{t+1} - 2 k_t + k_{t-1}||_2`` of (B, T, K, 2) keypoint trajectories,
    in the trajectories' units (pixels): 0 for constant-velocity motion, larger for jitter."""

    def update(self, trajectories: torch.Tensor) -> None:
        if trajectories.ndim != 4 or trajectories.shape[1] < 3 or trajectories.shape[-1] != 2:
            raise ValueError(f"MotionSmoothness expects (B, T>=3, K, 2) trajectories, got {tuple(trajectories.shape)}")
        self._add(trajectories.diff(n=2, dim=1).norm(dim=-1))
