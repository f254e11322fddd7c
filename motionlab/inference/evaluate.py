"""Score animation clips with the evaluation suite: a checkpoint on a test split, or existing videos.

Both paths produce the same thing: per-clip rows, the aggregate over all clips, and a preview per clip
(portrait | driver | generated), so other systems' outputs are scored by exactly the same code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from motionlab.data import stored_datamodule
from motionlab.data.datasets import frames_to_tensor
from motionlab.data.images import side_by_side
from motionlab.data.video_io import VIDEO_EXTENSIONS, ClipError, open_clip, read_image, write_gif
from motionlab.metrics.identity import ProfileSimilarity
from motionlab.metrics.suite import EvaluationSuite
from motionlab.models import motionlab_meta
from motionlab.tasks import AnimationPredictor, predictor_from_checkpoint
from motionlab.utils.checkpoint import load_checkpoint
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_dir

log = logging.getLogger(__name__)


@dataclass
class EvalClip:
    """One clip to score: (3, S, S) portrait and (T, 3, S, S) driver / generated frames in [0, 1]; ``audio``: its
    speech (16 kHz samples, the frames' fps) where it has one, for the lip-sync metrics."""

    name: str
    portrait: torch.Tensor
    driver: torch.Tensor
    generated: torch.Tensor
    audio: tuple[np.ndarray, float] | None = None


def clips_from_checkpoint(ckpt: str | os.PathLike, cache_dir: str | os.PathLike, split: str = "test", max_clips: int | None = None,
                          max_frames: int | None = None, batch_size: int = 16, device: str = "cpu") -> tuple[str, Iterator[EvalClip]]:
    """Animate the clips of a checkpoint's own datamodule ``split`` (identities it never trained on) with its predictor.
    The datamodule is rebuilt from the checkpoint's stored data config (:func:`motionlab.data.stored_datamodule`; a toy
    world is generated under ``cache_dir``); descriptor caches are not needed: the predictor detects descriptors from
    the frames. Returns the split's honest name and the clips: a datamodule that holds no test identities
    (``test_fraction=0``) stands its validation identities in for ``test``, and those picked the checkpoint, so the
    name is then ``val``, never ``test``."""
    checkpoint = load_checkpoint(ckpt)
    predictor = predictor_from_checkpoint(checkpoint, ckpt, device=device)
    if not isinstance(predictor, AnimationPredictor):
        raise InputError(f"{ckpt} is not an animation checkpoint; motionlab-eval scores animation (lip-sync runs log their own metrics)")
    datamodule = stored_datamodule(motionlab_meta(checkpoint, ckpt), ckpt, cache_dir, descriptor_ckpt=None)
    datamodule.prepare_data()
    datamodule.setup("test")
    if split not in datamodule.datasets:
        raise InputError(f"the checkpoint's data has no {split!r} split; choose one of {sorted(datamodule.datasets)}")
    dataset = datamodule.datasets[split]
    name = "val" if split == "test" and dataset is datamodule.datasets.get("val") else split
    if name != split:
        log.warning("the checkpoint's data holds no test identities (test_fraction=0): its validation identities, which picked the "
                    "checkpoint, are scored instead and labelled val (train with data.test_fraction>0 to hold identities out)")

    @torch.no_grad()
    def clips() -> Iterator[EvalClip]:
        count = len(dataset.records) if max_clips is None else min(max_clips, len(dataset.records))
        for clip_id in range(count):
            portrait, frames = dataset.clip_frames(clip_id, max_frames)
            portrait, frames = portrait[None].to(device), frames.to(device)
            generated = torch.cat([predictor(portrait, chunk, frames[:1])["generated"] for chunk in frames.split(batch_size)])
            yield EvalClip(dataset.records[clip_id].identity, portrait[0].cpu(), frames.cpu(), generated.cpu())

    return name, clips()


def _find_clip(folder: Path, name: str) -> Path:
    for candidate in [folder / name, *(folder / f"{name}{ext}" for ext in VIDEO_EXTENSIONS)]:
        if candidate.exists():
            return candidate
    raise ClipError(f"no clip named {name!r} (video or frame folder) in {folder}; generated and driver clips are paired by name")


def clips_from_folders(generated_dir: str | os.PathLike, driver_dir: str | os.PathLike, portrait_dir: str | os.PathLike | None = None,
                       image_size: int = 256, max_clips: int | None = None, max_frames: int | None = None) -> Iterator[EvalClip]:
    """Pair ``generated_dir/<name>`` with ``driver_dir/<name>`` (videos or frame folders) and score them.

    The portrait is ``portrait_dir/<name>.(png|jpg)`` when given, else the first driver frame. Clips
    of different lengths are scored over their common frames.
    """
    generated_dir, driver_dir = Path(generated_dir), Path(driver_dir)
    for folder in (generated_dir, driver_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder of clips")
    names = sorted({p.stem if p.is_file() else p.name for p in generated_dir.iterdir() if not p.name.startswith(".")})
    if not names:
        raise ClipError(f"{generated_dir} holds no clips to score")
    for name in names[:max_clips]:
        generated_clip, driver_clip = open_clip(_find_clip(generated_dir, name)), open_clip(_find_clip(driver_dir, name))
        frames = min(len(generated_clip), len(driver_clip), max_frames or 10**9)
        if frames < len(driver_clip) or frames < len(generated_clip):
            log.warning("clip %s: scoring the first %d frames (generated %d, driver %d)", name, frames, len(generated_clip), len(driver_clip))
        driver = frames_to_tensor(driver_clip.get(range(frames)), image_size)
        generated = frames_to_tensor(generated_clip.get(range(frames)), image_size)
        portrait = frames_to_tensor(read_image(_portrait_path(portrait_dir, name))[None], image_size)[0] if portrait_dir is not None else driver[0]
        yield EvalClip(name, portrait, driver, generated, _speech(_find_clip(generated_dir, name), generated_clip.fps))


def _speech(video: Path, fps: float | None) -> tuple[np.ndarray, float] | None:
    """A generated video's own audio track (its speech, for the lip-sync metrics) and frame rate, or None."""
    import av

    from motionlab.data.talking import read_audio_track

    if not video.is_file():
        return None
    with av.open(str(video)) as container:
        if not container.streams.audio:
            return None
    return read_audio_track(video), fps or 25.0


REFERENCE_ROWS = {"real video": "the driver clip itself (the ceiling: ideal reconstruction, the real sync)",
                  "copy baseline": "the portrait repeated (no motion at all: the floor a model must beat)"}


def reference_clips(kind: str, driver_dir: str | os.PathLike, portrait_dir: str | os.PathLike | None = None, image_size: int = 256,
                    max_clips: int | None = None, max_frames: int | None = None) -> Iterator[EvalClip]:
    """The reference rows of a comparison (:data:`REFERENCE_ROWS`): each clip of ``driver_dir`` scored as if it were
    generated (``real video``) or its portrait repeated (``copy baseline``), with the clip's audio where it has one."""
    if kind not in REFERENCE_ROWS:
        raise ValueError(f"reference row must be one of {', '.join(REFERENCE_ROWS)}, got {kind!r}")
    driver_dir = Path(driver_dir)
    names = sorted({p.stem if p.is_file() else p.name for p in driver_dir.iterdir() if not p.name.startswith(".")})
    for name in names[:max_clips]:
        path = _find_clip(driver_dir, name)
        clip = open_clip(path)
        frames = clip.get(range(min(len(clip), max_frames or len(clip))))
        portrait = read_image(_portrait_path(portrait_dir, name)) if portrait_dir is not None else frames[0]
        driver = frames_to_tensor(frames, image_size)
        source = frames_to_tensor(portrait[None], image_size)[0]
        generated = driver if kind == "real video" else source.expand_as(driver).clone()
        yield EvalClip(name, source, driver, generated, _speech(path, clip.fps) if kind == "real video" else None)


def _portrait_path(portrait_dir: str | os.PathLike, name: str) -> Path:
    candidates = [Path(portrait_dir) / f"{name}{ext}" for ext in (".png", ".jpg", ".jpeg")]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise ClipError(f"no portrait for clip {name!r} in {portrait_dir} (looked for {', '.join(c.name for c in candidates)})")
    return path


def model_entry(entry: str) -> tuple[str, str | None]:
    """``PATH`` or ``PATH@ARCH`` (a published file with its registered architecture) -> (path, arch)."""
    path, _, arch = str(entry).partition("@")
    if not Path(path).exists():
        raise FileNotFoundError(f"compare entry {entry!r}: {path} does not exist")
    return path, arch or None


@torch.no_grad()
def clips_from_model(ckpt: str | os.PathLike, arch: str | None, driver_dir: str | os.PathLike, portrait_dir: str | os.PathLike | None = None,
                     image_size: int = 256, max_clips: int | None = None, max_frames: int | None = None, device: str = "cpu") -> Iterator[EvalClip]:
    """Animate every clip of ``driver_dir`` with one model, as ``motionlab-animate`` would (its predictor's crop and
    paste-back included), and yield the results for scoring at ``image_size``: the portrait is
    ``portrait_dir/<name>.(png|jpg)`` (cross-identity) or the clip's first frame (self-reenactment, the papers'
    reconstruction protocol, where the driver frames are the ground truth). A lip-sync model lip-syncs each clip to its
    own audio instead (Wav2Lip: :func:`_lipsynced_clip`; a SyncTalk_2D-layout U-Net: :func:`_unet_lipsynced_clip`),
    scored against the clip the same way."""
    from motionlab.data.images import to_uint8
    from motionlab.inference.animate import animate_frames
    from motionlab.tasks import load_predictor
    from motionlab.tasks.lipsync_predictor import LipSyncPredictor
    from motionlab.tasks.wav2lip_predictor import Wav2LipPredictor

    predictor = load_predictor(ckpt, model=arch, device=device, detect_generated=False)
    if not isinstance(predictor, (AnimationPredictor, Wav2LipPredictor, LipSyncPredictor)):
        raise InputError(f"{ckpt} is neither an animation model nor a lip-sync model (its predictor is {type(predictor).__name__}); "
                         "compare= scores those")
    driver_dir = Path(driver_dir)
    names = sorted({p.stem if p.is_file() else p.name for p in driver_dir.iterdir() if not p.name.startswith(".")}) if driver_dir.is_dir() else []
    if not names:
        raise ClipError(f"driver_dir={driver_dir} holds no clips (videos or frame folders)")
    if isinstance(predictor, (Wav2LipPredictor, LipSyncPredictor)):
        lipsynced = _lipsynced_clip if isinstance(predictor, Wav2LipPredictor) else _unet_lipsynced_clip
        for name in names[:max_clips]:
            yield lipsynced(predictor, name, _find_clip(driver_dir, name), image_size, max_frames)
        return
    for name in names[:max_clips]:
        clip = open_clip(_find_clip(driver_dir, name))
        frames = clip.get(range(min(len(clip), max_frames or len(clip))))
        portrait = read_image(_portrait_path(portrait_dir, name)) if portrait_dir is not None else frames[0]
        generated = [predictor.finish(to_uint8(batch["generated"], predictor.quantize), batch["portrait_context"])
                     for batch in animate_frames(predictor, portrait, frames, predictor.batch_size)]
        yield EvalClip(name, frames_to_tensor(portrait[None], image_size)[0], frames_to_tensor(frames, image_size),
                       frames_to_tensor(np.concatenate(generated), image_size))


def _lipsynced_clip(predictor, name: str, video: Path, image_size: int, max_frames: int | None) -> EvalClip:
    """A video lip-synced to its own audio by Wav2Lip (faces by dlib, the release's pads and box smoothing), scored
    against its own frames: the lip-sync reconstruction protocol, the first frame standing for the portrait."""
    import tempfile

    from motionlab.data.audio import load_wav, melspectrogram
    from motionlab.data.talking import extract_audio
    from motionlab.inference.wav2lip import FaceBoxes, release_crop_boxes, wav2lip_frames, wav2lip_mel_windows

    clip = open_clip(video)
    with tempfile.TemporaryDirectory() as scratch:
        extract_audio(video, Path(scratch) / "speech.wav")
        wav = load_wav(Path(scratch) / "speech.wav")
    mels = wav2lip_mel_windows(melspectrogram(wav), clip.fps or 25.0)
    count = min(len(clip), len(mels), max_frames or len(clip))
    frames = clip.get(range(count))
    boxes = release_crop_boxes(frames, FaceBoxes(), str(video))
    generated = np.stack(list(wav2lip_frames(predictor, frames, mels[:count], boxes, 16)))
    return EvalClip(name, frames_to_tensor(frames[:1], image_size)[0], frames_to_tensor(frames, image_size), frames_to_tensor(generated, image_size),
                    (wav, clip.fps or 25.0))


def _unet_lipsynced_clip(predictor, name: str, video: Path, image_size: int, max_frames: int | None) -> EvalClip:
    """A video lip-synced to its own audio by a SyncTalk_2D-layout U-Net: the clip preprocessed into a template (25 fps,
    dlib landmarks: :func:`motionlab.data.talking.preprocess_talking_video`), spoken through it by
    :class:`~motionlab.inference.lipsync.LipSyncPipeline` (feathered paste), and scored against the template frames
    each output frame was made from. These U-Nets are trained per speaker: another person's clip scores what the
    network does off its identity."""
    import tempfile

    from motionlab.data.audio import SAMPLE_RATE, load_wav
    from motionlab.data.talking import preprocess_talking_video
    from motionlab.data.video_io import list_frame_files
    from motionlab.inference.lipsync import LipSyncPipeline, bounce_index

    renderer = LipSyncPipeline(predictor, batch_size=1)
    with tempfile.TemporaryDirectory() as scratch:
        template = Path(scratch) / "template"
        preprocess_talking_video(video, template, fps=renderer.fps)
        wav = load_wav(template / "aud.wav")
        if max_frames is not None:  # the speech of the first max_frames frames and half a second (the audio windows' context)
            wav = wav[: int(round((max_frames / renderer.fps + 0.5) * SAMPLE_RATE))]
        count, frames = renderer.frames(template, wav)
        generated = np.stack(list(frames))[: max_frames or count]
        count = len(generated)
        files = list_frame_files(template / "full_body_img")
        start = predictor.convention.template_start
        real = np.stack([read_image(files[bounce_index(step + start, len(files))]) for step in range(count)])
    return EvalClip(name, frames_to_tensor(real[:1], image_size)[0], frames_to_tensor(real, image_size), frames_to_tensor(generated, image_size),
                    (wav, renderer.fps))


def evaluate_clips(clips: Iterator[EvalClip], suite: EvaluationSuite, preview_dir: Path | None = None, fps: float = 12.5,
                   profile: ProfileSimilarity | None = None) -> dict:
    """Update ``suite`` with every clip; returns ``{"metrics": aggregate, "clips": per-clip rows}``.

    Per-clip rows use the cheap metrics only (reconstruction, temporal, colour) and, with ``profile``, the CSIM of
    the generated frames to an identity profile; the feature-based ones are distribution-level and appear in the
    aggregate.
    """
    row_suite = EvaluationSuite(keypoint_detector=suite.keypoint_detector)
    rows = []
    # the previews folder appears whole when every clip is scored: a failure leaves none, and an earlier one stays
    previews = nullcontext() if preview_dir is None else atomic_dir(preview_dir, replaces=lambda folder: all(p.suffix == ".gif" for p in folder.iterdir()))
    with previews as scratch:
        for clip in clips:
            batch = (clip.portrait[None], clip.driver[None], clip.generated[None])
            suite.update(*batch, audio=[clip.audio])
            row_suite.update(*batch)
            row = {"clip": clip.name, "frames": int(clip.driver.shape[0])}
            row.update({name: float(value) for name, value in row_suite.compute().items()})
            row_suite.reset()
            if profile is not None:
                row[profile.metric_name] = profile.update(clip.generated)
            if scratch is not None:
                portraits = clip.portrait.expand_as(clip.driver)
                write_gif(scratch / f"{clip.name}.gif", list(side_by_side(portraits, clip.driver, clip.generated)), fps=fps)
                row["preview"] = str(Path(preview_dir) / f"{clip.name}.gif")
            rows.append(row)
        if not rows:
            raise ClipError("no clips were evaluated")
    metrics = {name: float(value) for name, value in suite.compute().items()}
    return {"metrics": {**metrics, **(profile.compute() if profile is not None else {})}, "clips": rows}


def metric_columns(rows: list[dict]) -> list[str]:
    return [key for key in rows[0] if key not in ("clip", "frames", "preview")]

