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
