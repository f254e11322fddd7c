"""Identity profiles: a person's (or a character's) identity computed once from a video, a frame folder or an image
and reused: the CSIM metric of the evaluation suite compares generated frames with it.

A profile holds the frames it used (at most ``max_frames``, spread uniformly over the clip), their smoothed dlib
landmarks (human faces), their identity embeddings (:mod:`motionlab.metrics.identity`), the unit mean embedding,
the spread (mean cosine distance of the frames to that mean), and provenance: the source and its SHA-256, the
embedder and landmark model files and theirs. It is a JSON file, written atomically.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from motionlab.data.datasets import uniform_frame_indices
from motionlab.data.landmarks import DlibLandmarks, face_model_path, landmark_sequence
from motionlab.data.video_io import IMAGE_EXTENSIONS, open_clip, read_image
from motionlab.metrics.identity import EMBEDDERS, csim, make_embedder, unit
from motionlab.utils.config import check_stored
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_write_text, file_digest

PROFILE_FORMAT = "motionlab-identity-profile"
PROFILE_VERSION = 1


@dataclass
class IdentityProfile:
    """See the module docstring; ``embeddings`` / ``landmarks`` are per used frame (``frames``: source indices)."""

    name: str
    embedder: str
    mean: list[float]
    spread: float
    frames: list[int]
    embeddings: list[list[float]]
    landmarks: list[list[list[float]]] | None
    frame_count: int
    frames_without_face: int
    provenance: dict = field(default_factory=dict)

    def mean_vector(self) -> np.ndarray:
        return np.asarray(self.mean, np.float64)

    def similarity(self, embeddings: np.ndarray) -> np.ndarray:
        """CSIM of (N, D) embeddings (of this profile's embedder) to the profile."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != len(self.mean):
            raise InputError(f"profile {self.name} holds {len(self.mean)}-d {self.embedder} embeddings, got an array of shape {embeddings.shape}")
        return csim(embeddings, self.mean_vector())

    def to_json(self) -> str:
        return json.dumps({"format": PROFILE_FORMAT, "version": PROFILE_VERSION, **asdict(self)}, indent=1)


def _read_frames(source: Path, max_frames: int) -> tuple[np.ndarray, list[int], int, str]:
    """Uniformly sampled frames, their indices, the source's frame count and its SHA-256 (a folder: of its files' digests)."""
    if source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS:
        return read_image(source)[None], [0], 1, file_digest(source)
    clip = open_clip(source)
    indices = [int(i) for i in uniform_frame_indices(len(clip), max_frames)]
    if source.is_dir():
        digest = hashlib.sha256("".join(file_digest(p) for p in clip.files).encode()).hexdigest()
    else:
        digest = file_digest(source)
    return clip.get(indices), indices, len(clip), digest


def build_profile(source: str | os.PathLike, max_frames: int = 32, embedder: str = "auto", name: str | None = None,
                  smooth_window: int = 3) -> IdentityProfile:
    """The identity profile of a video, frame folder or image.

    ``embedder``: ``face`` (dlib, human faces), ``image`` (EfficientNet-Lite0 features) or ``auto`` (``face`` when dlib
    finds a face in at least half of the frames, else ``image``). Landmarks are kept when dlib finds faces.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"profile source {source} does not exist; give a video, a frame folder or an image")
    if max_frames < 1:
        raise InputError(f"max_frames must be >= 1, got {max_frames}")
    if embedder not in (*EMBEDDERS, "auto"):
        raise InputError(f"embedder must be auto or one of {EMBEDDERS}, got {embedder!r}")
    frames, indices, count, digest = _read_frames(source, max_frames)
    landmarker = DlibLandmarks()
    shapes = [landmarker.shape(np.ascontiguousarray(f)) for f in frames]  # detected once: landmarks and face embeddings
    found = np.array([shape is not None for shape in shapes])
    if embedder == "auto":
        embedder = "face" if found.mean() >= 0.5 else "image"
    if embedder == "face" and not found.any():
        raise InputError(f"{source}: dlib finds no face in any of {len(frames)} frames; use embedder=image for non-human portraits")
    landmarks = None
    if found.any():
        detections = [None if shape is None else DlibLandmarks.points(shape) for shape in shapes]
        landmarks = landmark_sequence(detections, frames.shape[1:3], str(source), smooth_window).points
    model = make_embedder(embedder)
    embeddings, embedded = model(frames, shapes)
    kept = embeddings[embedded]
    mean = unit(unit(kept).mean(axis=0))
    spread = float(1.0 - csim(kept, mean).mean())
    provenance = {
        "source": str(source), "source_sha256": digest,
        "embedder": {"name": embedder, "model": model.model_name, "file": model.model_path.name, "sha256": file_digest(model.model_path)},
        "landmarks": {"model": DlibLandmarks.model_name, "sha256": file_digest(face_model_path(DlibLandmarks.model_name)),
                      "smooth_window": smooth_window} if landmarks is not None else None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return IdentityProfile(
        name=name or source.stem, embedder=embedder, mean=mean.tolist(), spread=spread,
        frames=[i for i, ok in zip(indices, embedded) if ok], embeddings=kept.tolist(),
        landmarks=landmarks[embedded].tolist() if landmarks is not None else None,
        frame_count=count, frames_without_face=int((~found).sum()), provenance=provenance,
    )


def write_profile(profile: IdentityProfile, path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix != ".json":
        raise InputError(f"profiles are JSON files: give a path ending in .json, got {path}")
    return atomic_write_text(path, profile.to_json())


def read_profile(path: str | os.PathLike) -> IdentityProfile:
    """A profile written by :func:`write_profile`, checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"profile {path} does not exist; make one with motionlab-data profile source=VIDEO out={path.name}")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"profile {path} is not valid JSON ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != PROFILE_FORMAT or payload.get("version") != PROFILE_VERSION:
        found = (payload.get("format"), payload.get("version")) if isinstance(payload, dict) else (type(payload).__name__, None)
        raise InputError(f"{path} is not a motionlab identity profile (format {found[0]!r}, version {found[1]!r})")
    names = {f.name for f in fields(IdentityProfile)}
    missing = sorted(names - set(payload))
    if missing:
        raise InputError(f"profile {path} lacks {missing}; write it again with motionlab-data profile")
    check_stored(payload, f"profile {path}")
    profile = IdentityProfile(**{key: payload[key] for key in names})
    mean = _finite_array(profile.mean, 1, path, "mean")
    embeddings = _finite_array(profile.embeddings, 2, path, "embeddings")
    _finite_array([profile.spread], 1, path, "spread")
    if profile.embedder not in EMBEDDERS or embeddings.shape[1] != len(mean):
        raise InputError(f"profile {path}: embedder {profile.embedder!r} / mean of length {len(mean)} do not fit its embeddings")
    if not isinstance(profile.name, str) or not all(isinstance(frame, int) for frame in profile.frames or []):
        raise InputError(f"profile {path}: 'name' must be a string and 'frames' frame numbers; write it again with motionlab-data profile")
    return profile


def _finite_array(values, ndim: int, path: Path, key: str) -> np.ndarray:
    """``values`` as a non-empty float array of ``ndim`` dimensions with finite entries, else an error naming ``key``."""
    try:
        array = np.asarray(values, np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"profile {path}: '{key}' is not an array of numbers ({error}); write it again with motionlab-data profile") from error
    if array.ndim != ndim or array.size == 0:
        raise InputError(f"profile {path}: '{key}' must be a non-empty {ndim}-d array of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"profile {path}: '{key}' holds NaN or infinite values; a profile of finite numbers is needed to score against")
    return array
