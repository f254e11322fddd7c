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
    assert concordance(a, np.ones(50)) == 0.0 and np.isnan(concordance(np.ones(50), a))


def test_lip_motion_against_the_real_video():
    """The real clip against itself: CCC and amplitude 1; a frozen first frame: amplitude 0 and CCC 0, and no motion
    during silence; silence is the audio 40 dB under the loudest frame."""
    from conftest import SHARED

    from motionlab.data.talking import read_audio_track
    from motionlab.data.video_io import open_clip
    from motionlab.metrics.lip_motion import LipMotion, silent_frames

    wav = np.concatenate([np.sin(np.arange(16000) * 0.05), np.zeros(8000), 1e-3 * np.ones(8000)])
    assert silent_frames(wav, 50, 25.0).tolist() == [False] * 25 + [True] * 25
    assert not silent_frames(np.zeros(16000), 25, 25.0).any()
    clip_path = SHARED / "data" / "real" / "drivers" / "human_talk_d6.mp4"
    if not clip_path.is_file():
        pytest.skip("../shared/data/real is not present")
    clip = open_clip(clip_path)
    frames, speech = clip.get(range(30)), read_audio_track(clip_path)[: int(30 / clip.fps * 16000)]
    same = LipMotion()
    same.update(frames, frames, speech, clip.fps)
    values = same.compute()
    assert values["lip_opening_ccc"] == pytest.approx(1.0, abs=1e-9) and values["lip_opening_amplitude"] == pytest.approx(1.0, abs=1e-9)
    frozen = LipMotion()
    frozen.update(frames, np.repeat(frames[:1], 30, axis=0), speech, clip.fps)
    values = frozen.compute()
    assert values["lip_opening_amplitude"] == pytest.approx(0.0, abs=1e-9) and values["lip_opening_ccc"] == 0.0
    assert values.get("lip_motion_in_silence", 0.0) == pytest.approx(0.0, abs=1e-12)
