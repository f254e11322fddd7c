"""The lip-sync LightningDataModule (:class:`LipSyncDataModule`): talking-head clips split in time into train / val /
test datasets. Kept apart from :mod:`motionlab.data.lipsync` (clips, crops, audio features), which inference imports
without Lightning."""

from __future__ import annotations

import logging
from pathlib import Path

from motionlab.data.datamodule import SplitDataModule
from motionlab.data.lipsync import (
    LipSyncDataset,
    MuseTalkDataset,
    TalkingClip,
    Wav2LipDataset,
    audio_features,
    discover_talking_clips,
    temporal_split,
)
from motionlab.data.talking import synth_talking_clip
from motionlab.models.lipsync import lipsync_convention
from motionlab.utils.errors import InputError

log = logging.getLogger(__name__)


class LipSyncDataModule(SplitDataModule):
    """Talking-head clips (your folders, or a generated toy talking world) for the lip-sync tasks.

    Args:
        root: a clip folder or a folder of clip folders; ``None`` with ``toy_talking``.
        toy_talking: ``{clips, seconds, size, seed}`` of toy talking heads generated under ``cache_dir``.
        mode: audio features for the U-Net and SyncNet (``ave``, ``hubert``, ``wenet``), or ``None`` for
            mel windows only (training the ``ave`` audio encoder).
        audio_encoder_ckpt: the ``ave`` audio encoder (a ``lipsync_av`` run or SyncTalk_2D's file).
        val_fraction: the tail of every clip held out for validation.
        min_offset: off-sync pairs are at least this many frames apart.
        convention: the :class:`~motionlab.models.lipsync.LipSyncConvention` crops, channel order and audio alignment
            follow (``motionlab`` for new models; ``synctalk_2d`` to fine-tune SyncTalk_2D's weights on its files).
        samples: ``unet`` (single frames for the SyncTalk_2D-layout networks, :class:`LipSyncDataset`), ``wav2lip``
            (5-frame windows of 96 px crops, :class:`Wav2LipDataset`) or ``musetalk`` (256 px crops by MuseTalk's box
            rule with Whisper log-mels, :class:`MuseTalkDataset`); the last two need ``mode=null``.
        window_frames: consecutive frames per ``musetalk`` sample (1 in MuseTalk's stage 1; 5 for an expert SyncNet).
    """

    def __init__(self, root: str | None = None, toy_talking: dict | None = None, cache_dir: str = ".cache", mode: str | None = "ave",
                 audio_encoder_ckpt: str | None = None, val_fraction: float = 0.15, min_offset: int = 5, fps: float = 25.0,
                 batch_size: int = 8, eval_batch_size: int | None = None, num_workers: int = 0, shuffle_seed: int = 0,
                 convention: str = "motionlab", samples: str = "unet", window_frames: int = 1):
        super().__init__()
        if samples not in ("unet", "wav2lip", "musetalk"):
            raise InputError(f"data.samples must be unet, wav2lip or musetalk, got {samples!r}")
        if samples in ("wav2lip", "musetalk") and mode is not None:
            raise InputError(f"data.samples={samples} reads its own audio input, not encoder features: set data.mode=null")
        self.samples, self.window_frames = samples, window_frames
        self.convention = lipsync_convention(convention)
        if (root is None) == (toy_talking is None):
            raise InputError("data: give exactly one of data.root (your preprocessed clips) or data.toy_talking (generated)")
        self.root, self.toy_talking, self.cache_dir = root, toy_talking, Path(cache_dir)
        self.mode, self.audio_encoder_ckpt = mode, audio_encoder_ckpt
        self.val_fraction, self.min_offset, self.fps = val_fraction, min_offset, fps
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.shuffle_seed = num_workers, shuffle_seed
        self.clips: list[TalkingClip] = []
        self.datasets: dict[str, LipSyncDataset] = {}

    def data_root(self) -> Path:
        if self.root is not None:
            return Path(self.root)
        spec = {"clips": 2, "seconds": 6.0, "size": 256, "seed": 0, **self.toy_talking}
        root = self.cache_dir / "toy_talking" / "c{clips}_s{seconds:g}_px{size}_seed{seed}".format(**spec)
        for c in range(spec["clips"]):
            folder = root / f"clip{c}"
            if not (folder / "done").is_file():  # written last: an interrupted generation is redone
                synth_talking_clip(folder, seconds=spec["seconds"], size=spec["size"], seed=spec["seed"] * 1000 + c, fps=self.fps)
                (folder / "done").write_text("")
        return root

    def prepare_data(self) -> None:
        self.data_root()

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.clips = [TalkingClip(folder, self.fps, self.convention) for folder in discover_talking_clips(self.data_root())]
        features = None
        if self.mode is not None:
            features = [audio_features(clip, self.mode, self.audio_encoder_ckpt) for clip in self.clips]
        splits = [temporal_split(len(clip), self.val_fraction) for clip in self.clips]
        if self.samples == "wav2lip":
            build = lambda split, random: Wav2LipDataset(self.clips, [s[split] for s in splits], self.min_offset, random)  # noqa: E731
        elif self.samples == "musetalk":
            build = lambda split, random: MuseTalkDataset(self.clips, [s[split] for s in splits], self.fps, random=random,  # noqa: E731
                                                          frames=self.window_frames)
        else:
            common = dict(features=features, mode=self.mode or "ave", min_offset=self.min_offset)
            build = lambda split, random: LipSyncDataset(self.clips, [s[split] for s in splits], random=random, **common)  # noqa: E731
        self.datasets["train"] = build(0, True)
        if self.val_fraction > 0:
            self.datasets["val"] = self.datasets["test"] = build(1, False)
        log.info("lip-sync data: %d clips under %s, frames train/val=%d/%d, audio features=%s",
                 len(self.clips), self.data_root(), len(self.datasets["train"]), len(self.datasets.get("val", [])), self.mode)

