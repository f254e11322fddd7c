"""uint8 frames <-> float image tensors: the one conversion every reader, writer, metric and preview uses.

Convention:
    uint8 frames are numpy arrays (..., H, W, 3), RGB, 0-255 (what decoders give and encoders take). Image tensors
    are float32 (..., 3, H, W) in [0, 1]. To uint8: clamped to [0, 1], times 255, rounded half to even (torch.round).
    A (N, H, W, 3) batch converts to a channels-last (N, 3, H, W) view, which the CPU convolutions run faster on.
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1]."""
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"to_tensor expects (..., H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.require(frames, requirements=("C", "W"))).movedim(-1, -3).float().div_(255.0)


def to_uint8(images: torch.Tensor, quantize: str = "round") -> np.ndarray:
    """(..., 3, H, W) float in [0, 1] -> (..., H, W, 3) uint8 (clamped, then rounded, or truncated with ``floor`` as
    code that casts ``x * 255`` to uint8 does: a release's own output convention)."""
    scaled = images.detach().clamp(0, 1) * 255
    return (scaled.round() if quantize == "round" else scaled.floor()).to(torch.uint8).movedim(-3, -1).cpu().numpy()


def side_by_side(*columns: torch.Tensor) -> np.ndarray:
    """Concatenate (3, H, W) images (or (T, 3, H, W) sequences) left to right as uint8."""
    return np.concatenate([to_uint8(c) for c in columns], axis=-2)
