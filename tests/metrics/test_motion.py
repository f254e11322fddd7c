"""Motion agreement on constructed landmark clips: correlation and amplitude of each motion signal."""

from __future__ import annotations

import numpy as np
import pytest

from motionlab.metrics.motion import motion_agreement


def test_agreement_reports_how_much_of_a_motion_comes_through():
    """A generated clip whose mouth opens half as far as the driver's, in step: correlation 1, amplitude 0.5; signals
    that do not move on the driver have no amplitude ratio."""
    rng = np.random.default_rng(0)
    face = rng.uniform(80, 160, (68, 2))
    face[36:42] += [-40.0, -30.0]
    face[42:48] += [40.0, -30.0]

    def clip(opening: np.ndarray) -> np.ndarray:
        points = np.repeat(face[None], len(opening), axis=0)
        points[:, 65:68, 1] += opening[:, None]  # the inner lower lip moves down
        return points

    opening = 10.0 * np.abs(np.sin(np.linspace(0, 6, 40)))
    result = motion_agreement(clip(opening), clip(opening / 2))
    assert result["correlation"]["mouth_opening"] == pytest.approx(1.0, abs=1e-6)
    assert result["amplitude"]["mouth_opening"] == pytest.approx(0.5, rel=1e-6)
    assert np.isnan(result["amplitude"]["head_roll"]) and np.isnan(result["amplitude"]["x"])
