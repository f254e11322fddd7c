"""``PortraitVideoDataModule``: identity-disjoint splits of portrait / driver clips for every task."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from motionlab.data.augment import PairedAugmentation
from motionlab.data.datasets import (
    ClipRecord,
    FolderClips,
    PortraitVideoDataset,
    discover_clips,
    split_identities,
)
from motionlab.data.descriptor_cache import DescriptorCache
from motionlab.data.shards import REMOTE_SCHEMES, ShardClips
from motionlab.data.synthetic import ToyWorldSpec, ensure_toy_world
from motionlab.utils.errors import InputError

log = logging.getLogger(__name__)


class EpochSeededRandomSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), so a resumed run sees the same order; ``repeats`` shuffled
    passes over the data make one epoch.

    Lightning calls :meth:`set_epoch` at the start of every training epoch.
    """

    def __init__(self, length: int, seed: int = 0, repeats: int = 1):
        self.length, self.seed, self.repeats, self.epoch = length, seed, repeats, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length * self.repeats

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.cat([torch.randperm(self.length, generator=generator) for _ in range(self.repeats)]).tolist())


def collate(samples: list[dict]) -> dict:
    """Stack tensors and ints; keep strings as lists."""
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], int):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


class SplitDataModule(L.LightningDataModule):
    """Train / val / test loaders from one ``_loader(split, shuffle)``: by default over ``self.datasets[split]`` with the
    datamodule's ``batch_size`` / ``eval_batch_size``, its per-epoch seeded shuffle (``shuffle_seed``), ``num_workers``
    and :func:`collate`; a split it lacks is an error naming :meth:`split_settings`."""

    def split_settings(self) -> str:
        """The settings that decide which splits exist (named when a split is missing)."""
        return f"val_fraction={self.val_fraction}"

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise InputError(f"data: no {split} split ({self.split_settings()})")
        dataset = self.datasets[split]
        return DataLoader(dataset, batch_size=self.batch_size if shuffle else self.eval_batch_size,
                          sampler=EpochSeededRandomSampler(len(dataset), self.shuffle_seed) if shuffle else None,
                          drop_last=shuffle and len(dataset) >= self.batch_size, num_workers=self.num_workers, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class PortraitVideoDataModule(SplitDataModule):
    """Portrait / driver samples from a folder of clips, or from the toy world generated on demand.

    Args:
        root: folder of clips (see :mod:`motionlab.data.datasets` for layouts); ``None`` with ``toy_world``.
        toy_world: settings of a toy world (:class:`ToyWorldSpec` fields) to generate under ``cache_dir``.
        cache_dir: where generated data is kept between runs.
        layout: ``auto``, ``seed``, ``videos`` or ``frames``.
        image_size: side of the square images fed to the model.
        val_fraction, test_fraction: identity fractions held out (test falls back to val when 0).
        split_seed: seed of the identity split.
        max_frames: driver frames per clip, spread uniformly; ``None`` for all.
        temporal_max_stride, time_flip: temporal augmentation of the neighbouring frame (train only).
        augmentation: a :class:`PairedAugmentation` applied to training batches on the device, or ``None``.
        on_bad_clip: ``error`` or ``skip`` (skipped clips are counted in :attr:`skipped_clips` and logged).
        shuffle_seed: seed of the per-epoch training shuffle.
        descriptor_ckpt: a trained descriptor model; its keypoints for every frame are cached under
            ``cache_dir`` (computed when missing, recomputed with a warning when stale) and added to samples.
        face_labels: add each driver frame's 68 landmarks and head pose to samples (``driver_landmarks``,
            ``driver_head_pose``; the toy world's characters have them), for LivePortrait's guidance terms.
        max_val_frames: frames per validation / test clip, spread uniformly (None: ``max_frames``): validation stays
            seconds, not minutes, on long clips.
    """

    def __init__(
        self,
        root: str | None = None,
        toy_world: dict | None = None,
        cache_dir: str = ".cache",
        layout: str = "auto",
        image_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.0,
        split_seed: int = 0,
        max_frames: int | None = None,
        temporal_max_stride: int = 2,
        time_flip: float = 0.5,
        augmentation: PairedAugmentation | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        on_bad_clip: str = "error",
        shuffle_seed: int = 0,
        descriptor_ckpt: str | None = None,
        face_labels: bool = False,
        max_val_frames: int | None = 64,
    ):
        super().__init__()
        if (root is None) == (toy_world is None):
            raise InputError("data: give exactly one of data.root (your clips) or data.toy_world (generated data); the toy world is "
                             "the default of data=toy_world and of the configs built on it (data=target): add data.toy_world=null "
                             "to train on data.root")
        self.root = Path(root) if root is not None else None
        self.toy_world = ToyWorldSpec(**toy_world) if toy_world is not None else None
        self.cache_dir = Path(cache_dir)
        self.layout = layout
        self.image_size = image_size
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.max_frames = max_frames
        self.temporal_max_stride, self.time_flip = temporal_max_stride, time_flip
        self.augmentation = augmentation
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.on_bad_clip = on_bad_clip
        self.shuffle_seed = shuffle_seed
        self.descriptor_ckpt = descriptor_ckpt
        self.face_labels = face_labels
        self.max_val_frames = max_val_frames
        self.splits: dict[str, list[str]] = {}
        self.datasets: dict[str, PortraitVideoDataset] = {}
        self.repeats = 1  # shuffled passes over the training samples per epoch

    def data_root(self) -> Path:
        """The folder the samples come from (generating the toy world on first use)."""
        if self.toy_world is not None:
            return ensure_toy_world(self.cache_dir, self.toy_world)
        return self.root

    def descriptor_cache(self) -> DescriptorCache | None:
        if self.descriptor_ckpt is None:
            return None
        return DescriptorCache(self.cache_dir, self.descriptor_ckpt, self.image_size)

    def discover(self) -> tuple[str, list[ClipRecord], FolderClips]:
        """The layout, one record per identity, and the store that reads the records' files."""
        layout, records = discover_clips(self.data_root(), self.layout)
        return layout, records, FolderClips()

    def prepare_data(self) -> None:
        cache = self.descriptor_cache()
        if cache is not None:
            cache.ensure(self.discover()[1])

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        layout, records, store = self.discover()
        self.splits = split_identities([r.identity for r in records], self.val_fraction, self.test_fraction, self.split_seed)
        by_split = {name: [r for r in records if r.identity in set(ids)] for name, ids in self.splits.items()}
        common = dict(image_size=self.image_size, max_frames=self.max_frames, on_bad_clip=self.on_bad_clip, store=store,
                      face_labels=self.face_labels)
        self.datasets["train"] = PortraitVideoDataset(
            by_split["train"], temporal_max_stride=self.temporal_max_stride, time_flip=self.time_flip, source_frame="random", **common
        )
        for name in ("val", "test"):
            if by_split[name]:
                held_out = {**common, "max_frames": self.max_val_frames or self.max_frames}
                self.datasets[name] = PortraitVideoDataset(by_split[name], source_frame="first", **held_out)
        if "test" not in self.datasets and "val" in self.datasets:
            self.datasets["test"] = self.datasets["val"]
        self._attach_descriptors(records)
        log.info(
            "data: layout=%s root=%s identities train/val/test=%d/%d/%d samples train=%d skipped clips=%d",
            layout, self.data_root(), len(self.splits["train"]), len(self.splits["val"]), len(self.splits["test"]),
            len(self.datasets["train"]), self.skipped_clips,
        )

    def _attach_descriptors(self, records: list) -> None:
        cache = self.descriptor_cache()
        if cache is not None:
            cache.ensure(records)  # a no-op after prepare_data; computes here when setup runs alone
            for dataset in self.datasets.values():
                dataset.descriptors = {r.identity: cache.load(r.identity) for r in dataset.records}

    @property
    def skipped_clips(self) -> int:
        """Clips dropped under ``on_bad_clip=skip`` (counted once per split dataset)."""
        return sum(len(ds.skipped) for name, ds in self.datasets.items() if not (name == "test" and ds is self.datasets.get("val")))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise InputError(f"data: no {split} split (val_fraction={self.val_fraction}, test_fraction={self.test_fraction})")
        dataset = self.datasets[split]
        sampler = EpochSeededRandomSampler(len(dataset), self.shuffle_seed, self.repeats) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            sampler=sampler,
            drop_last=shuffle and len(sampler) >= self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate,
        )

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.augmentation is not None and self.trainer is not None and self.trainer.training:
            return self.augmentation(batch)
        return batch


class TargetDataModule(PortraitVideoDataModule):
    """One target identity split in time, for per-target fine-tuning (``lora=...``): the first ``train_fraction``
    of its clip trains, at most ``max_frames`` frames of it spread uniformly (the few frames a user has); the rest
    is held out, for val and test.

    Args:
        identity: the identity (clip name) to adapt to; other arguments as :class:`PortraitVideoDataModule`
            (its identity split settings do not apply).
        train_fraction: the leading fraction of the clip the training frames come from.
        repeats: shuffled passes over the few training frames per epoch (each with fresh neighbours and
            augmentation), so that validation, checkpoints and the progress bar come at a useful pace.
    """

    def __init__(self, identity: str, train_fraction: float = 0.5, repeats: int = 10, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < train_fraction < 1.0:
            raise InputError(f"data.train_fraction must be in (0, 1): the rest of the clip is held out; got {train_fraction}")
        if repeats < 1:
            raise InputError(f"data.repeats must be >= 1, got {repeats}")
        self.identity, self.train_fraction, self.repeats = identity, train_fraction, repeats

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        layout, records, store = self.discover()
        chosen = [r for r in records if r.identity == self.identity]
        if not chosen:
            names = ", ".join(r.identity for r in records[:8])
            raise InputError(f"data.identity={self.identity!r} is not among the {len(records)} identities of {self.data_root()} ({names}, ...)")
        self.splits = {split: [self.identity] for split in ("train", "val", "test")}
        common = dict(image_size=self.image_size, on_bad_clip="error", store=store, face_labels=self.face_labels)
        self.datasets["train"] = PortraitVideoDataset(chosen, max_frames=self.max_frames, frame_range=(0.0, self.train_fraction),
                                                      temporal_max_stride=self.temporal_max_stride, time_flip=self.time_flip,
                                                      source_frame="random", **common)
        self.datasets["val"] = self.datasets["test"] = PortraitVideoDataset(chosen, max_frames=self.max_val_frames, frame_range=(self.train_fraction, 1.0),
                                                                            source_frame="first", **common)
        self._attach_descriptors(chosen)
        log.info("data: target %s (layout=%s): %d training frames from the first %.0f%% of its clip, %d held out",
                 self.identity, layout, len(self.datasets["train"]), 100 * self.train_fraction, len(self.datasets["val"]))


class ShardedClipDataModule(PortraitVideoDataModule):
    """:class:`PortraitVideoDataModule` over litdata shards (``motionlab-data shard``) instead of a folder: the same
    identity split, samples and seeded shuffle, so under one seed it serves the batches of the folder it was written
    from. Under DDP, Lightning's distributed sampler gives each rank its share.

    Args:
        root: a shard folder, or an object-storage URL of one (``s3://bucket/clips``); ``layout`` is the manifest's.
        max_cache_size: the most the local cache of remote chunks may hold (under ``cache_dir``/shards).
        Others as :class:`PortraitVideoDataModule`.
    """

    def __init__(self, root: str, max_cache_size: str = "50GB", **kwargs):
        if kwargs.get("descriptor_ckpt"):
            raise InputError("data=clips_stream does not serve cached descriptors yet; train from the clip folder (data=clips) "
                             "with data.descriptor_ckpt, or leave it null")
        super().__init__(root=root, **kwargs)
        self.shards, self.max_cache_size = str(root), max_cache_size  # a URL keeps its '//', which Path would fold
        self._store: ShardClips | None = None

    def discover(self) -> tuple[str, list[ClipRecord], ShardClips]:
        if self._store is None:
            remote = self.shards.startswith(REMOTE_SCHEMES)
            self._store = ShardClips(self.shards, cache_dir=str(self.cache_dir / "shards") if remote else None, max_cache_size=self.max_cache_size)
        return f"shards of {self._store.manifest['layout']}", self._store.records(), self._store
