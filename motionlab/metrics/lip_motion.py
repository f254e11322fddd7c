"""Amplitude-aware lip-sync metrics, beside LSE: does the mouth open as much as the real speaker's, in step, and does it
stay still when nobody speaks? LSE-C / LSE-D reward a mouth that moves in sync, whatever its size; these do not.

Both clips' mouths are measured by dlib's 68 points (:func:`motionlab.geometry.landmarks.motion_signals`: the inner
lips' gap over the inter-ocular distance):

- ``lip_opening_ccc``: Lin's concordance of the generated opening with the real video's (1: same motion, same size);
- ``lip_opening_amplitude``: its standard deviation over the real one's (1: as much motion as the speaker);
- ``lip_motion_in_silence``: the mean frame-to-frame change of the generated opening over the frames whose audio is
  silent (RMS 40 dB below the clip's loudest frame), in inter-ocular units per frame (0: a still mouth);
- ``lip_motion_clips_without_face``: clips left out because dlib found no face in one of them.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from motionlab.geometry.landmarks import amplitude_ratio, motion_signals
from motionlab.metrics.motion import concordance

SILENCE_DB = 40.0


def silent_frames(wav: np.ndarray, frames: int, fps: float, sample_rate: int = 16000, below_db: float = SILENCE_DB) -> np.ndarray:
    """(frames,) bool: the frames whose audio (the samples of ``[i / fps, (i + 1) / fps)``) has an RMS ``below_db``
    under the loudest frame's; all False when the clip is silent throughout (nothing to compare against)."""
    edges = np.round(np.arange(frames + 1) * sample_rate / fps).astype(int)
    rms = np.array([np.sqrt(np.mean(np.square(wav[a:b], dtype=np.float64))) if b > a and a < len(wav) else 0.0
                    for a, b in zip(edges[:-1], edges[1:])])
    loudest = rms.max() if len(rms) else 0.0
    if loudest <= 1e-8:
        return np.zeros(frames, bool)
    return rms < loudest * 10 ** (-below_db / 20)


class LipMotion(Metric):
    """``update(real, generated, wav, fps)``: one clip's (T, H, W, 3) uint8 RGB real and generated frames and its
    16 kHz speech; ``compute`` averages the clip values (silence motion over every silent frame)."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("ccc_total", "amplitude_total", "clips", "silence_motion", "silence_frames", "faceless_clips"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        object.__setattr__(self, "landmarker", None)

    def _opening(self, frames: np.ndarray) -> np.ndarray:
        from motionlab.data.landmarks import DlibLandmarks, detect_landmarks

        if self.landmarker is None:
            object.__setattr__(self, "landmarker", DlibLandmarks())
        return motion_signals(detect_landmarks(frames, "lip motion", smooth_window=1, landmarker=self.landmarker).points)["mouth_opening"]

    def update(self, real: np.ndarray, generated: np.ndarray, wav: np.ndarray, fps: float) -> None:
        from motionlab.data.video_io import ClipError

        count = min(len(real), len(generated))
        try:
            real_opening, opening = self._opening(real[:count]), self._opening(generated[:count])
        except ClipError:  # no face in any frame of one of them (frames scored too small, a non-human face): counted
            self.faceless_clips += 1
            return
        ccc, amplitude = concordance(real_opening, opening), amplitude_ratio(real_opening, opening)
        if np.isfinite(ccc) and np.isfinite(amplitude):
            self.ccc_total += ccc
            self.amplitude_total += amplitude
            self.clips += 1
        silent = silent_frames(wav, count, fps)[1:]
        self.silence_motion += float(np.abs(np.diff(opening))[silent].sum())
        self.silence_frames += float(silent.sum())

    def compute(self) -> dict[str, torch.Tensor]:
        values = {}
        if self.clips > 0:
            values.update({"lip_opening_ccc": self.ccc_total / self.clips, "lip_opening_amplitude": self.amplitude_total / self.clips})
        if self.silence_frames > 0:
            values["lip_motion_in_silence"] = self.silence_motion / self.silence_frames
        if self.faceless_clips > 0:
            values["lip_motion_clips_without_face"] = self.faceless_clips.clone()
        return values
