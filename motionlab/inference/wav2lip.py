"""Wav2Lip's inference (``inference.py`` of the release), step for step: a video (or one image) speaks new audio.

Mel windows of 16 frames start at ``int(i * 80 / fps)`` until one would run past the end, then one last window is
taken from the end (:func:`wav2lip_mel_windows`); there is one output frame per window, the video's frames taken in
order and looped (``i % len(frames)``; an image is static). Each frame's face box (the most confident S3FD box when
``face_detector_ckpt`` gives the release's ``s3fd.pth``, else dlib's HOG detector's largest face) is padded by ``pads``
(top, bottom, left, right; default the release's 0, 10, 0, 0) and clipped to the frame, then averaged over the next
``box_smoothing`` frames in place, on integer boxes, as the release's ``get_smoothened_boxes`` does. The crop is
resized to 96 (bilinear), run through the generator, resized back (bilinear) and pasted without blending.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from motionlab.data.audio import MEL_FRAMES_PER_SECOND, MEL_WINDOW, SAMPLE_RATE, AudioError, load_wav, melspectrogram
from motionlab.data.talking import resize
from motionlab.data.video_io import IMAGE_EXTENSIONS, open_clip, read_image, write_video
from motionlab.inference.sequence import reported
from motionlab.tasks.wav2lip_predictor import Wav2LipPredictor
from motionlab.utils.errors import InputError

log = logging.getLogger(__name__)

RELEASE_PADS = (0, 10, 0, 0)


def wav2lip_mel_windows(mel: np.ndarray, fps: float) -> torch.Tensor:
    """(N, 1, 80, 16) mel windows of (T, 80) ``mel``, one per output frame, by the release's rule (``mel_idx_multiplier
    = 80 / fps``; the window that would run past the end is replaced by the last 16 frames, and the loop stops)."""
    if mel.shape[0] < MEL_WINDOW:
        raise AudioError(f"audio too short: {mel.shape[0]} mel frames, at least {MEL_WINDOW} (0.2 s) needed")
    windows, i = [], 0
    while True:
        start = int(i * (MEL_FRAMES_PER_SECOND / fps))
        if start + MEL_WINDOW > mel.shape[0]:
            windows.append(mel[-MEL_WINDOW:])
            break
        windows.append(mel[start : start + MEL_WINDOW])
        i += 1
    return torch.from_numpy(np.stack([w.T for w in windows])).unsqueeze(1)


def smoothed_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """The release's ``get_smoothened_boxes``: box ``i`` becomes the mean of boxes ``i .. i + window - 1`` (the last
    ``window`` boxes near the end, some already smoothed), assigned in place into the integer array (so truncated)."""
    boxes = boxes.copy()
    if window <= 1:
        return boxes
    for i in range(len(boxes)):
        chosen = boxes[len(boxes) - window :] if i + window > len(boxes) else boxes[i : i + window]
        boxes[i] = np.mean(chosen, axis=0)
    return boxes


class FaceBoxes:
    """Face boxes (x0, y0, x1, y1) of RGB frames: S3FD from the user's ``s3fd.pth``, else dlib's HOG detector.
    ``name`` says which (recorded with the result)."""

    def __init__(self, detector_ckpt: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 8):
        self.batch_size = batch_size
        if detector_ckpt is not None:
            from motionlab.models import load_model

            self.detector, self.name = load_model(detector_ckpt, name="s3fd").to(device), "s3fd"
        else:
            import dlib

            self.detector, self.name = dlib.get_frontal_face_detector(), "dlib_hog"

    def __call__(self, frames: np.ndarray) -> list[tuple[int, int, int, int] | None]:
        if self.name == "s3fd":
            from motionlab.models.wav2lip import detect_faces

            return [box for start in range(0, len(frames), self.batch_size) for box in detect_faces(self.detector, frames[start : start + self.batch_size])]
        found = []
        for frame in frames:
            faces = self.detector(frame, 0) or self.detector(frame, 1)
            if not faces:
                found.append(None)
                continue
            face = max(faces, key=lambda r: r.width() * r.height())
            found.append((max(0, face.left()), max(0, face.top()), face.right(), face.bottom()))
        return found


def face_crops_boxes(frames: np.ndarray, boxes: list, pads: tuple[int, int, int, int], source: str) -> np.ndarray:
    """(N, 4) integer (y0, y1, x0, x1) crop boxes: each detection padded by ``pads`` (top, bottom, left, right) and
    clipped to the frame (the release's ``face_detect``); a frame without a face is an error naming it."""
    top, bottom, left, right = pads
    out = []
    for index, (box, frame) in enumerate(zip(boxes, frames)):
        if box is None:
            raise InputError(f"{source}: no face found in frame {index}; every frame must show a face (trim the video, or give "
                             "face_detector_ckpt=s3fd.pth, the release's detector)")
        height, width = frame.shape[:2]
        x0, y0, x1, y1 = box
        out.append((max(0, y0 - top), min(height, y1 + bottom), max(0, x0 - left), min(width, x1 + right)))
    return np.array(out, dtype=np.int64)


def release_crop_boxes(frames: np.ndarray, detector: FaceBoxes, source: str, pads: tuple[int, int, int, int] = RELEASE_PADS,
                       box_smoothing: int = 5) -> np.ndarray:
    """The release's ``face_detect`` on (N, H, W, 3) frames: each frame's detection padded and clipped
    (:func:`face_crops_boxes`), then smoothed (:func:`smoothed_boxes`): (N, 4) (y0, y1, x0, x1)."""
    return smoothed_boxes(face_crops_boxes(frames, detector(frames), pads, source), box_smoothing)


def wav2lip_frames(predictor: Wav2LipPredictor, frames: np.ndarray, mels: torch.Tensor, crop_boxes: np.ndarray,
                   batch_size: int) -> Iterator[np.ndarray]:
    """Output frame ``i``: frame ``i % len(frames)`` with its crop replaced by the generator's face for window ``i``."""
    size = predictor.image_size
    for start in range(0, len(mels), batch_size):
        indices = [i % len(frames) for i in range(start, min(len(mels), start + batch_size))]
        crops = np.stack([resize(_region(frames[i], crop_boxes[i]), size, size, "linear") for i in indices])
        generated = predictor(crops, mels[start : start + len(indices)])
        for i, face in zip(indices, generated):
            y0, y1, x0, x1 = crop_boxes[i]
            frame = frames[i].copy()
            frame[y0:y1, x0:x1] = resize(face, x1 - x0, y1 - y0, "linear")
            yield frame


def _region(frame: np.ndarray, box) -> np.ndarray:
    y0, y1, x0, x1 = box
    return frame[y0:y1, x0:x1]


def wav2lip_video(predictor: Wav2LipPredictor, video: str | os.PathLike, audio: str | os.PathLike, out: str | os.PathLike,
                  face_detector_ckpt: str | os.PathLike | None = None, pads: tuple[int, int, int, int] = RELEASE_PADS,
                  box_smoothing: int = 5, batch_size: int = 16, fps: float = 25.0, crf: int = 20,
                  on_frame: Callable[[int, int], None] | None = None) -> dict:
    """Write ``out``: ``video`` (a clip, or an image held still at ``fps``) lip-synced to ``audio``, with the audio muxed.
    Returns the frame count, the audio's length, the face detector used and the output path."""
    video = Path(video)
    clip = None if video.suffix.lower() in IMAGE_EXTENSIONS else open_clip(video)
    fps = (clip.fps or fps) if clip is not None else fps
    wav = load_wav(audio)
    mels = wav2lip_mel_windows(melspectrogram(wav), fps)
    frames = read_image(video)[None] if clip is None else clip.get(list(range(min(len(clip), len(mels)))))
    detector = FaceBoxes(face_detector_ckpt, str(predictor.device))
    crop_boxes = release_crop_boxes(frames, detector, str(video), tuple(pads), box_smoothing)
    log.info("%s: %d frames, %d output frames, faces by %s", video, len(frames), len(mels), detector.name)
    generated = wav2lip_frames(predictor, frames, mels, crop_boxes, batch_size)
    if on_frame is not None:
        generated = reported(generated, len(mels), on_frame)
    path = write_video(out, generated, fps=fps, crf=crf, audio=(wav, SAMPLE_RATE))
    return {"out": str(path), "frames": len(mels), "audio_seconds": len(wav) / SAMPLE_RATE, "face_detector": detector.name}
