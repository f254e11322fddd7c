"""First Order Motion Model's own animation loop (``demo.py``), step for step, as the reference the keypoint animate
path is measured against.

Written from FOMM's ``demo.py`` (``make_animation``, ``normalize_kp`` and the script around them), independently of
motionlab's predictor, on the same networks (motionlab's FOMM modules carry the release's architecture and names):

- the whole driver is read into memory and every frame and the source resized to 256 x 256 before the loop;
- the source's and the first driver frame's keypoints are detected once; then for every frame, at batch 1: detect the
  driver's keypoints, move the source keypoints by the driver's displacement since its first frame (times the
  movement scale: 1, or the square root of the source / first-frame keypoint hull-area ratio) and map the Jacobians by
  ``J_driving @ inv(J_initial) @ J_source``, then run the whole generator (which encodes the source again);
- every prediction is kept, and the video written at the end.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from scipy.spatial import ConvexHull

from motionlab.geometry import Keypoints


def fomm_normalize_kp(kp_source: Keypoints, kp_driving: Keypoints, kp_initial: Keypoints, adapt_movement_scale: bool = False) -> Keypoints:
    """``normalize_kp(..., use_relative_movement=True, use_relative_jacobian=True)`` of FOMM's demo, batch 1."""
    scale = 1.0
    if adapt_movement_scale:
        scale = float(np.sqrt(ConvexHull(kp_source.value[0].numpy()).volume) / np.sqrt(ConvexHull(kp_initial.value[0].numpy()).volume))
    value = (kp_driving.value - kp_initial.value) * scale + kp_source.value
    jacobian = torch.matmul(torch.matmul(kp_driving.jacobian, torch.inverse(kp_initial.jacobian)), kp_source.jacobian)
    return Keypoints(value, size=kp_driving.size, jacobian=jacobian)


@torch.no_grad()
def fomm_make_animation(kp_detector: torch.nn.Module, generator: torch.nn.Module, source: torch.Tensor, driving: torch.Tensor,
                        adapt_movement_scale: bool = False) -> list[np.ndarray]:
    """``make_animation``: (1, 3, S, S) source and (T, 3, S, S) driver in [0, 1] -> T (S, S, 3) float predictions."""
    predictions = []
    kp_source = kp_detector(source)
    kp_initial = kp_detector(driving[:1])
    for index in range(driving.shape[0]):
        kp_driving = kp_detector(driving[index : index + 1])
        kp_norm = fomm_normalize_kp(kp_source, kp_driving, kp_initial, adapt_movement_scale)
        out = generator(source, kp_driving=kp_norm, kp_source=kp_source)
        predictions.append(np.transpose(out["prediction"].numpy(), [0, 2, 3, 1])[0])
    return predictions


def fomm_demo(kp_detector: torch.nn.Module, generator: torch.nn.Module, portrait: str | os.PathLike, driver: str | os.PathLike,
              out: str | os.PathLike, max_frames: int | None = None, size: int = 256) -> tuple[float, list[np.ndarray]]:
    """The demo script: read the portrait and the whole driver (PyAV, as imageio's ffmpeg reader), resize both to
    ``size`` with anti-aliasing, animate, write an H.264 mp4 at the driver's rate. Returns its seconds and the
    predictions."""
    import av
    from PIL import Image

    from motionlab.data.video_io import write_video

    started = time.perf_counter()
    source_image = np.asarray(Image.open(portrait).convert("RGB").resize((size, size), Image.BICUBIC))
    with av.open(str(driver)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        driving_video = []
        for frame in container.decode(video=0):
            driving_video.append(np.asarray(frame.to_image().resize((size, size), Image.BICUBIC)))
            if max_frames is not None and len(driving_video) == max_frames:
                break
    source = torch.tensor(source_image[np.newaxis].astype(np.float32) / 255).permute(0, 3, 1, 2)
    driving = torch.tensor(np.array(driving_video).astype(np.float32) / 255).permute(0, 3, 1, 2)
    predictions = fomm_make_animation(kp_detector, generator, source, driving)
    write_video(out, ((frame * 255).round().astype(np.uint8) for frame in predictions), fps=fps)
    return time.perf_counter() - started, predictions
