"""Dense motion: pixel-centre sampling grids, flow resizing, backward warping, total variation.

Convention (every function here):
    images are (B, C, H, W); sampling grids and flows are (B, H, W, 2), x first, in normalised
    coordinates where -1 and 1 are the outer *edges* of the image and pixel centres sit at
    ``(2 i + 1) / n - 1`` (``align_corners=False``, as ``grid_sample`` uses it here). A flow is an offset
    added to the identity grid: output pixel p samples the input at ``p + flow(p)`` (backward warping).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionlab.geometry.checks import check_shape


def identity_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, H, W, 2) grid of pixel-centre coordinates (x first), ``align_corners=False``."""
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1).unsqueeze(0)


def resize_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resample a (B, h, w, 2) flow to (B, height, width, 2) bilinearly; normalised offsets need no rescaling."""
    check_shape(flow, ["B", "H", "W", 2], "flow")
    if flow.shape[1:3] == (height, width):
        return flow
    resized = F.interpolate(flow.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)
    return resized.permute(0, 2, 3, 1)


def warp(image: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Backward-warp (B, C, H, W) ``image`` by a (B, h, w, 2) ``flow`` (resized to H x W first)."""
    check_shape(image, ["B", "C", "H", "W"], "image")
    check_shape(flow, [image.shape[0], "H", "W", 2], "flow")
    height, width = image.shape[-2:]
    grid = identity_grid(height, width, image.device, image.dtype) + resize_flow(flow, height, width)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def keypoints_to_flow_coordinates(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, K, 2) corner-aligned keypoints (:mod:`motionlab.geometry.keypoints`: +-1 at the outer pixel *centres*) in
    this module's edge-aligned coordinates (+-1 at the outer *edges*): ``u = k (n - 1) / n`` per axis."""
    check_shape(points, ["B", "K", 2], "keypoints")
    return points * points.new_tensor([(width - 1) / width, (height - 1) / height])


def flow_at(flow: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The (B, H, W, 2) flow bilinearly sampled at (B, K, 2) edge-aligned points -> (B, K, 2): where the input is read
    for the output at each point is ``points + flow_at(flow, points)``."""
    check_shape(flow, ["B", "H", "W", 2], "flow")
    check_shape(points, [flow.shape[0], "K", 2], "points")
    sampled = F.grid_sample(flow.permute(0, 3, 1, 2), points.unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[:, :, 0].permute(0, 2, 1)


def total_variation(field: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels of a (B, C, H, W) field (anisotropic TV), a scalar."""
    check_shape(field, ["B", "C", "H", "W"], "field")
    dy = (field[:, :, 1:, :] - field[:, :, :-1, :]).abs().mean()
    dx = (field[:, :, :, 1:] - field[:, :, :, :-1]).abs().mean()
    return dx + dy
