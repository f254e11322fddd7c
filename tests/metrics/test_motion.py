"""Motion agreement on constructed landmark clips: correlation, concordance and amplitude of each motion signal."""

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
    # Lin's CCC sees the scale r is blind to: a half-size motion scores below r, a 0.3 % one near 0
    assert result["ccc"]["mouth_opening"] < result["correlation"]["mouth_opening"] - 0.1
    tiny = motion_agreement(clip(opening), clip(opening * 0.003))
    assert tiny["correlation"]["mouth_opening"] == pytest.approx(1.0, abs=1e-6) and tiny["ccc"]["mouth_opening"] < 0.02
    assert motion_agreement(clip(opening), clip(opening))["ccc"]["mouth_opening"] == pytest.approx(1.0, abs=1e-9)


def test_concordance_is_lins_formula():
    from motionlab.metrics.motion import concordance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50) * 2 + 1
    # torchmetrics normalises the (co)variances by n - 1
    expected = 2 * np.cov(a, b)[0, 1] / (a.var(ddof=1) + b.var(ddof=1) + (a.mean() - b.mean()) ** 2)
    assert concordance(a, b) == pytest.approx(expected, rel=1e-9)
    assert np.isnan(concordance(a, np.ones(50)))
