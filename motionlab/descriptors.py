"""Descriptor normalisation shared by training, inference and caching.

Keypoint dicts hold ``value`` (B, K, 2) in [-1, 1] and optionally ``jacobian`` (B, K, 2, 2).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError


def movement_scale(kp_source: torch.Tensor, kp_driving_initial: torch.Tensor) -> torch.Tensor:
    """(B,) ratio sqrt(area(hull(source kp))) / sqrt(area(hull(initial driving kp))), FOMM's movement-scale adaptation."""
    scales = []
    for source, initial in zip(kp_source.detach().cpu().numpy(), kp_driving_initial.detach().cpu().numpy()):
        try:
            scales.append(np.sqrt(ConvexHull(source).volume) / np.sqrt(ConvexHull(initial).volume))
        except QhullError as error:  # fewer than 3 non-collinear points: no area to compare
            raise ValueError(f"movement-scale adaptation needs >= 3 non-collinear keypoints ({error}); set adapt_movement_scale=false") from error
    return torch.tensor(scales, dtype=kp_source.dtype, device=kp_source.device)


def normalize_keypoints(kp_source: dict, kp_driving: dict, kp_driving_initial: dict, relative_movement: bool = True,
                        relative_jacobian: bool = True, adapt_movement_scale: bool = False, order: torch.Tensor | None = None) -> dict:
    """Driving keypoints expressed for the source (relative motion transfer).

    With ``relative_movement``: ``value = source + s * (driving - initial driving)`` (``s`` the
    movement scale when ``adapt_movement_scale``, else 1) and, with ``relative_jacobian``,
    ``jacobian = (J_driving J_initial^-1) J_source``. Without it the driving keypoints are used as they
    are (absolute transfer). ``order`` (K,) permutes the keypoints into the run's canonical order.
    """
    out = dict(kp_driving)
    if relative_movement:
        scale = movement_scale(kp_source["value"], kp_driving_initial["value"]).view(-1, 1, 1) if adapt_movement_scale else 1.0
        out["value"] = kp_source["value"] + scale * (kp_driving["value"] - kp_driving_initial["value"])
        if relative_jacobian and "jacobian" in kp_driving and "jacobian" in kp_source:
            out["jacobian"] = kp_driving["jacobian"] @ torch.inverse(kp_driving_initial["jacobian"]) @ kp_source["jacobian"]
    if order is not None:
        out = {key: value[:, order] if key in ("value", "jacobian") else value for key, value in out.items()}
    return out


def canonical_order(reference_keypoints: torch.Tensor) -> torch.Tensor:
    """A (K,) permutation sorting keypoints by their mean position on a fixed reference set (rows top to
    bottom in bands of 0.1, then left to right), so index k means the same facial place across the
    checkpoints of one run. ``reference_keypoints`` is (N, K, 2)."""
    mean = reference_keypoints.mean(dim=0)
    keys = [(round(float(y) * 10), float(x), k) for k, (x, y) in enumerate(mean.tolist())]
    return torch.tensor([k for _, _, k in sorted(keys)], dtype=torch.long)
