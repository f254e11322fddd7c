"""Lip-sync samples from talking-head folders in the SyncTalk_2D layout (see :mod:`motionlab.data.talking`).

A clip folder holds ``full_body_img/{i}.jpg``, ``landmarks/{i}.lms`` and ``aud.wav``. Every frame is
cropped by its landmarks to the inner 320 x 320 face (:func:`crop_face`); the mel windows come from
``aud.wav``; per-frame audio features come from ``aud_<mode>.npy``. Crops, channel order and the rows of the
feature files follow the data's :class:`~motionlab.models.lipsync.LipSyncConvention` (``data.convention``):

- ``ave``: (rows, 512) from an ``ave`` audio encoder. Computed from ``aud.wav`` with the encoder checkpoint
  you give and cached as ``aud_ave.npy`` next to ``aud_ave.json`` (the encoder's and the wav's SHA-256 and the
  convention): a cache written with another encoder, wav or convention is recomputed with a warning.
- ``hubert`` (``aud_hu.npy``, 2048 values per frame) and ``wenet`` (``aud_wenet.npy``, 8192 per frame):
  computed by your own HuBERT / WeNet pipelines, read with shape checks.

A feature file without a manifest is SyncTalk_2D's own (its rows padded by one copy of the first and last encoder
output): used as is under the ``synctalk_2d`` convention, an error under ``motionlab``'s, never a silent one-frame
shift. A ``motionlab``-convention file of your own pipeline declares itself with ``{"convention": "motionlab"}`` in
the ``.json`` beside it.

Training and validation frames are split in time within each clip (the last ``val_fraction`` of the
frames, after a gap as long as the audio context so no validation audio is seen in training).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from motionlab.data.audio import (
    CONTEXT,
    SAMPLE_RATE,
    AudioError,
    audio_input,
    encoder_window_count,
    load_wav,
    mel_windows,
    melspectrogram,
    per_frame_features,
)
from motionlab.data.batches import LipSyncBatch, MuseTalkBatch, Wav2LipBatch
from motionlab.data.images import to_tensor
from motionlab.data.landmarks import read_lms
from motionlab.data.talking import crop_face, resize
from motionlab.data.video_io import ClipError, list_frame_files, read_image
from motionlab.models import create_model, freeze
from motionlab.models.lipsync import AUDIO_SHAPES, LipSyncConvention, lipsync_convention, to_channel_order
from motionlab.models.musetalk import (
    WHISPER_FPS,
    face_crops,
    landmark_face_box,
    mouth_box,
    whisper_log_mels,
    window_start,
)
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_open, file_digest, read_array, write_json

log = logging.getLogger(__name__)
SILENCE_PEAK = 1e-4  # below this the audio holds nothing to learn from (16-bit PCM steps are 3e-5)
FEATURE_FILES = {"ave": "aud_ave.npy", "hubert": "aud_hu.npy", "wenet": "aud_wenet.npy"}


def is_talking_clip(folder: Path) -> bool:
    return (folder / "full_body_img").is_dir() and (folder / "landmarks").is_dir()


def discover_talking_clips(root: str | os.PathLike) -> list[Path]:
    """``root`` itself when it is a clip folder, else its sub-folders that are; an error when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise ClipError(f"lip-sync data root {root} is not a folder; run `motionlab-data talking video=VIDEO out=DIR` first")
    if is_talking_clip(root):
        return [root]
    clips = sorted(p for p in root.iterdir() if p.is_dir() and is_talking_clip(p))
    if not clips:
        raise ClipError(f"{root} holds no talking-head clip (a folder with full_body_img/ and landmarks/); "
                        "run `motionlab-data talking video=VIDEO out=DIR` first")
    return clips


class TalkingClip:
    """One clip folder: its 320 x 320 face crops (cut as ``convention`` says), crop boxes, landmarks and mel windows,
    read once."""

    def __init__(self, folder: str | os.PathLike, fps: float = 25.0, convention: str | LipSyncConvention = "motionlab"):
        self.folder, self.fps, self.convention = Path(folder), fps, lipsync_convention(convention)
        self.frame_files = list_frame_files(self.folder / "full_body_img")
        if not self.frame_files:
            raise ClipError(f"{self.folder / 'full_body_img'} holds no frames")
        self.landmarks = np.stack([read_lms(self._lms(i)) for i in range(len(self.frame_files))])
        self._crops: np.ndarray | None = None
        self._boxes: np.ndarray | None = None
        self._mel: torch.Tensor | None = None

    def _lms(self, index: int) -> Path:
        path = self.folder / "landmarks" / f"{self.frame_files[index].stem}.lms"
        if not path.is_file():
            raise ClipError(f"{path} is missing: every frame in full_body_img/ needs its landmarks (re-run motionlab-data talking)")
        return path

    def __len__(self) -> int:
        return len(self.frame_files)

    def _load_crops(self) -> None:
        crops, boxes = [], []
        for path, points in zip(self.frame_files, self.landmarks):
            try:
                crop, box = crop_face(read_image(path), points, self.convention)
            except ValueError as error:
                raise ClipError(f"{path}: {error}") from error
            crops.append(crop)
            boxes.append(box)
        self._crops, self._boxes = np.stack(crops), np.array(boxes)

    @property
    def crops(self) -> np.ndarray:
        """(N, 320, 320, 3) uint8 face crops."""
        if self._crops is None:
            self._load_crops()
        return self._crops

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) crop boxes (x0, y0, x1, y1) in frame pixels."""
        if self._boxes is None:
            self._load_crops()
        return self._boxes

    def wav(self) -> np.ndarray:
        """The clip's speech (``aud.wav``, 16 kHz); silence is an error."""
        path = self.folder / "aud.wav"
        wav = load_wav(path)
        peak = float(np.abs(wav).max())
        if peak < SILENCE_PEAK:
            raise AudioError(f"{path} is silent (peak amplitude {peak:.2g}): lip-sync training needs the speech; "
                             "check the source video's audio track")
        return wav

    @property
    def mel(self) -> torch.Tensor:
        """(N, 1, 80, 16) mel windows, one per video frame, window ``i`` starting at frame ``i``'s time."""
        if self._mel is None:
            self._mel = mel_windows(melspectrogram(self.wav()), len(self), self.fps)
        return self._mel


@torch.no_grad()
def encode_audio(encoder: nn.Module, mel: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """(N, 512) ``ave`` features of (N, 1, 80, 16) mel windows."""
    encoder = encoder.eval()
    device = next(encoder.parameters()).device
    with torch.no_grad():
        return torch.cat([encoder(mel[i : i + batch_size].to(device)) for i in range(0, len(mel), batch_size)]).cpu().numpy().astype(np.float32)


def speech_features(encoder: nn.Module, wav: np.ndarray, convention: LipSyncConvention, fps: float = 25.0,
                    frames: int | None = None) -> torch.Tensor:
    """(rows, 512) per-frame ``ave`` features of 16 kHz ``wav`` under ``convention``: the encoder's windows
    (:func:`~motionlab.data.audio.encoder_window_count`, or one per frame of a ``frames``-long video) with the
    convention's edge rows; what SyncTalk_2D writes as ``aud_ave.npy`` under its convention."""
    windows = encoder_window_count(len(wav), convention, fps) if frames is None else frames - 2 * convention.feature_edge_rows
    outputs = torch.from_numpy(encode_audio(encoder, mel_windows(melspectrogram(wav), windows, fps)))
    return per_frame_features(outputs, convention)


def feature_file_convention(path: Path) -> str:
    """The convention of a per-frame feature file: its manifest's (``<name>.json``, written by motionlab; older
    manifests are ``motionlab``'s), or ``synctalk_2d`` for a file without one (SyncTalk_2D's own preprocessing)."""
    manifest = path.with_suffix(".json")
    if not manifest.is_file():
        return "synctalk_2d"
    return json.loads(manifest.read_text()).get("convention", "motionlab")


def read_feature_file(path: str | os.PathLike, mode: str, convention: LipSyncConvention) -> torch.Tensor:
    """(rows, F) per-frame features from a ``.npy``; one of another convention than the model's is an error."""
    path = Path(path)
    found = feature_file_convention(path)
    if found != convention.name:
        raise AudioError(f"{path} holds {found} features ({'its manifest says so' if found != 'synctalk_2d' else 'no motionlab manifest beside it'}); "
                         f"this model reads {convention.name} ones: their rows align with video frames differently. "
                         + ("Give the audio encoder to compute them, or use a model of that convention"
                            if mode == "ave" else f"compute them for {convention.name} and write {path.with_suffix('.json').name} "
                            f'with {{"convention": "{convention.name}"}}'))
    features = read_array(path)
    per_frame = int(np.prod(AUDIO_SHAPES[mode])) // CONTEXT
    if features.ndim < 2 or int(np.prod(features.shape[1:])) != per_frame:
        raise AudioError(f"{path}: shape {features.shape}; expected (rows, ...) with {per_frame} values per video frame "
                         f"(the U-Net reads 16 rows as {AUDIO_SHAPES[mode]})")
    if not np.isfinite(features).all():
        raise AudioError(f"{path} holds NaN or infinite features; compute them again (motionlab-data talking audio_encoder=...)")
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).reshape(len(features), -1)


def audio_features(clip: TalkingClip, mode: str, encoder_checkpoint: str | os.PathLike | None = None) -> torch.Tensor:
    """(rows, F) per-frame audio features of ``clip`` for ``mode`` under the clip's convention (see the module docstring
    for files and caching); ``motionlab`` ones hold one row per video frame."""
    if mode not in FEATURE_FILES:
        raise InputError(f"audio feature mode must be one of {sorted(FEATURE_FILES)}, got {mode!r}")
    path = clip.folder / FEATURE_FILES[mode]
    if mode == "ave" and encoder_checkpoint is not None:
        features = _cached_ave_features(clip, path, Path(encoder_checkpoint))
    elif path.is_file():
        features = read_feature_file(path, mode, clip.convention)
    elif mode == "ave":
        raise AudioError(f"{path} does not exist: give the audio encoder checkpoint (data.audio_encoder_ckpt=...) to compute it")
    else:
        raise AudioError(f"{path} does not exist: compute {mode} features per video frame with your {mode} pipeline and save them there")
    if clip.convention.frame_count == "duration":
        if len(features) < len(clip):
            raise AudioError(f"{path}: {len(features)} feature rows for {len(clip)} video frames (one row per frame)")
        return features[: len(clip)]
    if abs(len(features) - len(clip)) > 2:
        log.warning("%s: %d feature rows for %d video frames; frames past the rows get zero audio context, as in SyncTalk_2D",
                    path, len(features), len(clip))
    return features


def _cached_ave_features(clip: TalkingClip, path: Path, encoder_checkpoint: Path) -> torch.Tensor:
    manifest_path = path.with_suffix(".json")
    key = {"encoder_sha256": file_digest(encoder_checkpoint), "wav_sha256": file_digest(clip.folder / "aud.wav"), "frames": len(clip),
           "fps": clip.fps, "convention": clip.convention.name}
    if path.is_file() and manifest_path.is_file():
        if json.loads(manifest_path.read_text()) == key:
            return torch.from_numpy(read_array(path))
        log.warning("%s was computed with another audio encoder, audio or convention; recomputing with %s", path, encoder_checkpoint)
    elif path.is_file():
        kept = path.with_name("aud_ave.user.npy")
        log.warning("%s has no manifest (not written by motionlab); kept as %s, computing with %s", path, kept.name, encoder_checkpoint)
        path.replace(kept)
    encoder = freeze(create_model("lipsync_audio_encoder_ave", ckpt=encoder_checkpoint))
    frames = len(clip) if clip.convention.frame_count == "duration" else None
    features = speech_features(encoder, clip.wav(), clip.convention, clip.fps, frames)
    with atomic_open(path, "wb") as file:
        np.save(file, features.numpy())
    write_json(manifest_path, key)  # written last: a killed run leaves no manifest, so the cache is recomputed
    return features


def face_tensor(crops: np.ndarray, convention: LipSyncConvention) -> torch.Tensor:
    """(..., 320, 320, 3) uint8 RGB -> (..., 3, 320, 320) float in [0, 1], in the convention's channel order."""
    return to_channel_order(to_tensor(crops), convention)


class LipSyncDataset(Dataset):
    """Samples of frames ``indices[c]`` of each clip ``c``.

    Each sample: ``face`` (3, 320, 320) crop of the frame, ``reference`` a crop of another frame of the
    clip, ``mel`` / ``mel_offsync`` (1, 80, 16) windows of the frame and of an off-sync frame at least
    ``min_offset`` frames away (same clip), ``audio`` / ``audio_offsync`` in the U-Net layout when features
    are given, and ``clip`` / ``frame`` indices. ``random`` draws references and off-sync frames afresh
    (training); otherwise they are fixed per sample, so validation is repeatable.
    """

    def __init__(self, clips: list[TalkingClip], indices: list[np.ndarray], features: list[torch.Tensor] | None = None,
                 mode: str = "ave", min_offset: int = 5, random: bool = True):
        self.clips, self.features, self.mode = clips, features, mode
        self.min_offset, self.random = min_offset, random
        self.items = [(c, int(i)) for c, frames in enumerate(indices) for i in frames]
        self.indices = indices
        for c, frames in enumerate(indices):
            if len(frames) <= 2 * min_offset:
                raise ClipError(f"{clips[c].folder}: {len(frames)} frames in a split are too few for off-sync pairs {min_offset} frames apart")

    def __len__(self) -> int:
        return len(self.items)

    def _offsync(self, clip: int, frame: int, rng: np.random.Generator) -> int:
        frames = self.indices[clip]
        far = frames[np.abs(frames - frame) >= self.min_offset]
        return int(rng.choice(far))

    def __getitem__(self, index: int) -> LipSyncBatch:
        c, i = self.items[index]
        # training draws follow torch's seeded RNG (seed_everything seeds workers too); validation is fixed per sample
        rng = np.random.default_rng(int(torch.randint(2**31, (1,))) if self.random else index)
        frames = self.indices[c]
        reference = int(rng.choice(frames))
        j = self._offsync(c, i, rng)
        clip = self.clips[c]
        sample = {
            "face": face_tensor(clip.crops[i], clip.convention), "reference": face_tensor(clip.crops[reference], clip.convention),
            "mel": clip.mel[i], "mel_offsync": clip.mel[j], "clip": c, "frame": i,
        }
        if self.features is not None:
            sample["audio"] = audio_input(self.features[c], i, self.mode, clip.convention)
            sample["audio_offsync"] = audio_input(self.features[c], j, self.mode, clip.convention)
        return sample


WAV2LIP_FRAMES = 5  # the generator trains on windows of 5 consecutive frames, as the expert SyncNet reads them
WAV2LIP_SIZE = 96


def wav2lip_face_box(points: np.ndarray, shape: tuple[int, int], pads: tuple[int, int, int, int] = (0, 10, 0, 0)) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) face box of one frame's (68, 2) landmarks for Wav2Lip training: their extent (brows to chin,
    about the box a face detector gives) padded by ``pads`` (top, bottom, left, right; the release's inference default)
    and clipped to the frame of ``shape`` (H, W)."""
    top, bottom, left, right = pads
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int)
    height, width = shape
    return max(0, y0 - top), min(height, y1 + bottom), max(0, x0 - left), min(width, x1 + right)


class Wav2LipDataset(Dataset):
    """Windows of 5 consecutive frames of each clip's ``indices`` for Wav2Lip (its ``color_syncnet`` / ``wav2lip``
    training data, from motionlab's talking-clip folders): 96 px BGR crops of the landmark face boxes
    (:func:`wav2lip_face_box`), a reference window at least ``min_offset`` frames away, each frame's mel window and
    the window's own (:class:`~motionlab.data.batches.Wav2LipBatch`). ``random`` draws references afresh (training);
    otherwise they are fixed per sample."""

    def __init__(self, clips: list[TalkingClip], indices: list[np.ndarray], min_offset: int = 5, random: bool = True):
        self.clips, self.min_offset, self.random = clips, min_offset, random
        self.starts = [frames[: len(frames) - WAV2LIP_FRAMES + 1] for frames in indices]
        for c, starts in enumerate(self.starts):
            if len(starts) <= 2 * min_offset:
                raise ClipError(f"{clips[c].folder}: {len(indices[c])} frames in a split are too few for 5-frame windows and "
                                f"references {min_offset} frames away")
        self.items = [(c, int(t)) for c, starts in enumerate(self.starts) for t in starts]
        self._crops: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.items)

    def crops(self, c: int) -> torch.Tensor:
        """(N, 3, 96, 96) BGR crops of clip ``c``'s frames, cut once."""
        if c not in self._crops:
            clip = self.clips[c]
            faces = []
            for path, points in zip(clip.frame_files, clip.landmarks):
                image = read_image(path)
                y0, y1, x0, x1 = wav2lip_face_box(points, image.shape[:2])
                faces.append(resize(image[y0:y1, x0:x1], WAV2LIP_SIZE, WAV2LIP_SIZE, "linear"))
            self._crops[c] = to_tensor(np.stack(faces)).flip(-3)
        return self._crops[c]

    def __getitem__(self, index: int) -> Wav2LipBatch:
        c, t = self.items[index]
        rng = np.random.default_rng(int(torch.randint(2**31, (1,))) if self.random else index)
        starts = self.starts[c]
        reference = int(rng.choice(starts[np.abs(starts - t) >= self.min_offset]))
        crops, mel = self.crops(c), self.clips[c].mel
        window = slice(t, t + WAV2LIP_FRAMES)
        return {"faces": crops[window], "reference": crops[reference : reference + WAV2LIP_FRAMES], "mels": mel[window],
                "sync_mel": mel[t], "clip": c, "frame": t}


class MuseTalkDataset(Dataset):
    """Windows of ``frames`` consecutive frames of each clip's ``indices`` for MuseTalk (its training samples, from
    motionlab's talking-clip folders; 1 frame in stage 1, several in stage 2): 256 px RGB crops in [-1, 1] of MuseTalk's
    landmark box (:func:`motionlab.models.musetalk.landmark_face_box`, ``extra_margin`` below the chin), for each frame a
    reference frame of the clip drawn from the same split, MuseTalk's mouth box in the crop, the Whisper log-mel window
    holding the frames with each frame's place in it, and the first frame's mel window (an expert SyncNet's audio input)
    (:class:`~motionlab.data.batches.MuseTalkBatch`). The task runs the frozen Whisper encoder on the log-mel, as MuseTalk's
    training does; windows whose frames straddle two 30-s Whisper windows are left out. ``random`` draws references
    afresh (training); otherwise they are fixed per sample."""

    def __init__(self, clips: list[TalkingClip], indices: list[np.ndarray], fps: float = 25.0, extra_margin: int = 10, random: bool = True,
                 frames: int = 1):
        self.clips, self.indices, self.fps, self.extra_margin, self.random, self.frames = clips, indices, fps, extra_margin, random, frames
        per_window = 30 * WHISPER_FPS
        self.items = [(c, int(i)) for c, split in enumerate(indices) for i in split[: len(split) - frames + 1]
                      if window_start(int(i), fps) // per_window == window_start(int(i) + frames - 1, fps) // per_window]
        if not self.items:
            raise ClipError(f"{clips[0].folder}: no window of {frames} consecutive frames in a split")
        self._crops: dict[int, tuple[torch.Tensor, np.ndarray]] = {}
        self._mels: dict[int, tuple[torch.Tensor, int]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def crops(self, c: int) -> tuple[torch.Tensor, np.ndarray]:
        """(N, 3, 256, 256) crops of clip ``c``'s frames in [-1, 1] and their (N, 4) mouth boxes, cut once."""
        if c not in self._crops:
            clip = self.clips[c]
            images, boxes, mouths = [], [], []
            for path, points in zip(clip.frame_files, clip.landmarks):
                image = read_image(path)
                box = landmark_face_box(points)
                if box is None:
                    raise ClipError(f"{path}: its landmarks give no MuseTalk face box (the face leaves the frame on the left)")
                x1, y1, x2, y2 = box
                box = (x1, y1, x2, min(y2 + self.extra_margin, image.shape[0]))
                images.append(image)
                boxes.append(box)
                mouths.append(mouth_box(points, box))
            crops = torch.from_numpy(face_crops(images, boxes)).permute(0, 3, 1, 2).float() / 127.5 - 1
            self._crops[c] = (crops, np.array(mouths, dtype=np.int64))
        return self._crops[c]

    def log_mels(self, c: int) -> tuple[torch.Tensor, int]:
        """(S, 80, 3000) Whisper log-mels of clip ``c``'s speech in 30-s windows and the speech's length in Whisper
        frames (50 per second), computed once."""
        if c not in self._mels:
            wav = self.clips[c].wav()
            self._mels[c] = (whisper_log_mels(wav), int(len(wav) / SAMPLE_RATE * WHISPER_FPS))
        return self._mels[c]

    def __getitem__(self, index: int) -> MuseTalkBatch:
        c, first = self.items[index]
        rng = np.random.default_rng(int(torch.randint(2**31, (1,))) if self.random else index)
        window = list(range(first, first + self.frames))
        references = [int(r) for r in rng.choice(self.indices[c], size=self.frames)]
        (mels, length), (crops, mouths) = self.log_mels(c), self.crops(c)
        per_window = 30 * WHISPER_FPS
        whisper = min(window_start(first, self.fps) // per_window, len(mels) - 1)
        starts = torch.tensor([window_start(i, self.fps) - whisper * per_window for i in window])
        return {"face": crops[window], "reference": crops[references], "mouth_box": torch.from_numpy(mouths[window]), "whisper_mel": mels[whisper],
                "audio_start": starts, "audio_frames": min(per_window, length - whisper * per_window), "sync_mel": self.clips[c].mel[first],
                "clip": c, "frame": first}


def temporal_split(frames: int, val_fraction: float, gap: int = CONTEXT) -> tuple[np.ndarray, np.ndarray]:
    """Train indices (the start) and validation indices (the last ``val_fraction``), ``gap`` frames apart."""
    n_val = int(round(frames * val_fraction))
    if val_fraction > 0 and (n_val < 1 or frames - n_val - gap < 1):
        raise ClipError(f"a clip of {frames} frames is too short for val_fraction={val_fraction} with a {gap}-frame gap")
    if n_val == 0:
        return np.arange(frames), np.arange(0)
    return np.arange(frames - n_val - gap), np.arange(frames - n_val, frames)
