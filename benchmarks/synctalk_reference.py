"""A faithful per-frame lip-sync loop in the style of SyncTalk_2D's ``inference_328.py``, for benchmarks only.

Per output frame: ``cv2.imread`` the template frame, ``np.loadtxt`` its landmarks, crop, ``cv2.resize`` to 328
(area), cut the inner 320, blank SyncTalk_2D's rectangle, run the U-Net at batch 1 in eager PyTorch, put the
prediction back into the 328 crop, ``cv2.resize`` to the box (cubic), paste, and write the frame to an MJPG
``.avi``; at the end the ``.avi`` and the wav are muxed to H.264 + AAC (SyncTalk_2D shells out to ffmpeg;
here PyAV's bundled FFmpeg does the same transcode). One deliberate difference: frames are converted to RGB,
motionlab's channel order, so both loops feed the same weights the same inputs.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from motionlab.data.audio import audio_input
from motionlab.data.talking import LANDMARK_ROLES
from motionlab.inference.lipsync import bounce_index


def _mux_like_ffmpeg(avi: Path, wav: np.ndarray, sample_rate: int, out: Path, crf: int = 20) -> None:
    """``ffmpeg -i temp.avi -i aud.wav -c:v libx264 -crf 20 -c:a aac out.mp4`` with PyAV."""
    from motionlab.data.video_io import write_video

    import av

    def frames():
        with av.open(str(avi)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")

    write_video(out, frames(), fps=25.0, crf=crf, audio=(wav, sample_rate))


@torch.no_grad()
def synctalk_reference_loop(net: torch.nn.Module, features: torch.Tensor, wav: np.ndarray, template: str | os.PathLike,
                            out: str | os.PathLike, frames: int, record: int = 8) -> tuple[float, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """Run the loop for ``frames`` output frames; returns its seconds and the (image, audio, output) of the first ``record`` frames."""
    import cv2

    template = Path(template)
    count = len(list((template / "full_body_img").glob("*.jpg")))
    net = net.eval()
    recorded = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        avi = Path(scratch) / "temp.avi"
        writer = None
        for step in range(frames):
            index = bounce_index(step, count)
            image = cv2.cvtColor(cv2.imread(str(template / "full_body_img" / f"{index}.jpg")), cv2.COLOR_BGR2RGB)
            lms = np.loadtxt(str(template / "landmarks" / f"{index}.lms"), dtype=np.float32)
            roles = LANDMARK_ROLES[len(lms)]
            xmin, ymin, xmax = int(lms[roles["jaw_left"]][0]), int(lms[roles["nose_bridge"]][1]), int(lms[roles["jaw_right"]][0])
            ymax = ymin + (xmax - xmin)
            crop = image[ymin:ymax, xmin:xmax]
            h, w = crop.shape[:2]
            crop = cv2.resize(crop, (328, 328), interpolation=cv2.INTER_AREA)
            crop_original = crop.copy()
            real = crop[4:324, 4:324].copy()
            masked = cv2.rectangle(real.copy(), (5, 5, 310, 305), (0, 0, 0), -1)
            real_t = torch.from_numpy(real.transpose(2, 0, 1).astype(np.float32) / 255.0)
            masked_t = torch.from_numpy(masked.transpose(2, 0, 1).astype(np.float32) / 255.0)
            concat = torch.cat([real_t, masked_t], dim=0)[None]
            audio = audio_input(features, step, net.mode)[None]
            prediction = net(concat, audio)[0]
            if len(recorded) < record:
                recorded.append((concat[0], audio[0], prediction.clone()))
            prediction = np.array(prediction.numpy().transpose(1, 2, 0) * 255, dtype=np.uint8)
            crop_original[4:324, 4:324] = prediction
            image[ymin:ymax, xmin:xmax] = cv2.resize(crop_original, (w, h), interpolation=cv2.INTER_CUBIC)
            if writer is None:
                writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 25, (image.shape[1], image.shape[0]))
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        writer.release()
        _mux_like_ffmpeg(avi, wav, 16000, Path(out))
    return time.perf_counter() - started, recorded
