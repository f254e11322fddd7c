"""Audio-visual synchronisation: the offset sweep of SyncNet's evaluation (LSE-D, LSE-C), on motionlab's own SyncNet
(``*_ours``, not comparable with published numbers) or on the VGG SyncNet of Chung & Zisserman from the user's
``syncnet_v2.model`` (``lse_d_syncnet`` / ``lse_c_syncnet``, as Wav2Lip's evaluation computes them).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric


def offset_distances(video: torch.Tensor, audio: torch.Tensor, max_offset: int = 15) -> torch.Tensor:
    """Mean embedding distance for each audio offset in ``[-max_offset, max_offset]``, as SyncNet's ``calc_pdist``:
    video frame ``t`` against audio window ``t + o``, the audio padded with zero embeddings beyond the clip (those
    pairs count too), distances ``||v - a + 1e-6||`` (``torch.nn.functional.pairwise_distance``).

    ``video`` and ``audio`` are (T, D) per-frame embeddings of one clip. Returns (2 * max_offset + 1,) distances.
    """
    if video.shape != audio.shape or video.ndim != 2:
        raise ValueError(f"offset_distances expects two (T, D) embeddings of one shape, got {tuple(video.shape)} and {tuple(audio.shape)}")
    t = video.shape[0]
    if t <= max_offset:
        raise ValueError(f"offset_distances: a clip of {t} frames is too short for offsets of +-{max_offset}")
    padded = torch.nn.functional.pad(audio.double(), (0, 0, max_offset, max_offset))
    window = torch.arange(2 * max_offset + 1, device=video.device)
    pairs = padded[torch.arange(t, device=video.device)[:, None] + window[None, :]]  # (T, 2o+1, D)
    return torch.nn.functional.pairwise_distance(video.double()[:, None, :].expand_as(pairs), pairs).mean(0)


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


class SyncNetV2(nn.Module):
    """The VGG SyncNet of "Out of time" (Chung & Zisserman 2016) in the layout of ``syncnet_v2.model``
    (joonson/syncnet_python's ``S``): an audio tower on (B, 1, 13, 20) MFCC windows (0.2 s) and a lip tower on
    (B, 3, 5, 224, 224) BGR frames in [0, 255], each to a 1024-d embedding."""

    def __init__(self, embedding: int = 1024):
        super().__init__()

        def conv2d(cin, cout, kernel=(3, 3), padding=(1, 1), inplace=True):
            return [nn.Conv2d(cin, cout, kernel, padding=padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=inplace)]

        def conv3d(cin, cout, kernel, stride=(1, 1, 1), padding=(0, 0, 0)):
            return [nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]

        def head():
            return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding))

        self.netcnnaud = nn.Sequential(
            *conv2d(1, 64), nn.MaxPool2d((1, 1), (1, 1)),
            *conv2d(64, 192), nn.MaxPool2d((3, 3), (1, 2)),
            *conv2d(192, 384), *conv2d(384, 256), *conv2d(256, 256), nn.MaxPool2d((3, 3), (2, 2)),
            *conv2d(256, 512, (5, 4), (0, 0), inplace=False),
        )
        self.netfcaud = head()
        self.netfclip = head()
        self.netcnnlip = nn.Sequential(
            *conv3d(3, 96, (5, 7, 7), (1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *conv3d(256, 512, (1, 6, 6)),
        )

    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def load_syncnet_v2(path: str | os.PathLike) -> SyncNetV2:
    """``syncnet_v2.model`` (a plain state dict) read weights-only into :class:`SyncNetV2`, strictly."""
    from motionlab.utils.checkpoint import load_checkpoint, load_state_dict_strict

    net = SyncNetV2()
    load_state_dict_strict(net, load_checkpoint(path), str(path))
    return net.eval().requires_grad_(False)


def syncnet_inputs(frames: np.ndarray, wav: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """SyncNet's evaluation windows of a clip at 25 fps: (N, 3, 5, 224, 224) frame windows (RGB frames resized
    bilinearly to 224 and turned BGR, values 0-255) and (N, 1, 13, 20) MFCC windows, one per start frame
    ``0 .. min(T, samples // 640) - 6`` (the reference's ``range(0, lastframe)``)."""
    import cv2

    from motionlab.data.audio import syncnet_mfcc

    length = min(len(frames), len(wav) // 640)
    count = length - 5
    if count < 1:
        raise ValueError(f"SyncNet needs at least 6 frames with their audio (0.24 s at 25 fps); the clip has {length}")
    images = np.stack([cv2.resize(np.ascontiguousarray(frame), (224, 224))[..., ::-1] for frame in frames[:length]]).astype(np.float32)
    video = torch.from_numpy(images).permute(3, 0, 1, 2)  # (3, T, 224, 224)
    mfcc = torch.from_numpy(syncnet_mfcc(wav)).float()
    return (torch.stack([video[:, v : v + 5] for v in range(count)]),
            torch.stack([mfcc[None, :, 4 * v : 4 * v + 20] for v in range(count)]))


class SyncNetScores(Metric):
    """LSE-D and LSE-C of clips with their audio, by the VGG SyncNet (``syncnet_v2.model``) as Wav2Lip's evaluation
    computes them: per clip (or face track), the minimum over offsets of the mean embedding distance (LSE-D) and the
    median minus that minimum (LSE-C), offsets of +-``max_offset`` frames; averaged over clips (tracks).

    Without ``face_detector`` the whole frame is scored (``calculate_scores_LRS.py``: LRS2's clips are face-centred).
    With syncnet_python's ``sfd_face.pth`` each clip is first cut into face tracks as ``run_pipeline.py`` does
    (:mod:`motionlab.metrics.face_tracks`; tracks longer than ``min_track`` frames) and every track is scored
    (``calculate_scores_real_videos.py``); clips without one are counted in ``clips_without_track``.
    ``update(frames, wav, fps)`` takes one clip's (T, H, W, 3) uint8 RGB frames and its 16 kHz samples."""

    full_state_update = False

    def __init__(self, path: str | os.PathLike, max_offset: int = 15, batch_size: int = 20, face_detector: str | os.PathLike | None = None,
                 min_track: int | None = None, **kwargs):
        from motionlab.metrics.face_tracks import MIN_TRACK, load_sfd_face

        super().__init__(**kwargs)
        self.max_offset, self.batch_size = max_offset, batch_size
        self.min_track = MIN_TRACK if min_track is None else min_track
        object.__setattr__(self, "network", load_syncnet_v2(path))
        object.__setattr__(self, "face_detector", None if face_detector is None else load_sfd_face(face_detector))
        for name in ("distance_total", "confidence_total", "offset_total", "clips", "clips_without_track"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    @torch.no_grad()
    def window_scores(self, frames: np.ndarray, wav: np.ndarray) -> dict[str, float]:
        """``lse_d``, ``lse_c`` and ``offset`` (frames the audio leads by) of (T, H, W, 3) uint8 RGB frames at 25 fps
        (each resized whole to 224) and their 16 kHz samples."""
        video, audio = syncnet_inputs(frames, wav)
        lips = torch.cat([self.network.forward_lip(part) for part in video.split(self.batch_size)])
        sounds = torch.cat([self.network.forward_audio(part) for part in audio.split(self.batch_size)])
        distances = offset_distances(lips, sounds, self.max_offset)
        minimum, index = distances.min(0)
        return {"lse_d": float(minimum), "lse_c": float(distances.median() - minimum), "offset": float(self.max_offset - int(index))}

    def clip_scores(self, frames: np.ndarray, wav: np.ndarray, fps: float = 25.0) -> list[dict[str, float]]:
        """One clip's scores, one entry per face track (the whole frame, one entry, without a face detector): frames at
        ``fps`` are shown at 25 fps (nearest earlier frame, as the reference's conversion to 25 fps does)."""
        if abs(fps - 25.0) > 1e-6:
            from motionlab.data.talking import resample_indices

            frames = frames[resample_indices(len(frames), fps, 25.0)]
        if self.face_detector is None:
            return [self.window_scores(frames, wav)]
        from motionlab.metrics.face_tracks import crop_track, face_tracks, sfd_face_boxes

        tracks = face_tracks([sfd_face_boxes(self.face_detector, frame) for frame in frames], min_track=self.min_track)
        return [self.window_scores(crop_track(frames, track), wav[int(track["frames"][0]) * 640 : (int(track["frames"][-1]) + 1) * 640])
                for track in tracks]

    def update(self, frames: np.ndarray, wav: np.ndarray, fps: float = 25.0) -> None:
        """Add one clip (:meth:`clip_scores`)."""
        scored = self.clip_scores(frames, wav, fps)
        self.clips_without_track += not scored
        for scores in scored:
            self.distance_total += scores["lse_d"]
            self.confidence_total += scores["lse_c"]
            self.offset_total += abs(scores["offset"])
            self.clips += 1

    def compute(self) -> dict[str, torch.Tensor]:
        clips = self.clips.clamp_min(1)
        values = {"lse_d_syncnet": self.distance_total / clips, "lse_c_syncnet": self.confidence_total / clips,
                  "sync_offset_syncnet": self.offset_total / clips}
        if self.face_detector is not None:
            values.update(lse_syncnet_tracks=self.clips.clone(), lse_syncnet_clips_without_track=self.clips_without_track.clone())
        return values
