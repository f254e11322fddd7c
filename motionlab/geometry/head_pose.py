"""Head pose and 3-D implicit keypoints (LivePortrait / face-vid2vid style): pose from binned logits, rotation
matrices, posing canonical keypoints, relative driving, and the 3-D grids and sampling of a feature volume.

Convention:
    keypoints are (B, K, 3), (x, y, z), in the normalised space of the feature volume: x along width, y along
    height, z along depth, each spanning [-1, 1] from the first to the last voxel centre (``coordinate_grid_3d``).
    Points are *row vectors* multiplied on the right: a posed point is ``p @ R``. Angles are in degrees: pitch
    about x, yaw about y, roll about z; ``R = (Rz @ Ry @ Rx)^T``, so yaw 90 deg maps x to -z. The release samples
    these grids with ``grid_sample(align_corners=False)`` although they are corner-aligned; its weights were
    trained that way, so the warping module keeps it. Volumes are (B, C, D, H, W).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from motionlab.geometry.checks import check_shape
from motionlab.geometry.keypoints import gaussian_without_subnormals


def bins_to_degrees(logits: torch.Tensor, bin_width: float = 3.0, offset: float = 97.5) -> torch.Tensor:
    """(B, N) head-pose logits -> (B,) degrees: the softmax expectation of the bin index, ``* bin_width - offset``
    (66 bins of 3 deg cover [-97.5, 100.5) deg)."""
    check_shape(logits, ["B", "N"], "pose logits")
    index = torch.arange(logits.shape[1], device=logits.device, dtype=logits.dtype)
    return (torch.softmax(logits, dim=1) * index).sum(dim=1) * bin_width - offset


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(B,) angles in degrees -> (B, 3, 3) ``R = (Rz(roll) @ Ry(yaw) @ Rx(pitch))^T`` (points are posed as ``p @ R``)."""
    x, y, z = (angle.reshape(-1) * (math.pi / 180.0) for angle in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rot_x = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], dim=1).view(-1, 3, 3)
    rot_y = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], dim=1).view(-1, 3, 3)
    rot_z = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], dim=1).view(-1, 3, 3)
    return (rot_z @ rot_y @ rot_x).transpose(1, 2)


def pose_keypoints(canonical: torch.Tensor, rotation: torch.Tensor, expression: torch.Tensor, scale: torch.Tensor,
                   translation: torch.Tensor) -> torch.Tensor:
    """LivePortrait's Eqn. 2: ``scale * (canonical @ R + expression) + t`` with only t_x, t_y applied.

    Args: canonical and expression (B, K, 3), rotation (B, 3, 3), scale (B, 1) or (B,), translation (B, 3).
    """
    check_shape(canonical, ["B", "K", 3], "canonical keypoints")
    check_shape(expression, list(canonical.shape), "expression")
    check_shape(rotation, [canonical.shape[0], 3, 3], "rotation")
    check_shape(translation, [canonical.shape[0], 3], "translation")
    planar = torch.cat([translation[:, :2], torch.zeros_like(translation[:, 2:])], dim=1)
    return scale.reshape(-1, 1, 1) * (canonical @ rotation + expression) + planar[:, None, :]


# LivePortrait's expression rows per animation region (its live_portrait_pipeline.py): the lips' and the eyes' keypoints,
# and, for absolute driving of the whole expression, the rows (and coordinates) it takes from the driver
LIP_ROWS = (6, 12, 14, 17, 19, 20)
EYE_ROWS = (11, 13, 15, 16, 18)
EXPRESSION_ROWS = (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
REGIONS = ("all", "exp", "pose", "lip", "eyes")


def driving_keypoints(canonical_source: torch.Tensor, source: dict[str, torch.Tensor], driving: dict[str, torch.Tensor],
                      initial: dict[str, torch.Tensor], relative: bool = True, region: str = "all") -> torch.Tensor:
    """The source's keypoints driven by a frame, as LivePortrait's pipeline sets them for ``animation_region``.

    ``source``, ``driving`` and ``initial`` (the first driving frame) hold ``rotation`` (B, 3, 3), ``expression``
    (B, K, 3), ``scale`` (B, 1) and ``translation`` (B, 3) (batch-1 entries broadcast); the result is
    ``scale (canonical_s @ R + exp) + t`` with t_z = 0. Relative: ``R = (R_d R_d0^T) R_s`` (``all``, ``pose``),
    ``exp = exp_s + exp_d - exp_d0`` (``all``, ``exp``; only the lip rows for ``lip``, the eye rows for ``eyes``),
    ``scale = scale_s scale_d / scale_d0`` (``all``), ``t = t_s + t_d - t_d0`` (``all``, ``pose``); what a region does
    not drive stays the source's. Absolute: ``R = R_d`` and ``t = t_d`` (``all``, ``pose``), the driver's expression
    in the rows the release takes (``all`` / ``exp``: :data:`EXPRESSION_ROWS`, rows 3-4 in y, 5 and 8 in z, 9 in y
    and z; ``lip`` / ``eyes``: theirs), the source's scale.
    """
    if region not in REGIONS:
        raise ValueError(f"animation region must be one of {', '.join(REGIONS)}, got {region!r}")
    batch = max(driving["rotation"].shape[0], source["rotation"].shape[0])
    exp_s = source["expression"].expand(batch, -1, -1)
    posed, whole = region in ("all", "pose"), region in ("all", "exp")
    if relative:
        rotation = driving["rotation"] @ initial["rotation"].transpose(1, 2) @ source["rotation"] if posed else source["rotation"]
        moved = exp_s + (driving["expression"] - initial["expression"])
        scale = source["scale"] * (driving["scale"] / initial["scale"]) if region == "all" else source["scale"]
        translation = source["translation"] + (driving["translation"] - initial["translation"]) if posed else source["translation"]
    else:
        rotation = driving["rotation"] if posed else source["rotation"]
        moved = driving["expression"].expand(batch, -1, -1)
        scale = source["scale"]
        translation = driving["translation"] if posed else source["translation"]
    expression = moved if whole and relative else _region_expression(exp_s, moved, region)
    return pose_keypoints(canonical_source.expand(batch, -1, -1), rotation.expand(batch, -1, -1), expression,
                          scale.expand(batch, -1), translation.expand(batch, -1))


def _region_expression(exp_s: torch.Tensor, moved: torch.Tensor, region: str) -> torch.Tensor:
    """The source's expression with the rows (and single coordinates) the release takes from ``moved`` for ``region``:
    ``lip`` / ``eyes`` their rows; ``all`` / ``exp`` :data:`EXPRESSION_ROWS`, rows 3-4 in y, 5 and 8 in z, 9 in y and z."""
    mask = torch.zeros_like(exp_s[:1])
    rows = {"lip": LIP_ROWS, "eyes": EYE_ROWS, "pose": ()}.get(region, EXPRESSION_ROWS)
    mask[:, list(rows)] = 1.0
    if region in ("all", "exp"):
        mask[:, 3:5, 1] = mask[:, 5, 2] = mask[:, 8, 2] = 1.0
        mask[:, 9, 1:] = 1.0
    return exp_s + mask * (moved - exp_s)


def kalman_smooth(series: np.ndarray, observation_variance: float = 3e-7, process_variance: float = 1e-5) -> np.ndarray:
    """(T, D) observations -> (T, D) Rauch-Tung-Striebel smoothed means of a random walk, each coordinate on its own:
    LivePortrait's ``smooth`` (pykalman's ``KalmanFilter.smooth`` with identity transition and observation, transition
    covariance ``process_variance`` I, observation covariance ``observation_variance`` I, unit initial covariance and
    the first observation as the initial mean), in float64. The covariances are the same for every coordinate, so the
    gains are scalars computed once."""
    series = np.asarray(series, dtype=np.float64)
    frames = len(series)
    predicted_var, filtered_var = np.empty(frames), np.empty(frames)
    predicted, filtered = np.empty_like(series), np.empty_like(series)
    for t in range(frames):
        predicted[t] = series[0] if t == 0 else filtered[t - 1]
        predicted_var[t] = 1.0 if t == 0 else filtered_var[t - 1] + process_variance
        gain = predicted_var[t] / (predicted_var[t] + observation_variance)
        filtered[t] = predicted[t] + gain * (series[t] - predicted[t])
        filtered_var[t] = (1.0 - gain) * predicted_var[t]
    smoothed = filtered.copy()
    for t in range(frames - 2, -1, -1):
        gain = filtered_var[t] / predicted_var[t + 1]
        smoothed[t] = filtered[t] + gain * (smoothed[t + 1] - predicted[t + 1])
    return smoothed


def _smoothed(values: torch.Tensor, observation_variance: float) -> torch.Tensor:
    """(T, ...) tensor smoothed through time by :func:`kalman_smooth`, back as float32 (the release's dtype)."""
    flat = values.detach().reshape(len(values), -1).double().cpu().numpy()
    return torch.from_numpy(kalman_smooth(flat, observation_variance)).float().reshape(values.shape).to(values.device)


def source_video_keypoints(canonical_source: torch.Tensor, source: dict[str, torch.Tensor], driving: dict[str, torch.Tensor],
                           initial: dict[str, torch.Tensor], relative: bool = True, region: str = "all",
                           observation_variance: float = 3e-7) -> torch.Tensor:
    """The keypoints of video-to-video animation: each source frame driven by the driver frame of the same index, as
    LivePortrait's pipeline sets them when the source is a video.

    ``canonical_source`` (T, K, 3) and ``source`` / ``driving`` hold one entry per frame (T), ``initial`` the first
    driving frame's (as in :func:`driving_keypoints`). The driven rotation (relative: ``(R_d R_d0^T) R_s``, absolute:
    ``R_d``; ``all`` and ``pose``) and expression (relative: ``exp_s + exp_d - exp_d0``, absolute: ``exp_d``) are
    smoothed through time (:func:`kalman_smooth`, ``observation_variance``: the release's
    ``driving_smooth_observation_variance``), the expression taken only in the region's rows (also for ``all``);
    scale is each source frame's; translation the source frame's, or with absolute posed driving the driver's.
    """
    if region not in REGIONS:
        raise ValueError(f"animation region must be one of {', '.join(REGIONS)}, got {region!r}")
    frames = canonical_source.shape[0]
    check_shape(canonical_source, [frames, "K", 3], "canonical source keypoints")
    if driving["rotation"].shape[0] != frames:
        raise ValueError(f"video-to-video pairs frames: {frames} source frames, {driving['rotation'].shape[0]} driving frames")
    posed = region in ("all", "pose")
    if relative:
        rotation = driving["rotation"] @ initial["rotation"].transpose(1, 2) @ source["rotation"]
        moved = source["expression"] + (driving["expression"] - initial["expression"])
        translation = source["translation"]
    else:
        rotation, moved = driving["rotation"], driving["expression"]
        translation = driving["translation"] if posed else source["translation"]
    rotation = _smoothed(rotation, observation_variance) if posed else source["rotation"]
    expression = _region_expression(source["expression"], _smoothed(moved, observation_variance), region)
    return pose_keypoints(canonical_source, rotation, expression, source["scale"], translation)


def coordinate_grid_3d(depth: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(D, H, W, 3) grid of (x, y, z), each spanning [-1, 1] from the first to the last voxel centre."""
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) if n > 1 else torch.zeros(1, device=device, dtype=dtype)
            for n in (depth, height, width)]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    return torch.stack((xx, yy, zz), dim=-1)


def keypoints_to_gaussian_3d(keypoints: torch.Tensor, depth: int, height: int, width: int, variance: float) -> torch.Tensor:
    """Isotropic Gaussians ``exp(-|p - kp|^2 / (2 variance))`` at (B, K, 3) keypoints -> (B, K, D, H, W) (subnormal
    tails set to 0: :func:`~motionlab.geometry.keypoints.gaussian_without_subnormals`)."""
    check_shape(keypoints, ["B", "K", 3], "keypoints")
    grid = coordinate_grid_3d(depth, height, width, keypoints.device, keypoints.dtype)
    offsets = grid.view(1, 1, depth, height, width, 3) - keypoints.view(*keypoints.shape[:2], 1, 1, 1, 3)
    return gaussian_without_subnormals(-0.5 * offsets.square().sum(-1) / variance)


def sample_volume(volume: torch.Tensor, grid: torch.Tensor, depth_sliced: bool = False) -> torch.Tensor:
    """Trilinear sampling of (B, C, D, H, W) ``volume`` at (B, D', H', W', 3) ``grid`` points (x, y, z in [-1, 1],
    ``align_corners=False``, zeros outside) -> (B, C, D', H', W').

    ``depth_sliced`` computes the same thing with 4-D ``grid_sample`` only: each depth slice is sampled bilinearly
    at (x, y) and weighted by its linear interpolation weight in z, ``max(0, 1 - |z_pixel - d|)``. Runtimes
    without 5-D GridSample (ONNX before opset 20, some GPU providers) run that form; it costs D 2-D samplings.
    """
    check_shape(volume, ["B", "C", "D", "H", "W"], "volume")
    check_shape(grid, [volume.shape[0], "D", "H", "W", 3], "grid")
    if not depth_sliced:
        return F.grid_sample(volume, grid, align_corners=False)
    b, c, d, h, w = volume.shape
    out_shape = grid.shape[1:4]
    planar = grid[..., :2].reshape(b, -1, out_shape[2], 2)
    z = ((grid[..., 2] + 1.0) * d - 1.0) / 2.0
    out = volume.new_zeros(b, c, *out_shape)
    for index in range(d):
        weight = (1.0 - (z - index).abs()).clamp(min=0.0)
        sampled = F.grid_sample(volume[:, :, index], planar, align_corners=False).view(b, c, *out_shape)
        out = out + sampled * weight.unsqueeze(1)
    return out
