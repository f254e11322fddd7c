"""LivePortrait's own pipeline (``LivePortraitPipeline.execute`` with ``LivePortraitWrapper``), step for step, for an
image source and a driving video already cropped to 256 px, as the reference the LivePortrait animate path is measured
against, on the same networks (motionlab's LivePortrait modules carry the release's architecture and call signatures,
and are equal to its code on the same weights: tests/models/test_liveportrait.py):

- ``prepare_source``: F's appearance volume ``f_s`` and M's ``x_s_info`` of the source, once;
- ``make_motion_template``: M on every driving frame at batch 1 (head-pose bins to degrees, the rotation matrix, the
  posed keypoints), kept as float32 numpy, as the release keeps it (and writes it to a ``.pkl``);
- then for every frame at batch 1: relative motion since the first driving frame (``R_d R_d0^T R_s``, expression,
  scale and translation deltas, t_z = 0), the ``expression-friendly`` motion multiplier fixed on the first frame,
  ``stitching``, the driving multiplier, ``warp_decode`` (W then G) and ``parse_output`` (clip, x255, floor to uint8).

The crop (InsightFace and the 203-point landmark model, files a user supplies) and the paste-back are left out on both
sides of the benchmark; the small keypoint arithmetic uses motionlab's head-pose functions, which implement the
release's ``headpose_pred_to_degree``, ``get_rotation_matrix`` and ``transform_keypoint``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import ConvexHull

from motionlab.geometry.head_pose import bins_to_degrees, pose_keypoints, rotation_matrix


def _kp_info(net: torch.nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """``get_kp_info`` + ``transform_keypoint``: M's outputs with the angles in degrees, reshaped, and the posed keypoints."""
    out = net.motion_extractor(image)
    b, k = image.shape[0], net.motion_extractor.num_kp
    info = {"pitch": bins_to_degrees(out["pitch"]), "yaw": bins_to_degrees(out["yaw"]), "roll": bins_to_degrees(out["roll"]),
            "t": out["t"], "exp": out["exp"].view(b, k, 3), "scale": out["scale"], "kp": out["kp"].view(b, k, 3)}
    info["R"] = rotation_matrix(info["pitch"], info["yaw"], info["roll"])
    info["x_s"] = pose_keypoints(info["kp"], info["R"], info["exp"], info["scale"], info["t"])
    return info


@torch.no_grad()
def liveportrait_execute(net: torch.nn.Module, source: torch.Tensor, driving: torch.Tensor, driving_multiplier: float = 1.0) -> list[np.ndarray]:
    """(1, 3, 256, 256) source crop and (T, 3, 256, 256) driving crops in [0, 1] -> T (512, 512, 3) uint8 renders."""
    f_s = net.appearance_feature_extractor(source)
    x_s_info = _kp_info(net, source)
    x_c_s, R_s, x_s = x_s_info["kp"], x_s_info["R"], x_s_info["x_s"]
    # the motion template: numpy float32 per frame, back to tensors in the loop (dct2device)
    template = [{key: value.numpy().astype(np.float32) for key, value in _kp_info(net, driving[i : i + 1]).items()} for i in range(driving.shape[0])]
    renders = []
    for i, entry in enumerate(template):
        x_d_i_info = {key: torch.from_numpy(value) for key, value in entry.items()}
        if i == 0:
            R_d_0, x_d_0_info = x_d_i_info["R"], dict(x_d_i_info)
        R_new = (x_d_i_info["R"] @ R_d_0.permute(0, 2, 1)) @ R_s
        delta_new = x_s_info["exp"] + (x_d_i_info["exp"] - x_d_0_info["exp"])
        scale_new = x_s_info["scale"] * (x_d_i_info["scale"] / x_d_0_info["scale"])
        t_new = x_s_info["t"] + (x_d_i_info["t"] - x_d_0_info["t"])
        t_new[..., 2].fill_(0)
        x_d_i_new = scale_new * (x_c_s @ R_new + delta_new) + t_new
        if i == 0:
            x_d_0_new = x_d_i_new
            motion_multiplier = float(np.sqrt(ConvexHull(x_s[0].numpy()).volume) / np.sqrt(ConvexHull(x_d_0_new[0].numpy()).volume))
        x_d_i_new = (x_d_i_new - x_d_0_new) * motion_multiplier + x_s
        x_d_i_new = net.stitching_retargeting_module.stitch(x_s, x_d_i_new)
        x_d_i_new = x_s + (x_d_i_new - x_s) * driving_multiplier
        warped = net.warping_module(f_s, kp_source=x_s, kp_driving=x_d_i_new)
        out = net.spade_generator(warped["out"])
        renders.append((np.clip(out.permute(0, 2, 3, 1).numpy(), 0, 1) * 255).astype(np.uint8)[0])
    return renders
