"""Animate a portrait with a driver clip using a trained Animator checkpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn

from motionlab.callbacks.preview import side_by_side
from motionlab.data.datasets import _to_tensor
from motionlab.data.video_io import open_clip, read_image, write_gif, write_video
from motionlab.utils.checkpoint import load_checkpoint, load_state_dict_strict, submodule_state_dict


def load_network(checkpoint_path: str | os.PathLike, prefix: str = "net") -> tuple[nn.Module, dict]:
    """Rebuild the network stored in a motionlab checkpoint (weights-only read) and its run config."""
    checkpoint = load_checkpoint(checkpoint_path)
    meta = checkpoint.get("motionlab")
    if not isinstance(meta, dict) or "config" not in meta:
        raise ValueError(f"{checkpoint_path} is not a motionlab checkpoint (no 'motionlab' entry); train one with motionlab-train")
    config = meta["config"]
    net = instantiate(config["model"][prefix])
    load_state_dict_strict(net, submodule_state_dict(checkpoint["state_dict"], prefix), str(checkpoint_path))
    return net.eval(), config


class AnimatorPipeline:
    """Portrait + driver frames -> animated frames, batched, at the checkpoint's image size."""

    def __init__(self, net: nn.Module, image_size: int, device: str = "cpu", batch_size: int = 16):
        self.net = net.to(device).eval()
        self.image_size, self.device, self.batch_size = image_size, torch.device(device), batch_size

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu", batch_size: int = 16) -> "AnimatorPipeline":
        net, config = load_network(path)
        return cls(net, int(config["data"]["image_size"]), device=device, batch_size=batch_size)

    @torch.no_grad()
    def animate(self, portrait: np.ndarray, frames: np.ndarray) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (portrait, driver, generated) batches of (N, 3, S, S) tensors for (T, H, W, 3) uint8 ``frames``."""
        source = _to_tensor(portrait[None], self.image_size).to(self.device)
        for start in range(0, len(frames), self.batch_size):
            driver = _to_tensor(frames[start : start + self.batch_size], self.image_size).to(self.device)
            sources = source.expand(driver.shape[0], -1, -1, -1)
            yield sources, driver, self.net(sources, driver)["image"].clamp(0, 1)


def animate_files(
    ckpt: str | os.PathLike,
    portrait: str | os.PathLike,
    driver: str | os.PathLike,
    out: str | os.PathLike,
    gif: str | os.PathLike | None = None,
    fps: float | None = None,
    crf: int = 20,
    max_frames: int | None = None,
    device: str = "cpu",
    batch_size: int = 16,
) -> dict:
    """Animate ``portrait`` (an image) with ``driver`` (a video or frame folder) and write ``out`` (mp4).

    ``gif`` additionally writes portrait | driver | result side by side. Returns a summary dict.
    """
    pipeline = AnimatorPipeline.from_checkpoint(ckpt, device=device, batch_size=batch_size)
    clip = open_clip(driver)
    count = len(clip) if max_frames is None else min(len(clip), max_frames)
    frames = clip.get(range(count))
    results, triptychs = [], []
    for sources, drivers, generated in pipeline.animate(read_image(portrait), frames):
        results.extend(side_by_side(generated))
        if gif is not None:
            triptychs.extend(side_by_side(sources, drivers, generated))
    rate = fps or clip.fps or 25.0
    write_video(out, results, fps=rate, crf=crf)
    if gif is not None:
        write_gif(gif, triptychs, fps=rate)
    return {"frames": len(results), "fps": rate, "out": str(Path(out)), "gif": str(gif) if gif else None}
