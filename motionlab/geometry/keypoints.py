"""Keypoints: one typed container shared by detectors, the descriptor cache, metrics and inference, and the
keypoint geometry of FOMM-style motion models.

Convention (every function here, and :class:`Keypoints` with ``convention="normalized"``):
    keypoints are (B, K, 2), x first, in [-1, 1] with *corner-aligned* pixel coordinates: -1 is the centre of
    the first pixel and 1 the centre of the last (``align_corners=True``, as the published FOMM weights were
    trained). ``convention="pixels"`` holds x in [0, W - 1], y in [0, H - 1], origin at the top-left pixel's
    centre. Jacobians are (B, K, 2, 2) local linear maps d(position)/d(position), in normalised units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from motionlab.geometry.checks import check_shape

Convention = Literal["normalized", "pixels"]


@dataclass(frozen=True)
class HeadPose:
    """A rigid head pose per batch element: ``rotation`` (B, 3, 3), ``translation`` (B, 3), ``scale`` (B,)."""

    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor


@dataclass(frozen=True)
class Keypoints:
    """Keypoints of a batch of images and what is known about them.

    Args:
        value: (B, K, 2) positions, in ``convention``.
        size: (H, W) of the images they were detected on (needed to change convention).
        convention: ``"normalized"`` (corner-aligned [-1, 1]) or ``"pixels"``; see the module docstring.
        jacobian: optional (B, K, 2, 2) local affine maps (FOMM), in normalised units.
        depth: optional (B, K) third coordinate of 3-D keypoints (LivePortrait-style implicit keypoints).
        pose: optional :class:`HeadPose` the keypoints were posed with.
    """

    value: torch.Tensor
    size: tuple[int, int]
    convention: Convention = "normalized"
    jacobian: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    pose: HeadPose | None = None

    def __post_init__(self) -> None:
        check_shape(self.value, ["B", "K", 2], "keypoints.value")
        if self.convention not in ("normalized", "pixels"):
            raise ValueError(f"keypoint convention must be 'normalized' or 'pixels', got {self.convention!r}")
        if self.jacobian is not None:
            check_shape(self.jacobian, [*self.value.shape[:2], 2, 2], "keypoints.jacobian")
        if self.depth is not None:
            check_shape(self.depth, list(self.value.shape[:2]), "keypoints.depth")

    def _pixel_scale(self) -> torch.Tensor:
        height, width = self.size
        return self.value.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])

    def to_pixels(self) -> "Keypoints":
        """The same keypoints with ``value`` in pixels (Jacobians and depth stay normalised)."""
        if self.convention == "pixels":
            return self
        return replace(self, value=(self.value + 1.0) * self._pixel_scale(), convention="pixels")

    def to_normalized(self) -> "Keypoints":
        if self.convention == "normalized":
            return self
        return replace(self, value=self.value / self._pixel_scale() - 1.0, convention="normalized")

    def map(self, function) -> "Keypoints":
        """Apply ``function`` to every tensor (value, jacobian, depth, pose): indexing, ``expand``, ``to``, ``detach``."""
        pose = None if self.pose is None else HeadPose(*(function(t) for t in (self.pose.rotation, self.pose.translation, self.pose.scale)))
        return replace(self, value=function(self.value), jacobian=None if self.jacobian is None else function(self.jacobian),
                       depth=None if self.depth is None else function(self.depth), pose=pose)

    def expand(self, batch: int) -> "Keypoints":
        """Batch-1 keypoints repeated (as a view) ``batch`` times."""
        return self.map(lambda t: t.expand(batch, *t.shape[1:]))

    def as_arrays(self) -> dict[str, np.ndarray]:
        """``value`` (and ``jacobian`` / ``depth`` where present) as numpy arrays, for files."""
        return {name: getattr(self, name).detach().cpu().numpy() for name in ("value", "jacobian", "depth") if getattr(self, name) is not None}


def coordinate_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) grid, x first, spanning [-1, 1] from the first to the last pixel centre (corner-aligned)."""
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype) if width > 1 else torch.zeros(1, device=device, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype) if height > 1 else torch.zeros(1, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1)


def heatmap_to_keypoints(heatmap: torch.Tensor) -> torch.Tensor:
    """Soft-argmax: the expected (x, y) of (B, K, H, W) probability maps (each summing to 1) -> (B, K, 2), normalised."""
    check_shape(heatmap, ["B", "K", "H", "W"], "heatmap")
    grid = coordinate_grid(*heatmap.shape[-2:], heatmap.device, heatmap.dtype)
    return (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))


def gaussian_without_subnormals(exponent: torch.Tensor) -> torch.Tensor:
    """``exp(exponent)``, 0 where it would be a subnormal number (below ``torch.finfo(dtype).tiny``, 1.2e-38 in float32).

    A keypoint Gaussian at variance 0.01 underflows over most of the grid, into subnormals wherever the exponent is
    below -87; CPUs compute on those tens of times slower (PyTorch's worker threads do not flush them to zero), and
    every convolution that reads the heatmaps pays: LivePortrait's warping hourglass, 3.7x on its largest
    convolution. The change is below 1.2e-38."""
    return torch.exp(exponent).masked_fill(exponent < math.log(torch.finfo(exponent.dtype).tiny), 0.0)


def keypoints_to_gaussian(keypoints: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """Isotropic Gaussians ``exp(-|p - kp|^2 / (2 variance))`` at (B, K, 2) normalised keypoints -> (B, K, H, W)
    (subnormal tails set to 0: :func:`gaussian_without_subnormals`)."""
    check_shape(keypoints, ["B", "K", 2], "keypoints")
    grid = coordinate_grid(height, width, keypoints.device, keypoints.dtype)
    offsets = grid.view(1, 1, height, width, 2) - keypoints.view(*keypoints.shape[:2], 1, 1, 2)
    return gaussian_without_subnormals(-0.5 * offsets.square().sum(-1) / variance)


def sparse_motions(height: int, width: int, kp_driving: Keypoints, kp_source: Keypoints) -> torch.Tensor:
    """First-order local motions around each keypoint, plus the identity: (B, K + 1, H, W, 2) sampling grids.

    Near driving keypoint k, a driving-frame point z maps to the source as
    ``kp_source_k + J_source_k J_driving_k^-1 (z - kp_driving_k)`` (a translation when either has no Jacobians).
    Both keypoint sets must be normalised; the grids are corner-aligned (``grid_sample(align_corners=True)``).
    """
    if kp_driving.convention != "normalized" or kp_source.convention != "normalized":
        raise ValueError("sparse_motions takes normalised keypoints (call .to_normalized())")
    driving, source = kp_driving.value, kp_source.value
    b, k = driving.shape[:2]
    identity = coordinate_grid(height, width, driving.device, driving.dtype).view(1, 1, height, width, 2)
    relative = identity - driving.view(b, k, 1, 1, 2)
    if kp_driving.jacobian is not None and kp_source.jacobian is not None:
        jacobian = kp_source.jacobian @ torch.inverse(kp_driving.jacobian)
        relative = (jacobian.view(b, k, 1, 1, 2, 2) @ relative.unsqueeze(-1)).squeeze(-1)
    driving_to_source = relative + source.view(b, k, 1, 1, 2)
    return torch.cat([identity.expand(b, 1, height, width, 2), driving_to_source], dim=1)


def movement_scale(kp_source: Keypoints, kp_driving_initial: Keypoints) -> torch.Tensor:
    """(B,) ratio sqrt(area(hull(source))) / sqrt(area(hull(initial driving))), FOMM's movement-scale adaptation."""
    from scipy.spatial import ConvexHull, QhullError  # ~0.4 s to import: only where the scale is adapted

    scales = []
    for source, initial in zip(kp_source.value.detach().float().cpu().numpy(), kp_driving_initial.value.detach().float().cpu().numpy()):
        try:
            scales.append(np.sqrt(ConvexHull(source).volume) / np.sqrt(ConvexHull(initial).volume))
        except QhullError as error:  # fewer than 3 non-collinear points: no area to compare
            raise ValueError(f"movement-scale adaptation needs >= 3 non-collinear keypoints ({error}); set adapt_movement_scale=false") from error
    return torch.tensor(scales, dtype=kp_source.value.dtype, device=kp_source.value.device)


def relative_motion(kp_source: Keypoints, kp_driving: Keypoints, kp_driving_initial: Keypoints, relative_movement: bool = True,
                    relative_jacobian: bool = True, adapt_movement_scale: bool = False) -> Keypoints:
    """Driving keypoints expressed for the source (FOMM's relative motion transfer), all normalised.

    With ``relative_movement``: ``value = source + s * (driving - initial driving)`` (``s`` the movement scale
    when ``adapt_movement_scale``, else 1) and, with ``relative_jacobian``, ``jacobian = (J_driving J_initial^-1)
    J_source``. Without it the driving keypoints are used as they are (absolute transfer).
    """
    if not relative_movement:
        return kp_driving
    scale = movement_scale(kp_source, kp_driving_initial).view(-1, 1, 1) if adapt_movement_scale else 1.0
    value = kp_source.value + scale * (kp_driving.value - kp_driving_initial.value)
    jacobian = kp_driving.jacobian
    if relative_jacobian and kp_driving.jacobian is not None and kp_source.jacobian is not None:
        jacobian = kp_driving.jacobian @ torch.inverse(kp_driving_initial.jacobian) @ kp_source.jacobian
    return replace(kp_driving, value=value, jacobian=jacobian)
