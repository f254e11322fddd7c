"""FVD: the Fréchet distance of I3D features of real and generated clips, from the I3D TorchScript file that
StyleGAN-V's evaluation (and the papers that reuse it) runs, ``i3d_torchscript.pt``.

StyleGAN-V's ``compute_fvd``: each clip's first ``frames`` (16) frames, (B, 3, T, H, W) with values 0-255, through the
detector with ``rescale=True`` (to [-1, 1]), ``resize=True`` (to 224 x 224) and ``return_features=True`` (the 400
logits before the softmax); the Fréchet distance of the two feature sets. The file is TorchScript, not a state dict:
loading it runs no Python, but it is a program, so give only the file the papers' code publishes (docs/safety.md).
"""

from __future__ import annotations

import os

import torch

from motionlab.metrics.frechet import FeatureFrechetDistance
from motionlab.utils.errors import InputError

FVD_FRAMES = 16


def load_i3d(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """The I3D TorchScript file, on the CPU, in eval mode."""
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError) as error:
        raise InputError(f"{path} is not a TorchScript file ({error}); FVD runs StyleGAN-V's i3d_torchscript.pt") from error


class FrechetVideoDistance(FeatureFrechetDistance):
    """``update(clips, real)`` takes (B, T, 3, H, W) clips in [0, 1] with T >= ``frames``; their first ``frames`` frames
    are scored. Reported as ``fvd_i3d``."""

    name = "fvd_i3d"

    def __init__(self, path: str | os.PathLike, frames: int = FVD_FRAMES, batch_size: int = 4, **kwargs):
        super().__init__(400, **kwargs)
        self.frames, self.batch_size = frames, batch_size
        object.__setattr__(self, "detector", load_i3d(path))

    def update(self, clips: torch.Tensor, real: bool) -> None:
        if clips.ndim != 5 or clips.shape[1] < self.frames:
            raise ValueError(f"FVD scores clips of at least {self.frames} frames, (B, T, 3, H, W); got {tuple(clips.shape)}")
        videos = (clips[:, : self.frames].clamp(0, 1) * 255).round().permute(0, 2, 1, 3, 4).contiguous()  # (B, 3, T, H, W)
        with torch.no_grad():
            features = torch.cat([self.detector(part.float(), rescale=True, resize=True, return_features=True)
                                  for part in videos.split(self.batch_size)])
        self.add_features(features.reshape(len(videos), -1), real)
