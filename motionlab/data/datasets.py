"""Portrait / driver-clip datasets over three on-disk layouts.

Layouts (``layout=``):

- ``seed``: ``<root>/<name>.png`` portraits with driver clips ``<root>/<name>_video/0000.png ...``
  (optionally ``keypoints.npy`` (T, K, 2) and ``motion.npz``); the toy world writes this.
- ``videos``: a folder of video files, each clip its own identity; the source frame is drawn from the
  same clip (FOMM-style).
- ``frames``: a folder of frame folders, each its own identity, source drawn from the same clip.
- ``auto``: the first of the above that the folder matches.

A sample is a dict of float tensors in [0, 1]: ``source`` (3, H, W) (the portrait, or a frame of the
clip), ``driver`` (3, H, W) frame ``t``, ``driver_next`` (3, H, W) a neighbouring frame for temporal
terms, plus ``identity`` (str), ``frame_index`` / ``next_index`` (int) and, when the layout carries
ground truth, ``driver_keypoints`` / ``portrait_keypoints`` (K, 2) in pixels of the returned images. With
``face_labels`` a sample also carries the driver frame's ``driver_landmarks`` (68, 2) (dlib / iBUG-300W order,
pixels of the returned images) and ``driver_head_pose`` (3,) (pitch, yaw, roll in degrees, LivePortrait's
convention): the labels LivePortrait's landmark-guidance and head-pose terms train on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from motionlab.data.batches import AnimationBatch
from motionlab.data.images import to_tensor
from motionlab.data.synthetic import toy_face_labels
from motionlab.data.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ClipError, open_clip, read_image
from motionlab.utils.errors import InputError
from motionlab.utils.io import read_array

log = logging.getLogger(__name__)
LAYOUTS = ("auto", "seed", "videos", "frames")


@dataclass(frozen=True)
class ClipRecord:
    """One identity: its driver clip and, in the seed layout, its portrait and ground truth."""

    identity: str
    clip: Path
    portrait: Path | None = None
    keypoints: Path | None = None


def _seed_records(root: Path) -> list[ClipRecord]:
    records = []
    for clip in sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith("_video")):
        name = clip.name[: -len("_video")]
        portraits = [root / f"{name}{ext}" for ext in IMAGE_EXTENSIONS if (root / f"{name}{ext}").is_file()]
        if not portraits:
            raise ClipError(f"seed layout: clip folder {clip} has no portrait {root / name}.png; add it or move the clip out")
        gt = clip / "keypoints.npy"
        records.append(ClipRecord(name, clip, portraits[0], gt if gt.is_file() else None))
    return records


class FolderClips:
    """Where a dataset's clips, portraits and ground truth come from: the files its :class:`ClipRecord` s name.
    :class:`motionlab.data.shards.ShardClips` serves the same from litdata shards."""

    def open_clip(self, record: ClipRecord):
        """The record's clip: ``len()`` frames and ``get(indices)`` -> (N, H, W, 3) uint8."""
        return open_clip(record.clip)

    def read_portrait(self, record: ClipRecord) -> np.ndarray:
        return read_image(record.portrait)

    def ground_truth(self, record: ClipRecord) -> tuple[np.ndarray, np.ndarray | None]:
        """(T, K, 2) driver keypoints and the portrait's (K, 2) (``None`` without); only for records with ``keypoints``."""
        return read_array(record.keypoints), _portrait_keypoints(record)

    def face_labels(self, record: ClipRecord, stored_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
        """(T, 68, 2) landmarks in pixels of the stored (H, W) frames and (T, 3) head pose in degrees, where the clip
        has them: its :func:`face_labels_path` file (``motionlab-data face-labels``), else a toy character's own
        (from its stored geometry and motion); ``None`` otherwise."""
        path = face_labels_path(record.clip)
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                return data["landmarks"], data["head_pose"]
        return toy_face_labels(record.clip, stored_size[1]) if stored_size[0] == stored_size[1] else None


def discover_clips(root: str | os.PathLike, layout: str = "auto") -> tuple[str, list[ClipRecord]]:
    """Find the clips under ``root``; returns the layout used and one record per identity."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise InputError(f"data layout must be one of {LAYOUTS}, got {layout!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist or is not a folder; set data.root to your clips")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    candidates = {
        "seed": lambda: _seed_records(root),
        "videos": lambda: [ClipRecord(p.stem, p) for p in entries if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS],
        "frames": lambda: [ClipRecord(p.name, p) for p in entries if p.is_dir() and not p.name.endswith("_video")],
    }
    order = [layout] if layout != "auto" else ["seed", "videos", "frames"]
    for name in order:
        records = candidates[name]()
        if records:
            return name, records
    others = {name: len(candidates[name]()) for name in candidates if name not in order}
    found = [f"{count} clips in the {name} layout" for name, count in others.items() if count]
    hint = (f"it holds {', '.join(found)}: give data.layout=auto (or data.layout={next(n for n, c in others.items() if c)}) to read them"
            if found else "it holds none in any layout")
    raise ClipError(
        f"data root {root} holds no clips for data.layout={layout!r} (seed: <name>.png + <name>_video/ folders; videos: "
        f"{', '.join(VIDEO_EXTENSIONS)} files; frames: folders of frames); {hint}"
    )


def split_identities(
    identities: list[str], val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> dict[str, list[str]]:
    """Identity-disjoint seeded split into train / val / test (test empty when its fraction is 0)."""
    if not 0.0 <= val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise InputError(f"split fractions must be in [0, 1) and sum below 1, got val={val_fraction}, test={test_fraction}")
    order = sorted(identities)
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise InputError(f"{n} identities are too few for val={val_fraction}, test={test_fraction}; add clips")
    return {
        "val": sorted(order[:n_val]),
        "test": sorted(order[n_val : n_val + n_test]),
        "train": sorted(order[n_val + n_test :]),
    }


def uniform_frame_indices(length: int, max_frames: int | None) -> np.ndarray:
    """At most ``max_frames`` indices spread uniformly over a clip of ``length`` frames."""
    if max_frames is None or max_frames >= length:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, max_frames).round().astype(np.int64))


def frames_to_tensor(frames: np.ndarray, size: int | None) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, S, S) float in [0, 1], resized with antialiasing when ``size`` is set."""
    if size is not None and frames.shape[1:3] != (size, size):
        frames = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])
    return to_tensor(frames)


class PortraitVideoDataset(Dataset):
    """(source, driver, neighbouring driver) samples over the clips of ``records``.

    Args:
        records: clips to serve (see :func:`discover_clips`).
        image_size: side of the returned square images; ``None`` keeps the stored size.
        max_frames: driver frames per clip, spread uniformly (``None``: all).
        temporal_max_stride: the neighbouring frame is ``t + s``, ``s`` drawn from ``[1, stride]``.
        time_flip: probability of taking the neighbour backwards in time (``t - s``).
        source_frame: ``"random"`` (a random frame of the clip, FOMM-style) or ``"first"``; ignored
            when the layout has portraits.
        on_bad_clip: ``"error"`` raises on an unreadable or empty clip; ``"skip"`` drops it, counts it
            in :attr:`skipped` and logs a warning.
        frame_range: the part of every clip served, as fractions ``(start, stop)`` of its length (a time split of
            one identity: the first half trains, the second is held out); neighbouring frames stay inside it.
        face_labels: serve the driver frame's ``driver_landmarks`` and ``driver_head_pose`` (an error names a clip
            without them).
        store: where the records' clips, portraits and ground truth are read (:class:`FolderClips` by default).
    """

    def __init__(
        self,
        records: list[ClipRecord],
        image_size: int | None = None,
        max_frames: int | None = None,
        temporal_max_stride: int = 1,
        time_flip: float = 0.0,
        source_frame: str = "random",
        on_bad_clip: str = "error",
        frame_range: tuple[float, float] = (0.0, 1.0),
        store: FolderClips | None = None,
        face_labels: bool = False,
    ):
        if on_bad_clip not in ("error", "skip"):
            raise InputError(f"on_bad_clip must be 'error' or 'skip', got {on_bad_clip!r}")
        if source_frame not in ("random", "first"):
            raise InputError(f"source_frame must be 'random' or 'first', got {source_frame!r}")
        if temporal_max_stride < 1:
            raise InputError(f"temporal_max_stride must be >= 1, got {temporal_max_stride}")
        if not 0.0 <= frame_range[0] < frame_range[1] <= 1.0:
            raise InputError(f"frame_range must be fractions 0 <= start < stop <= 1 of a clip, got {tuple(frame_range)}")
        self.store = store or FolderClips()
        self.image_size = image_size
        self.temporal_max_stride = temporal_max_stride
        self.time_flip = time_flip
        self.source_frame = source_frame
        self.face_labels = face_labels
        self.records: list[ClipRecord] = []
        self.spans: list[tuple[int, int]] = []  # the served [start, stop) frames of every clip
        self.skipped: list[tuple[Path, str]] = []
        index: list[tuple[int, int]] = []
        for record in records:
            try:
                length = len(self.store.open_clip(record))
                if record.portrait is not None:
                    self.store.read_portrait(record)
            except ClipError as error:
                if on_bad_clip == "error":
                    raise
                log.warning("skipping bad clip (data.on_bad_clip=skip): %s", error)
                self.skipped.append((record.clip, str(error)))
                continue
            start, stop = round(frame_range[0] * length), max(round(frame_range[0] * length) + 1, round(frame_range[1] * length))
            clip_id = len(self.records)
            self.records.append(record)
            self.spans.append((start, stop))
            index.extend((clip_id, start + int(t)) for t in uniform_frame_indices(stop - start, max_frames))
        if not index:
            raise ClipError(f"no usable clips among {len(records)} (skipped: {[str(p) for p, _ in self.skipped]})")
        self.index = index
        self._clips: dict[int, object] = {}
        self._portraits: dict[int, tuple[torch.Tensor, tuple[int, int]]] = {}
        self._clips_pid: int | None = None
        self._keypoints: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._face_labels: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # identity -> cached descriptor arrays (see motionlab.data.descriptor_cache), set by the datamodule
        self.descriptors: dict[str, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _clip(self, clip_id: int):
        # Decoders hold OS handles that must not cross a fork into DataLoader workers: open per process.
        if self._clips_pid != os.getpid():
            self._clips, self._portraits, self._clips_pid = {}, {}, os.getpid()
        if clip_id not in self._clips:
            self._clips[clip_id] = self.store.open_clip(self.records[clip_id])
        return self._clips[clip_id]

    def _portrait(self, clip_id: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """The clip's portrait as a (3, S, S) tensor and its stored (H, W), decoded once per process."""
        self._clip(clip_id)  # resets the per-process caches after a fork
        if clip_id not in self._portraits:
            image = self.store.read_portrait(self.records[clip_id])
            self._portraits[clip_id] = (frames_to_tensor(image[None], self.image_size)[0], image.shape[:2])
        return self._portraits[clip_id]

    def ground_truth(self, clip_id: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(T, K, 2) driver keypoints and the portrait's (K, 2) keypoints, when the layout has them."""
        record = self.records[clip_id]
        if record.keypoints is None:
            return None
        if clip_id not in self._keypoints:
            self._keypoints[clip_id] = self.store.ground_truth(record)
        return self._keypoints[clip_id]

    def _neighbour(self, t: int, span: tuple[int, int]) -> int:
        start, stop = span
        stride = int(torch.randint(1, self.temporal_max_stride + 1, ()).item()) if self.temporal_max_stride > 1 else 1
        backwards = self.time_flip > 0 and torch.rand(()).item() < self.time_flip
        step = -stride if backwards else stride
        neighbour = t + step
        if not start <= neighbour < stop:
            neighbour = t - step
        return int(min(max(neighbour, start), stop - 1))

    def __getitem__(self, item: int) -> AnimationBatch:
        clip_id, t = self.index[item]
        record = self.records[clip_id]
        clip = self._clip(clip_id)
        t_next = self._neighbour(t, self.spans[clip_id])
        frames = clip.get([t, t_next])
        stored_size = frames.shape[1:3]
        driver, driver_next = frames_to_tensor(frames, self.image_size)
        if record.portrait is not None:
            source, stored_portrait_size = self._portrait(clip_id)
            source_index = -1
        else:
            # "first": the clip's first frame, the reference every split shares; "random": one inside the served span
            source_index = 0 if self.source_frame == "first" else int(torch.randint(*self.spans[clip_id], ()).item())
            stored_portrait_size = stored_size
            source = frames_to_tensor(clip.get([source_index]), self.image_size)[0]
        sample = {
            "portrait": source,
            "driver": driver,
            "driver_next": driver_next,
            "identity": record.identity,
            "frame_index": t,
            "next_index": t_next,
            "portrait_index": source_index,
        }
        cached = self.descriptors.get(record.identity)
        if cached is not None:
            for key in ("value", "jacobian"):
                if key in cached:
                    name = "descriptors" if key == "value" else "descriptor_jacobians"
                    sample[f"driver_{name}"] = torch.from_numpy(cached[key][t])
                    sample[f"driver_next_{name}"] = torch.from_numpy(cached[key][t_next])
                    source = cached.get(f"portrait_{key}") if source_index < 0 else cached[key][source_index]
                    sample[f"portrait_{name}"] = torch.from_numpy(np.asarray(source))
        gt = self.ground_truth(clip_id)
        if gt is not None:
            driver_points, portrait_points = gt
            sample["driver_keypoints"] = self._rescale(driver_points[t], stored_size)
            if portrait_points is not None:
                sample["portrait_keypoints"] = self._rescale(portrait_points, stored_portrait_size)
        if self.face_labels:
            landmarks, head_pose = self._clip_face_labels(clip_id, stored_size)
            sample["driver_landmarks"] = self._rescale(landmarks[t], stored_size)
            sample["driver_head_pose"] = torch.from_numpy(head_pose[t].astype(np.float32))
        return sample

    def _clip_face_labels(self, clip_id: int, stored_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        if clip_id not in self._face_labels:
            record = self.records[clip_id]
            labels = self.store.face_labels(record, stored_size)
            if labels is None:
                raise InputError(f"data.face_labels: clip {record.clip} has no face labels (landmarks and head pose); write them with "
                                 f"`motionlab-data face-labels root=<the clips' folder>` (the toy world's characters carry their own), "
                                 f"or set data.face_labels=false")
            frames = len(self._clip(clip_id))
            if len(labels[0]) != frames:
                raise InputError(f"data.face_labels: {face_labels_path(record.clip)} has {len(labels[0])} frames of labels for a clip of "
                                 f"{frames}; write them again with `motionlab-data face-labels`")
            self._face_labels[clip_id] = labels
        return self._face_labels[clip_id]

    def _rescale(self, points: np.ndarray, stored_size: tuple[int, int]) -> torch.Tensor:
        points = torch.as_tensor(points, dtype=torch.float32)
        if self.image_size is None:
            return points
        scale = torch.tensor([self.image_size / stored_size[1], self.image_size / stored_size[0]])
        return (points + 0.5) * scale - 0.5  # pixel centres, not corners, are the unit of keypoints

    def clip_frames(self, clip_id: int, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The source image and the first ``count`` (all: ``None``) served frames of clip ``clip_id``: (3, S, S), (T, 3, S, S).
        The source is the portrait, or the clip's first frame in layouts without one."""
        clip = self._clip(clip_id)
        start, stop = self.spans[clip_id]
        stop = stop if count is None else min(stop, start + count)
        frames = frames_to_tensor(clip.get(range(start, stop)), self.image_size)
        record = self.records[clip_id]
        source = self._portrait(clip_id)[0] if record.portrait is not None else frames_to_tensor(clip.get([0]), self.image_size)[0]
        return source, frames

    def clip_keypoints(self, clip_id: int, count: int | None = None) -> torch.Tensor | None:
        """Ground-truth (T, K, 2) pixel keypoints of the frames :meth:`clip_frames` serves (at ``image_size``), if the layout has them."""
        gt = self.ground_truth(clip_id)
        if gt is None:
            return None
        start, stop = self.spans[clip_id]
        stop = stop if count is None else min(stop, start + count)
        stored_size = self._clip(clip_id).get([0]).shape[1:3]
        return self._rescale(gt[0][start:stop], stored_size)


def face_labels_path(clip: Path) -> Path:
    """Where a clip's face labels live: ``face_labels.npz`` in a frame folder, ``<video>.face_labels.npz`` beside a
    video (``landmarks`` (T, 68, 2) pixels, ``head_pose`` (T, 3) degrees, ``found`` (T,) dlib found a face)."""
    return clip / "face_labels.npz" if clip.is_dir() else clip.with_name(f"{clip.name}.face_labels.npz")


def _portrait_keypoints(record: ClipRecord) -> np.ndarray | None:
    motion = record.clip / "motion.npz"
    if not motion.is_file():
        return None
    with np.load(motion, allow_pickle=False) as data:
        return data["portrait_keypoints"] if "portrait_keypoints" in data else None

