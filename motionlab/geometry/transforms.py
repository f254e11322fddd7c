"""Random smooth warps (FOMM's equivariance transform: affine + thin-plate spline), for images and points alike.

Convention: points are (B, N, 2), x first, corner-aligned [-1, 1] (see :mod:`motionlab.geometry.keypoints`);
images are (B, C, H, W) and are resampled with ``grid_sample(align_corners=True)``, reflection padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionlab.geometry.keypoints import coordinate_grid


class RandomAffineTPS:
    """A random smooth warp: an affine map plus a thin-plate spline over a control grid (FOMM's
    equivariance transform). Sampled once per batch element; applies to images and to points.

    Args:
        batch: number of independent warps.
        sigma_affine: std of the affine perturbation from the identity.
        sigma_tps: std of the TPS control-point weights (0 disables TPS).
        points_tps: the TPS control grid is ``points_tps x points_tps`` over [-1, 1]^2.
        kernel: the radial function of the control points: ``fomm`` (FOMM's ``d^2 log d`` of the L1 distance d) or
            ``tps`` (TPSMM's ``r^2 log r^2`` of the Euclidean distance r).
    """

    def __init__(self, batch: int, sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5,
                 generator: torch.Generator | None = None, device=None, dtype=torch.float32, kernel: str = "fomm"):
        if kernel not in ("fomm", "tps"):
            raise ValueError(f"kernel must be 'fomm' or 'tps', got {kernel!r}")
        self.kernel = kernel
        noise = torch.normal(0.0, sigma_affine, (batch, 2, 3), generator=generator).to(device=device, dtype=dtype)
        self.theta = noise + torch.eye(2, 3, device=device, dtype=dtype)
        self.tps = sigma_tps > 0
        if self.tps:
            self.control_points = coordinate_grid(points_tps, points_tps, device, dtype).view(1, -1, 2)
            self.control_params = torch.normal(0.0, sigma_tps, (batch, 1, points_tps**2), generator=generator).to(device=device, dtype=dtype)

    def warp_points(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) points in [-1, 1] -> their images under the warp."""
        warped = points @ self.theta[:, :, :2].transpose(1, 2) + self.theta[:, :, 2].unsqueeze(1)
        if self.tps:
            offsets = points.unsqueeze(2) - self.control_points.unsqueeze(1)  # (B, N, P, 2)
            if self.kernel == "fomm":
                distances = offsets.abs().sum(-1)  # L1, as FOMM's code has it
                radial = distances.square() * torch.log(distances + 1e-6)
            else:
                squared = offsets.square().sum(-1)  # the thin-plate kernel r^2 log r^2, as TPSMM's code has it
                radial = squared * torch.log(squared + 1e-9)
            warped = warped + (radial * self.control_params).sum(-1, keepdim=True)
        return warped

    def warp_images(self, images: torch.Tensor) -> torch.Tensor:
        """Backward-warp (B, C, H, W) images: output pixel p samples the input at ``warp_points(p)``."""
        b, _, h, w = images.shape
        grid = self.warp_points(coordinate_grid(h, w, images.device, images.dtype).view(1, -1, 2).expand(b, -1, -1))
        return F.grid_sample(images, grid.view(b, h, w, 2), padding_mode="reflection", align_corners=True)

    def jacobian(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 2, 2) Jacobian of :meth:`warp_points` at (B, N, 2) points (autograd)."""
        with torch.enable_grad():
            points = points.detach().requires_grad_(True)
            warped = self.warp_points(points)
            grad_x = torch.autograd.grad(warped[..., 0].sum(), points, create_graph=True)[0]
            grad_y = torch.autograd.grad(warped[..., 1].sum(), points, create_graph=True)[0]
        return torch.stack([grad_x, grad_y], dim=-2)
