"""The Thin-Plate Spline Motion Model's demo loop (``demo.py``'s ``make_animation`` and ``relative_kp``), step for step,
as the reference the TPSMM animate path is measured against, on the same networks (motionlab's TPSMM modules carry the
release's architecture, names and call signatures):

- the source's and the first driver frame's keypoints are detected once; then for every frame, at batch 1: detect the
  driver's keypoints; ``relative`` moves the source keypoints by the driver's displacement since its first frame times
  sqrt(source hull area / first-frame hull area) (always: the demo's relative mode adapts the movement scale),
  ``standard`` uses them as they are, ``avd`` asks the AVD network; then the dense motion network and the whole
  inpainting network (which encodes the source again) run;
- every prediction is kept.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import ConvexHull

from motionlab.geometry import Keypoints


def tpsmm_relative_kp(kp_source: Keypoints, kp_driving: Keypoints, kp_initial: Keypoints) -> Keypoints:
    """``relative_kp`` of the demo, batch 1."""
    scale = float(np.sqrt(ConvexHull(kp_source.value[0].numpy()).volume) / np.sqrt(ConvexHull(kp_initial.value[0].numpy()).volume))
    return Keypoints((kp_driving.value - kp_initial.value) * scale + kp_source.value, size=kp_driving.size)


@torch.no_grad()
def tpsmm_make_animation(net: torch.nn.Module, source: torch.Tensor, driving: torch.Tensor, mode: str = "relative") -> list[np.ndarray]:
    """``make_animation``: (1, 3, S, S) source and (T, 3, S, S) driver in [0, 1] -> T (S, S, 3) float predictions."""
    predictions = []
    kp_source = net.kp_detector(source)
    kp_initial = net.kp_detector(driving[:1])
    for index in range(driving.shape[0]):
        kp_driving = net.kp_detector(driving[index : index + 1])
        if mode == "standard":
            kp_norm = kp_driving
        elif mode == "relative":
            kp_norm = tpsmm_relative_kp(kp_source, kp_driving, kp_initial)
        else:
            kp_norm = net.avd_network(kp_source, kp_driving)
        motion = net.dense_motion_network(source, kp_norm, kp_source, bg_param=None)
        out = net.inpainting_network(source, motion)
        predictions.append(np.transpose(out["prediction"].numpy(), [0, 2, 3, 1])[0])
    return predictions
