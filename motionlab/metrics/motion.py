"""Motion agreement: how much of a driver's motion a generated clip carries, the headline cross-domain metric.

Both clips are (T, 68, 2) landmark sequences (dlib / iBUG-300W order): the driver's detected landmarks, and the
generated frames' (from its keypoints through a fitted regression, or detected). Each is reduced to per-frame motion
signals (:func:`motionlab.geometry.landmarks.motion_signals`: mouth and eye opening, head roll, x, y in the face
frame), and each signal compared over time: Pearson ``correlation`` (does it move when the driver moves) and the
``amplitude`` ratio (generated std over driver std: how much of the motion comes through, which a correlation
cannot show).
"""

from __future__ import annotations

import numpy as np

from motionlab.geometry.landmarks import SIGNALS, amplitude_ratio, motion_signals, pearson


def motion_agreement(driver_points: np.ndarray, generated_points: np.ndarray) -> dict[str, dict]:
    """Per-signal ``correlation`` and ``amplitude`` between two (T, 68, 2) landmark clips, and both signal series
    (``driver``, ``generated``), each a ``{signal: value}`` mapping over :data:`SIGNALS`."""
    driver, generated = motion_signals(driver_points), motion_signals(generated_points)
    return {"correlation": {name: pearson(driver[name], generated[name]) for name in SIGNALS},
            "amplitude": {name: amplitude_ratio(driver[name], generated[name]) for name in SIGNALS},
            "driver": {name: driver[name].tolist() for name in SIGNALS}, "generated": {name: generated[name].tolist() for name in SIGNALS}}
