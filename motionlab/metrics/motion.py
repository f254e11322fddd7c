"""Motion agreement: how much of a driver's motion a generated clip carries, the headline cross-domain metric.

Both clips are (T, 68, 2) landmark sequences (dlib / iBUG-300W order): the driver's detected landmarks, and the
generated frames' (from its keypoints through a fitted regression, or detected). Each is reduced to per-frame motion
signals (:func:`motionlab.geometry.landmarks.motion_signals`: mouth and eye opening, head roll, x, y in the face
frame), and each signal compared over time: Pearson ``correlation`` (does it move when the driver moves), Lin's
concordance ``ccc`` (does it move *as much*, where the driver moves it: a copy at 0.3 % of the amplitude has r near 1 and
CCC near 0) and the ``amplitude`` ratio (generated std over driver std: how much of the motion comes through).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.regression import concordance_corrcoef

from motionlab.geometry.landmarks import SIGNALS, amplitude_ratio, motion_signals, pearson


def concordance(reference: np.ndarray, other: np.ndarray) -> float:
    """Lin's concordance correlation of two (T,) signals (torchmetrics' ``concordance_corrcoef``, in float64):
    ``2 cov / (var_a + var_b + (mean_a - mean_b)^2)``, (co)variances normalised by n - 1 as torchmetrics does; NaN
    when the reference is constant (no motion to agree on), 0 when only ``other`` is (none of it came through)."""
    a, b = (torch.as_tensor(np.asarray(x, np.float64)) for x in (reference, other))
    if float(a.std()) <= 1e-12:
        return float("nan")
    if float(b.std()) <= 1e-12:
        return 0.0
    return float(concordance_corrcoef(b, a))


def motion_agreement(driver_points: np.ndarray, generated_points: np.ndarray) -> dict[str, dict]:
    """Per-signal ``correlation``, ``ccc`` and ``amplitude`` between two (T, 68, 2) landmark clips, and both signal
    series (``driver``, ``generated``), each a ``{signal: value}`` mapping over :data:`SIGNALS`."""
    driver, generated = motion_signals(driver_points), motion_signals(generated_points)
    return {"correlation": {name: pearson(driver[name], generated[name]) for name in SIGNALS},
            "ccc": {name: concordance(driver[name], generated[name]) for name in SIGNALS},
            "amplitude": {name: amplitude_ratio(driver[name], generated[name]) for name in SIGNALS},
            "driver": {name: driver[name].tolist() for name in SIGNALS}, "generated": {name: generated[name].tolist() for name in SIGNALS}}
