"""Animate a portrait with a driver clip: any animation checkpoint (Animator, descriptor model, FOMM release file)
through the predictor its task defines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from motionlab.callbacks.preview import side_by_side
from motionlab.data.datasets import frames_to_tensor
from motionlab.data.video_io import open_clip, read_image, write_gif, write_video
from motionlab.tasks import AnimationPredictor, load_predictor

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


def animate_frames(predictor: AnimationPredictor, portrait: np.ndarray, frames: np.ndarray, batch_size: int = 16):
    """Yield the predictor's outputs for (T, H, W, 3) uint8 ``frames`` in batches, with the ``source`` and
    ``driver`` tensors (N, 3, S, S) they were computed from (S: the network's input size)."""
    size = predictor.image_size
    source = frames_to_tensor(portrait[None], size).to(predictor.device)
    initial = frames_to_tensor(frames[:1], size).to(predictor.device)
    for start in range(0, len(frames), batch_size):
        driver = frames_to_tensor(frames[start : start + batch_size], size).to(predictor.device)
        yield {"source": source.expand(driver.shape[0], -1, -1, -1), "driver": driver, **predictor(source, driver, initial)}


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
    model: str | None = None,
) -> dict:
    """Animate ``portrait`` (an image) with ``driver`` (a video or frame folder) and write ``out`` (mp4).

    ``model`` names the architecture of a published file (``fomm_vox256`` ...). ``gif`` additionally writes
    portrait | driver | result side by side; ``side_by_side_out`` writes that as an mp4, with the keypoints drawn
    on driver and result for keypoint models. Returns a summary.
    """
    predictor = load_predictor(ckpt, model=model, device=device, relative=relative, adapt_movement_scale=adapt_movement_scale)
    if not isinstance(predictor, AnimationPredictor):
        raise ValueError(f"{ckpt} is not an animation checkpoint (its predictor is {type(predictor).__name__}); see motionlab-lipsync")
    clip = open_clip(driver)
    count = len(clip) if max_frames is None else min(len(clip), max_frames)
    frames = clip.get(range(count))
    results, triptychs = [], []
    with torch.inference_mode():
        for batch in animate_frames(predictor, read_image(portrait), frames, batch_size):
            results.extend(side_by_side(batch["generated"]))
            if gif is not None or side_by_side_out is not None:
                drivers, generated = side_by_side(batch["driver"]), side_by_side(batch["generated"])
                if "driver_keypoints" in batch:
                    drivers = draw_keypoints(drivers, batch["driver_keypoints"].to_pixels().value.cpu().numpy())
                    generated = draw_keypoints(generated, batch["generated_keypoints"].to_pixels().value.cpu().numpy())
                triptychs.extend(np.concatenate([side_by_side(batch["source"]), drivers, generated], axis=-2))
    rate = fps or clip.fps or 25.0
    write_video(out, results, fps=rate, crf=crf)
    if gif is not None:
        write_gif(gif, triptychs, fps=rate)
    if side_by_side_out is not None:
        write_video(side_by_side_out, triptychs, fps=rate, crf=crf)
    return {"frames": len(results), "fps": rate, "out": str(Path(out)), "gif": str(gif) if gif else None}
