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
from motionlab.data.datasets import frames_to_tensor
from motionlab.data.video_io import open_clip, read_image, write_gif, write_video
from motionlab.descriptors import normalize_keypoints
from motionlab.geometry import keypoints_to_pixels
from motionlab.models import create_model
from motionlab.models.fomm import FOMM
from motionlab.models.fomm_io import FOMM_PARTS
from motionlab.utils.checkpoint import load_checkpoint, load_state_dict_strict, submodule_state_dict


def motionlab_network(checkpoint: dict, source: str | os.PathLike, prefix: str = "net") -> tuple[nn.Module, dict] | None:
    """The network of an already-read motionlab checkpoint (rebuilt from its run config), or None for other files."""
    meta = checkpoint.get("motionlab")
    if not (isinstance(meta, dict) and "config" in meta):
        return None
    config = meta["config"]
    net = instantiate(config["model"][prefix])
    load_state_dict_strict(net, submodule_state_dict(checkpoint["state_dict"], prefix), str(source))
    return net.eval(), config


def load_network(checkpoint_path: str | os.PathLike, prefix: str = "net", fomm_setting: str | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the network stored in a checkpoint (weights-only read) and a config dict describing it.

    motionlab checkpoints carry their run config. A First Order Motion Model release checkpoint
    (``kp_detector`` + ``generator`` entries) needs ``fomm_setting`` (``vox-256``, ``taichi-256`` or
    ``mgif-256``) and runs at 256 x 256.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    built = motionlab_network(checkpoint, checkpoint_path, prefix)
    if built is not None:
        return built
    if all(part in checkpoint for part in FOMM_PARTS):
        if fomm_setting is None:
            raise ValueError(f"{checkpoint_path} is a FOMM release checkpoint; say which with fomm_setting=vox-256, taichi-256 or mgif-256")
        net = create_model("fomm", setting=fomm_setting)
        for part in FOMM_PARTS:
            load_state_dict_strict(getattr(net, part), checkpoint[part], f"{checkpoint_path} [{part}]")
        return net.eval(), {"data": {"image_size": 256}, "model": {prefix: {"name": "fomm", "setting": fomm_setting}}}
    raise ValueError(
        f"{checkpoint_path} is not a motionlab checkpoint (no 'motionlab' entry) nor a FOMM release checkpoint "
        f"(entries {sorted(checkpoint)[:8]}); train one with motionlab-train"
    )


KEYPOINT_COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                             [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], dtype=np.uint8)


def draw_keypoints(frames: np.ndarray, points: np.ndarray, radius: int = 1) -> np.ndarray:
    """Copies of (T, H, W, 3) uint8 frames with (T, K, 2) pixel keypoints drawn as coloured squares."""
    out = frames.copy()
    height, width = frames.shape[1:3]
    for t, frame_points in enumerate(points):
        for k, (x, y) in enumerate(np.round(frame_points).astype(int)):
            out[t, max(0, y - radius) : min(height, y + radius + 1), max(0, x - radius) : min(width, x + radius + 1)] = KEYPOINT_COLOURS[k % len(KEYPOINT_COLOURS)]
    return out


class AnimatorPipeline:
    """Portrait + driver frames -> animated frames, batched, at the checkpoint's image size.

    Animator checkpoints re-render the portrait in each driver frame's pose. Descriptor (FOMM)
    checkpoints transfer keypoint motion: with ``relative`` the driver's motion since its first frame
    is applied to the portrait's keypoints (:func:`motionlab.descriptors.normalize_keypoints`).
    """

    def __init__(self, net: nn.Module, image_size: int, device: str = "cpu", batch_size: int = 16,
                 relative: bool = True, adapt_movement_scale: bool = False):
        self.net = net.to(device).eval()
        self.image_size, self.device, self.batch_size = image_size, torch.device(device), batch_size
        self.relative, self.adapt_movement_scale = relative, adapt_movement_scale

    @property
    def has_keypoints(self) -> bool:
        return isinstance(self.net, FOMM)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu", batch_size: int = 16, fomm_setting: str | None = None,
                        **options) -> "AnimatorPipeline":
        net, config = load_network(path, fomm_setting=fomm_setting)
        return cls(net, int(config["data"]["image_size"]), device=device, batch_size=batch_size, **options)

    @torch.no_grad()
    def animate(self, portrait: np.ndarray, frames: np.ndarray) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches for (T, H, W, 3) uint8 ``frames``: ``source``, ``driver``, ``generated`` (N, 3, S, S) and,
        for keypoint models, ``driver_keypoints`` / ``generated_keypoints`` (N, K, 2) in pixels."""
        source = frames_to_tensor(portrait[None], self.image_size).to(self.device)
        kp_source = kp_initial = None
        if self.has_keypoints:
            kp_source = self.net.kp_detector(source)
            kp_initial = self.net.kp_detector(frames_to_tensor(frames[:1], self.image_size).to(self.device))
        for start in range(0, len(frames), self.batch_size):
            driver = frames_to_tensor(frames[start : start + self.batch_size], self.image_size).to(self.device)
            sources = source.expand(driver.shape[0], -1, -1, -1)
            if not self.has_keypoints:
                yield {"source": sources, "driver": driver, "generated": self.net(sources, driver)["image"].clamp(0, 1)}
                continue
            n = driver.shape[0]
            expand = lambda kp: {k: v.expand(n, *v.shape[1:]) for k, v in kp.items() if k in ("value", "jacobian")}  # noqa: E731
            kp_driving = self.net.kp_detector(driver)
            kp_norm = normalize_keypoints(expand(kp_source), kp_driving, expand(kp_initial), relative_movement=self.relative,
                                          adapt_movement_scale=self.adapt_movement_scale)
            generated = self.net.generator(sources, kp_driving=kp_norm, kp_source=expand(kp_source))["prediction"].clamp(0, 1)
            size = self.image_size
            yield {
                "source": sources, "driver": driver, "generated": generated,
                "driver_keypoints": keypoints_to_pixels(kp_driving["value"], size, size),
                "generated_keypoints": keypoints_to_pixels(self.net.kp_detector(generated)["value"], size, size),
            }


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
    relative: bool = True,
    adapt_movement_scale: bool = False,
    side_by_side_out: str | os.PathLike | None = None,
    fomm_setting: str | None = None,
) -> dict:
    """Animate ``portrait`` (an image) with ``driver`` (a video or frame folder) and write ``out`` (mp4).

    ``gif`` additionally writes portrait | driver | result side by side; ``side_by_side_out`` writes
    that as an mp4, with the keypoints drawn on driver and result for keypoint models. Returns a summary.
    """
    pipeline = AnimatorPipeline.from_checkpoint(ckpt, device=device, batch_size=batch_size, relative=relative,
                                                adapt_movement_scale=adapt_movement_scale, fomm_setting=fomm_setting)
    clip = open_clip(driver)
    count = len(clip) if max_frames is None else min(len(clip), max_frames)
    frames = clip.get(range(count))
    results, triptychs = [], []
    for batch in pipeline.animate(read_image(portrait), frames):
        results.extend(side_by_side(batch["generated"]))
        if gif is not None or side_by_side_out is not None:
            drivers, generated = side_by_side(batch["driver"]), side_by_side(batch["generated"])
            if "driver_keypoints" in batch:
                drivers = draw_keypoints(drivers, batch["driver_keypoints"].cpu().numpy())
                generated = draw_keypoints(generated, batch["generated_keypoints"].cpu().numpy())
            triptychs.extend(np.concatenate([side_by_side(batch["source"]), drivers, generated], axis=-2))
    rate = fps or clip.fps or 25.0
    write_video(out, results, fps=rate, crf=crf)
    if gif is not None:
        write_gif(gif, triptychs, fps=rate)
    if side_by_side_out is not None:
        write_video(side_by_side_out, triptychs, fps=rate, crf=crf)
    return {"frames": len(results), "fps": rate, "out": str(Path(out)), "gif": str(gif) if gif else None}
