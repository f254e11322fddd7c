"""Pure, differentiable geometry on images and flow fields.

Conventions: images are (B, C, H, W); sampling grids and flows are (B, H, W, 2) in normalised
coordinates (x, y) in [-1, 1] with ``align_corners=False`` pixel centres, as ``grid_sample`` expects.
A flow is an offset added to the identity grid: output pixel p samples the input at ``p + flow(p)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(tensor: torch.Tensor, ndim: int, name: str, shape_doc: str) -> None:
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(tensor.shape)}")


def identity_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, H, W, 2) grid of pixel-centre coordinates in [-1, 1] (x first)."""
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1).unsqueeze(0)


def resize_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resample a (B, H, W, 2) flow to (B, height, width, 2); normalised offsets need no rescaling."""
    _check(flow, 4, "flow", "(B, H, W, 2)")
    if flow.shape[1:3] == (height, width):
        return flow
    resized = F.interpolate(flow.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)
    return resized.permute(0, 2, 3, 1)


def warp(image: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Backward-warp (B, C, H, W) ``image`` by a (B, h, w, 2) ``flow`` (resized to H x W)."""
    _check(image, 4, "image", "(B, C, H, W)")
    _check(flow, 4, "flow", "(B, H, W, 2)")
    if flow.shape[-1] != 2 or flow.shape[0] != image.shape[0]:
        raise ValueError(f"flow must be (B={image.shape[0]}, H, W, 2), got {tuple(flow.shape)}")
    height, width = image.shape[-2:]
    grid = identity_grid(height, width, image.device, image.dtype) + resize_flow(flow, height, width)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def total_variation(field: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels of a (B, C, H, W) field (anisotropic TV)."""
    _check(field, 4, "field", "(B, C, H, W)")
    dy = (field[:, :, 1:, :] - field[:, :, :-1, :]).abs().mean()
    dx = (field[:, :, :, 1:] - field[:, :, :, :-1]).abs().mean()
    return dx + dy


# --- keypoint geometry (FOMM conventions: coordinates in [-1, 1] at pixel corners, align_corners=True) ---


def coordinate_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) grid with x, y spanning [-1, 1] from the first to the last pixel (corner-aligned)."""
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype) if width > 1 else torch.zeros(1, device=device, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype) if height > 1 else torch.zeros(1, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1)


def heatmap_to_keypoints(heatmap: torch.Tensor) -> torch.Tensor:
    """Soft-argmax: expected (x, y) of (B, K, H, W) probability maps (each summing to 1) -> (B, K, 2)."""
    _check(heatmap, 4, "heatmap", "(B, K, H, W)")
    grid = coordinate_grid(*heatmap.shape[-2:], heatmap.device, heatmap.dtype)
    return (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))


def keypoints_to_gaussian(keypoints: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """Isotropic Gaussians ``exp(-|p - kp|^2 / (2 variance))`` at (B, K, 2) keypoints -> (B, K, H, W)."""
    _check(keypoints, 3, "keypoints", "(B, K, 2)")
    grid = coordinate_grid(height, width, keypoints.device, keypoints.dtype)
    offsets = grid.view(1, 1, height, width, 2) - keypoints.view(*keypoints.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * offsets.square().sum(-1) / variance)


def keypoints_to_pixels(keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Corner-aligned [-1, 1] keypoints to pixel coordinates (x in [0, W - 1], y in [0, H - 1])."""
    scale = keypoints.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])
    return (keypoints + 1.0) * scale


def pixels_to_keypoints(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`keypoints_to_pixels`."""
    scale = points.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])
    return points / scale - 1.0


def sparse_motions(height: int, width: int, kp_driving: torch.Tensor, kp_source: torch.Tensor,
                   jacobian_driving: torch.Tensor | None = None, jacobian_source: torch.Tensor | None = None) -> torch.Tensor:
    """First-order local motions around each keypoint, plus the identity: (B, K + 1, H, W, 2) sampling grids.

    Near driving keypoint k, a driving-frame point z maps to the source as
    ``kp_source_k + J_source_k J_driving_k^-1 (z - kp_driving_k)`` (Jacobians optional).
    """
    b, k = kp_driving.shape[:2]
    identity = coordinate_grid(height, width, kp_driving.device, kp_driving.dtype).view(1, 1, height, width, 2)
    relative = identity - kp_driving.view(b, k, 1, 1, 2)
    if jacobian_driving is not None and jacobian_source is not None:
        jacobian = jacobian_source @ torch.inverse(jacobian_driving)
        relative = (jacobian.view(b, k, 1, 1, 2, 2) @ relative.unsqueeze(-1)).squeeze(-1)
    driving_to_source = relative + kp_source.view(b, k, 1, 1, 2)
    return torch.cat([identity.expand(b, 1, height, width, 2), driving_to_source], dim=1)


class RandomAffineTPS:
    """A random smooth warp: an affine map plus a thin-plate spline over a control grid (FOMM's
    equivariance transform). Sampled once per batch element; applies to images and to points.

    Args:
        batch: number of independent warps.
        sigma_affine: std of the affine perturbation from the identity.
        sigma_tps: std of the TPS control-point weights (0 disables TPS).
        points_tps: the TPS control grid is ``points_tps x points_tps`` over [-1, 1]^2.
    """

    def __init__(self, batch: int, sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5,
                 generator: torch.Generator | None = None, device=None, dtype=torch.float32):
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
            distances = (points.unsqueeze(2) - self.control_points.unsqueeze(1)).abs().sum(-1)  # (B, N, P) L1, as FOMM
            radial = distances.square() * torch.log(distances + 1e-6)
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
