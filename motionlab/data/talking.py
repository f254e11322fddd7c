"""Talking-head preprocessing into the SyncTalk_2D layout, and its face crop rule.

``preprocess_talking_video(video, out)`` writes::

    out/<name>.mp4                  the source video (copied)
    out/full_body_img/{i}.jpg       frames resampled to 25 fps
    out/landmarks/{i}.lms           68 "x y" lines in full-frame pixels (dlib), temporally smoothed
    out/aud.wav                     16 kHz mono audio
    out/preprocess.json             counts: frames, source fps, frames without a detected face

``synth_talking_clip`` writes a toy talking head in the same layout, for tests that need no camera.

The crop is defined by landmark roles, so 68-point (dlib) and SyncTalk_2D's 110-point ``.lms`` files
give the same square: from the face contour on the left at eye height to its mirror on the right, starting
at the top of the nose bridge and as tall as it is wide; resized to 328 and cut to the inner 320.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from motionlab.data.landmarks import DlibLandmarks, fill_missing, smooth_landmarks, write_lms
from motionlab.data.video_io import ClipError, probe_video
from motionlab.models.lipsync import LipSyncConvention
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_dir

log = logging.getLogger(__name__)
CROP_SIZE, INNER_SIZE = 328, 320
# The crop rule is SyncTalk_2D's on its 110 points (PFLD; its first 98 follow WFLW's layout): x from contour point 1
# to contour point 31, y from nose-bridge point 52, as tall as it is wide. dlib's 68 points are WFLW's with every
# other contour point and one fewer nose-bridge point: WFLW contour 1 lies midway between dlib 0 and 1, 31 between
# dlib 15 and 16, and nose-bridge 52 is dlib 28 (one step, ~0.09 face widths, above dlib 29).
# Points per face -> role -> the indices averaged for it.
LANDMARK_ROLES = {
    68: {"jaw_left": (0, 1), "jaw_right": (15, 16), "nose_bridge": (28,)},
    110: {"jaw_left": (1,), "jaw_right": (31,), "nose_bridge": (52,)},
}
RESIZE = {"area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}


def crop_box(points: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the square face crop for (P, 2) landmarks in the 68- or 110-point convention; it may run
    past the frame (see :func:`crop_face`)."""
    roles = LANDMARK_ROLES.get(len(points))
    if roles is None:
        raise InputError(f"no crop rule for {len(points)} landmarks; known conventions: {sorted(LANDMARK_ROLES)}")
    # SyncTalk_2D truncates its .lms values to integers before using them
    x0, x1 = (int(np.trunc(points[list(roles[name]), 0]).mean()) for name in ("jaw_left", "jaw_right"))
    y0 = int(np.trunc(points[list(roles["nose_bridge"]), 1]).mean())
    if x1 <= x0:
        raise InputError(f"degenerate face crop: jaw points at x={x0} and x={x1}")
    return x0, y0, x1, y0 + (x1 - x0)


def resize(image: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    """``image`` resized with OpenCV's ``interpolation`` (``area``, ``cubic``, ``linear``): SyncTalk_2D's resampling."""
    return cv2.resize(image, (width, height), interpolation=RESIZE[interpolation])


def frame_box(box: tuple[int, int, int, int], image: np.ndarray, overflow: str) -> tuple[int, int, int, int]:
    """The crop ``box`` as used on ``image``: kept whole (``pad``) or clipped to the frame (``clip``, SyncTalk_2D)."""
    if overflow == "pad":
        return box
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    clipped = (max(0, x0), max(0, y0), min(w, x1), min(h, y1))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise InputError(f"face crop {box} lies outside the {w}x{h} frame")
    return clipped


def box_region(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels of ``box``; parts past the frame repeat its edge pixels."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    inside = image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if inside.size == 0:
        raise InputError(f"face crop {box} lies outside the {w}x{h} frame")
    pads = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    return cv2.copyMakeBorder(inside, *pads, cv2.BORDER_REPLICATE) if any(pads) else inside


def crop_face(image: np.ndarray, points: np.ndarray, convention: LipSyncConvention) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The (320, 320, 3) inner face crop of an (H, W, 3) uint8 frame, and the box it came from.

    The box is the landmarks' square, padded or clipped where it runs past the frame, resized to 328 with the
    convention's interpolation; the inner 320 is what the U-Net sees.
    """
    box = frame_box(crop_box(points), image, convention.crop_overflow)
    crop = resize(box_region(image, box), CROP_SIZE, CROP_SIZE, convention.crop_resize)
    margin = (CROP_SIZE - INNER_SIZE) // 2
    return crop[margin : margin + INNER_SIZE, margin : margin + INNER_SIZE], box


def resample_indices(source_frames: int, source_fps: float, fps: float = 25.0) -> np.ndarray:
    """Source frame shown at each output frame time ``i / fps`` (nearest earlier frame), covering the clip."""
    duration = source_frames / source_fps
    count = int(np.floor(duration * fps + 1e-6))
    return np.minimum(np.floor(np.arange(count) / fps * source_fps + 1e-6).astype(int), source_frames - 1)


def read_audio_track(video: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """The first audio stream of ``video`` decoded, mono, resampled to ``sample_rate``: float32 samples in [-1, 1]."""
    import av

    with av.open(str(video)) as container:
        if not container.streams.audio:
            raise ClipError(f"{video} has no audio stream; talking-head preprocessing needs the speech")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        for frame in container.decode(audio=0):
            chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(frame))
        chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(None))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise ClipError(f"{video}: the audio stream decodes to no samples")
    return samples


def extract_audio(video: Path, out: Path, sample_rate: int = 16000) -> tuple[float, float]:
    """Decode the first audio stream, resample to mono ``sample_rate`` and write a WAV; returns seconds and peak amplitude."""
    import soundfile

    samples = read_audio_track(video, sample_rate)
    soundfile.write(str(out), samples, sample_rate, subtype="PCM_16")
    return samples.size / sample_rate, float(np.abs(samples).max())


def is_template(folder: Path) -> bool:
    """Whether ``folder`` is a talking-head folder this module wrote (which a new version may replace)."""
    return (folder / "full_body_img").is_dir() and (folder / "landmarks").is_dir()


def preprocess_talking_video(video: str | os.PathLike, out: str | os.PathLike, fps: float = 25.0, smooth_window: int = 3,
                             progress: bool = False, landmarker=None) -> dict:
    """Write ``video`` in the SyncTalk_2D layout under ``out``; returns the summary written to preprocess.json."""
    import decord

    video, out = Path(video), Path(out)
    if not video.is_file():
        raise ClipError(f"video {video} does not exist")
    probe_video(video)
    try:
        reader = decord.VideoReader(str(video), ctx=decord.cpu(0))
    except Exception as error:
        raise ClipError(f"video {video} cannot be opened ({error})") from error
    source_fps = float(reader.get_avg_fps())
    indices = resample_indices(len(reader), source_fps, fps)
    if len(indices) == 0:
        raise ClipError(f"video {video} is shorter than one frame at {fps} fps")
    with atomic_dir(out, is_template) as folder:  # a failure leaves a previous template whole
        for sub in ("full_body_img", "landmarks"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(video, folder / video.name)
        seconds, peak = extract_audio(video, folder / "aud.wav")
        if seconds + 1.0 / fps < len(indices) / fps:
            log.warning("%s: the audio lasts %.2f s, the video %.2f s; frames past the audio get no speech", video, seconds, len(indices) / fps)
        if peak < 1e-4:
            log.warning("%s: the audio track is silent (peak amplitude %.2g); lip-sync training on it will be refused", video, peak)
        landmarker = landmarker or DlibLandmarks()
        found: list[np.ndarray | None] = []
        iterator = enumerate(indices)
        if progress:
            from rich.progress import track

            iterator = track(iterator, total=len(indices), description=f"landmarks of {video.name}")
        for i, source_index in iterator:
            frame = reader[int(source_index)].asnumpy()
            Image.fromarray(frame).save(folder / "full_body_img" / f"{i}.jpg", quality=95)
            found.append(landmarker(frame))
        detected = np.array([points is not None for points in found])
        missing = np.flatnonzero(~detected).tolist()
        raw = np.stack([points if points is not None else np.full((68, 2), np.nan, np.float32) for points in found])
        landmarks = smooth_landmarks(fill_missing(raw, detected, str(video)), smooth_window)
        for i, points in enumerate(landmarks):
            write_lms(folder / "landmarks" / f"{i}.lms", points)
        summary = {"video": str(video), "frames": len(indices), "fps": fps, "source_fps": source_fps, "audio_seconds": seconds, "audio_peak": peak,
                   "frames_without_face": len(missing), "frames_without_face_indices": missing, "smooth_window": smooth_window}
        if missing:
            log.warning("%s: no face in %d of %d frames (%s...); used the previous frame's landmarks", video, len(missing), len(found), missing[:10])
        (folder / "preprocess.json").write_text(json.dumps(summary, indent=2))
    return summary


def speech_like_audio(seconds: float, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """Procedural speech-like audio: voiced syllables (harmonic tones with a wandering pitch under smooth
    envelopes) separated by pauses, plus a little breath noise. Float32 in [-1, 1]."""
    total = int(seconds * sample_rate)
    audio = np.zeros(total, np.float32)
    t = 0.15
    while t < seconds - 0.15:
        duration = rng.uniform(0.10, 0.30)
        start, stop = int(t * sample_rate), min(total, int((t + duration) * sample_rate))
        n = stop - start
        time = np.arange(n) / sample_rate
        pitch = rng.uniform(100, 220) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 5) * time))
        phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
        voiced = sum(np.sin(k * phase) / k**1.2 for k in range(1, 9))
        audio[start:stop] += (np.hanning(n) * rng.uniform(0.3, 0.8) * voiced / 2.5).astype(np.float32)
        t += duration + (rng.uniform(0.25, 0.6) if rng.random() < 0.3 else rng.uniform(0.02, 0.08))
    audio += rng.normal(0, 0.003, total).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def mouth_from_audio(audio: np.ndarray, frames: int, fps: float = 25.0, sample_rate: int = 16000) -> np.ndarray:
    """(frames,) mouth opening in [0, 1]: the RMS envelope of each video frame's audio, scaled to its 95th percentile."""
    per_frame = sample_rate / fps
    rms = np.array([np.sqrt(np.mean(audio[int(i * per_frame) : int((i + 1) * per_frame)] ** 2) + 1e-12) for i in range(frames)])
    return np.clip(rms / max(np.percentile(rms, 95), 1e-6), 0.0, 1.0).astype(np.float32)


def synth_talking_clip(out: str | os.PathLike, seconds: float = 4.0, size: int = 256, seed: int = 0, fps: float = 25.0, name: str = "toy_talk") -> dict:
    """A toy talking head in the SyncTalk_2D layout whose mouth follows its own speech-like audio.

    Writes ``<name>.mp4`` (H.264 + AAC), ``full_body_img/{i}.jpg``, ``landmarks/{i}.lms`` (68 points),
    ``aud.wav`` (16 kHz) and ``mouth.npy`` (the ground-truth opening per frame). Deterministic by seed.
    """
    import soundfile

    from motionlab.data.synthetic import (
        MOTION_FIELDS,
        MotionRange,
        landmarks68,
        render_frame,
        sample_motion,
        sample_style,
    )
    from motionlab.data.video_io import write_video

    rng = np.random.default_rng(seed)
    style = sample_style(rng)
    frames = int(seconds * fps)
    audio = speech_like_audio(frames / fps, rng)
    motion = sample_motion(rng, frames, MotionRange(translation=0.03, rotation=0.06, scale=0.03, fps=fps))
    motion["mouth"] = mouth_from_audio(audio, frames, fps)
    with atomic_dir(out, is_template) as folder:
        for sub in ("full_body_img", "landmarks"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        images = []
        for i in range(frames):
            frame = {field: float(motion[field][i]) for field in MOTION_FIELDS}
            image = render_frame(style, frame, size)
            images.append(image)
            Image.fromarray(image).save(folder / "full_body_img" / f"{i}.jpg", quality=95)
            write_lms(folder / "landmarks" / f"{i}.lms", landmarks68(style, frame, size))
        soundfile.write(str(folder / "aud.wav"), audio, 16000, subtype="PCM_16")
        write_video(folder / f"{name}.mp4", images, fps=fps, audio=(audio, 16000))
        np.save(folder / "mouth.npy", motion["mouth"])
    return {"frames": frames, "fps": fps, "seconds": frames / fps, "size": size}
