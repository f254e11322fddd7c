"""Per-frame traces of one generated sequence: the suite's temporal, colour and motion metrics before they are
averaged, for plotting under a player.

Convention: ``portrait`` (3, H, W), ``driver`` and ``generated`` (T, 3, H, W) RGB in [0, 1], keypoints (T, K, 2) in
pixels of the same frames. Each trace is a (T,) float array; ``nan`` where a frame has no value (frame 0 of a
difference).
"""

from __future__ import annotations

import numpy as np
import torch

from motionlab.geometry import check_shape
from motionlab.metrics.colour_difference import delta_e76, mean_lab


def frame_traces(portrait: torch.Tensor, driver: torch.Tensor, generated: torch.Tensor,
                 driver_keypoints: torch.Tensor | None = None, generated_keypoints: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """``temporal_difference``: mean ``|Δgenerated_t - Δdriver_t|`` (the suite's TemporalDifferenceConsistency per
    frame pair, at the later frame); ``colour_drift``: ΔE76 of the frame's mean Lab colour from the portrait's
    (ColourDrift per frame); with keypoints, ``motion_agreement``: the mean distance in pixels between the driver's and
    the generated frame's keypoints (AverageKeypointDistance per frame)."""
    check_shape(portrait, [3, "H", "W"], "portrait")
    check_shape(driver, ["T", 3, "H", "W"], "driver")
    check_shape(generated, ["T", 3, "H", "W"], "generated")
    if driver.shape != generated.shape:
        raise ValueError(f"frame_traces: driver {tuple(driver.shape)} and generated {tuple(generated.shape)} differ")
    count = generated.shape[0]
    temporal = np.full(count, np.nan)
    if count > 1:
        temporal[1:] = (generated.diff(dim=0) - driver.diff(dim=0)).abs().mean(dim=(1, 2, 3)).double().numpy()
    reference = mean_lab(portrait[None]).expand(count, -1)
    traces = {"temporal_difference": temporal, "colour_drift": delta_e76(reference, mean_lab(generated)).numpy()}
    if driver_keypoints is not None and generated_keypoints is not None:
        check_shape(driver_keypoints, ["T", "K", 2], "driver_keypoints")
        traces["motion_agreement"] = (generated_keypoints - driver_keypoints).norm(dim=-1).mean(dim=-1).double().numpy()
    return traces
