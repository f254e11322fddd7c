"""Audio-visual synchronisation scores from a SyncNet-style embedding model (Wav2Lip's LSE protocol).

These use motionlab's own SyncNet, so the values are named ``*_ours`` and are not comparable with
published LSE-D / LSE-C numbers computed with the original SyncNet weights.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def offset_distances(video: torch.Tensor, audio: torch.Tensor, max_offset: int = 15) -> torch.Tensor:
    """Mean embedding distance for each audio offset in ``[-max_offset, max_offset]``.

    ``video`` and ``audio`` are (T, D) per-frame embeddings of one clip; offset ``o`` pairs video
    frame ``t`` with audio window ``t + o`` (pairs falling outside the clip are dropped).
    Returns (2 * max_offset + 1,) distances.
    """
    if video.shape != audio.shape or video.ndim != 2:
        raise ValueError(f"offset_distances expects two (T, D) embeddings of one shape, got {tuple(video.shape)} and {tuple(audio.shape)}")
    t = video.shape[0]
    if t <= max_offset:
        raise ValueError(f"offset_distances: a clip of {t} frames is too short for offsets of +-{max_offset}")
    distances = []
    for offset in range(-max_offset, max_offset + 1):
        v = video[max(0, -offset) : t - max(0, offset)]
        a = audio[max(0, offset) : t - max(0, -offset)]
        distances.append((v.double() - a.double()).norm(dim=-1).mean())
    return torch.stack(distances)


class SyncScores(Metric):
    """Per-clip offset sweep, averaged over clips.

    ``update(video_embeddings, audio_embeddings)`` takes one clip's (T, D) embeddings from the frozen
    SyncNet. ``compute`` returns ``sync_offset_ours`` (mean |best offset| in frames), ``lse_d_ours``
    (mean minimum distance) and ``lse_c_ours`` (mean of median - minimum distance).
    """

    full_state_update = False

    def __init__(self, max_offset: int = 15, **kwargs):
        super().__init__(**kwargs)
        self.max_offset = max_offset
        for name in ("offset_total", "min_total", "confidence_total", "clips"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, video_embeddings: torch.Tensor, audio_embeddings: torch.Tensor) -> None:
        distances = offset_distances(video_embeddings, audio_embeddings, self.max_offset)
        best = int(distances.argmin())
        self.offset_total += abs(best - self.max_offset)
        self.min_total += distances.min()
        self.confidence_total += distances.median() - distances.min()
        self.clips += 1

    def compute(self) -> dict[str, torch.Tensor]:
        clips = self.clips.clamp_min(1)
        return {
            "sync_offset_ours": self.offset_total / clips,
            "lse_d_ours": self.min_total / clips,
            "lse_c_ours": self.confidence_total / clips,
        }
