"""Cross-domain samples for domain adapters: human-domain landmark windows and the descriptor model's keypoints of
the cartoon clips, paired by construction in the toy world.

Every toy clip (seed layout, ``motion.npz``) has a human performance of the same motion
(:func:`motionlab.data.toy_human.paired_human_clip`: its own identity, detector noise, lost frames filled) and
cached descriptors of its cartoon frames (:class:`motionlab.data.descriptor_cache.DescriptorCache`). A sample is
one frame ``t`` relative to a reference frame ``r`` of one clip (random in training, 0 in val / test):

- human stream: ``landmarks`` (W, P, 2) window centred on ``t`` of normalised landmarks minus the reference's,
  ``landmarks_prev`` / ``landmarks_next`` the windows at ``t -+ 1`` (temporal terms), ``reference_landmarks`` (P, 2);
- cartoon stream: ``descriptor_delta`` (K, 2) = ``d_t - d_r`` and ``jacobian_ratio`` (K, 2, 2) = ``J_t J_r^-1`` of
  the descriptor model, ``descriptor_window`` (W, K, 2) the deltas around ``t``, ``reference_descriptors`` ``d_r``;
- val / test also ``source`` / ``driver`` (3, S, S), the cartoon's frames ``r`` and ``t`` (scoring by
  generated-frame L1), and ``reference_jacobians`` / ``descriptors``.

``pairing="paired"`` takes both streams from the same clip and frames. ``pairing="unpaired"`` splits the training
identities into two halves, human stream from one and cartoon stream from the other (different motions per
domain), drawn independently; val / test stay paired, for scoring only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from motionlab.data.batches import AdapterBatch
from motionlab.data.datamodule import SplitDataModule
from motionlab.data.datasets import ClipRecord, discover_clips, frames_to_tensor, split_identities
from motionlab.data.descriptor_cache import DescriptorCache
from motionlab.data.landmarks import fill_missing
from motionlab.data.synthetic import MOTION_FIELDS, ToyWorldSpec, ensure_toy_world
from motionlab.data.toy_human import DetectorNoise, HeadTurn, paired_human_clip
from motionlab.data.video_io import ClipError, open_clip
from motionlab.geometry.landmarks import normalize_landmarks
from motionlab.utils.errors import InputError


class _Clip:
    """One toy clip's two domains, in memory."""

    def __init__(self, record: ClipRecord, descriptors: dict[str, np.ndarray], human_seed: int, noise: DetectorNoise | None,
                 turn: HeadTurn | None):
        motion_file = record.clip / "motion.npz"
        if not motion_file.is_file():
            raise ClipError(f"{record.clip} has no motion.npz: cross-domain pairs need toy-world clips (seed layout)")
        with np.load(motion_file, allow_pickle=False) as data:
            motion = {name: data[name] for name in MOTION_FIELDS}
        noisy, found, _ = paired_human_clip(record.identity, motion, seed=human_seed, noise=noise, turn=turn)
        self.record = record
        self.landmarks = fill_missing(noisy, found, str(record.clip))
        self.value = descriptors["value"]
        self.jacobian = descriptors.get("jacobian")
        if len(self.value) != len(self.landmarks):
            raise ClipError(f"{record.clip}: {len(self.value)} cached descriptor frames but {len(self.landmarks)} motion frames")

    def __len__(self) -> int:
        return len(self.value)


def _window(length: int, t: int, size: int) -> np.ndarray:
    return np.clip(np.arange(t - size // 2, t + size // 2 + 1), 0, length - 1)


class CrossDomainDataset(Dataset):
    """Samples over ``human_clips`` and ``cartoon_clips`` (the same list when paired); see the module docstring."""

    def __init__(self, human_clips: list[_Clip], cartoon_clips: list[_Clip], window: int, paired: bool, random_reference: bool,
                 image_size: int | None = None, with_images: bool = False):
        if paired and human_clips is not cartoon_clips:
            raise InputError("a paired dataset takes one list of clips for both domains")
        self.human, self.cartoon = human_clips, cartoon_clips
        self.window, self.paired, self.random_reference = window, paired, random_reference
        self.image_size, self.with_images = image_size, with_images
        self.index = [(c, t) for c, clip in enumerate(human_clips) for t in range(len(clip))]

    def __len__(self) -> int:
        return len(self.index)

    def _reference(self, length: int, generator: np.random.Generator) -> int:
        return int(generator.integers(length)) if self.random_reference else 0

    def __getitem__(self, item: int) -> AdapterBatch:
        c, t = self.index[item]
        generator = np.random.default_rng(int(torch.randint(0, 2**31, ()).item())) if self.random_reference else None
        human = self.human[c]
        r = self._reference(len(human), generator)
        normalised = normalize_landmarks(human.landmarks, reference=r)
        relative = normalised - normalised[r]
        windows = {name: torch.from_numpy(relative[_window(len(human), t + shift, self.window)])
                   for name, shift in (("landmarks_prev", -1), ("landmarks", 0), ("landmarks_next", 1))}
        if self.paired:
            cartoon, tc, rc = human, t, r
        else:
            cartoon = self.cartoon[int(generator.integers(len(self.cartoon)))]
            tc, rc = int(generator.integers(len(cartoon))), self._reference(len(cartoon), generator)
        delta = cartoon.value - cartoon.value[rc]
        sample = {
            **windows,
            "reference_landmarks": torch.from_numpy(normalised[r]),
            "descriptor_delta": torch.from_numpy(delta[tc]),
            "descriptor_window": torch.from_numpy(delta[_window(len(cartoon), tc, self.window)]),
            "reference_descriptors": torch.from_numpy(cartoon.value[rc]),
            "identity": human.record.identity,
            "frame_index": t,
            "reference_index": r,
        }
        if cartoon.jacobian is not None:
            sample["jacobian_ratio"] = torch.from_numpy(cartoon.jacobian[tc] @ np.linalg.inv(cartoon.jacobian[rc]))
        if self.with_images:
            frames = open_clip(cartoon.record.clip).get([rc, tc])
            sample["portrait"], sample["driver"] = frames_to_tensor(frames, self.image_size)
            sample["descriptors"] = torch.from_numpy(cartoon.value[tc])
            if cartoon.jacobian is not None:
                sample["reference_jacobians"] = torch.from_numpy(cartoon.jacobian[rc])
        return sample


class CrossDomainDataModule(SplitDataModule):
    """Identity-disjoint train / val / test of cross-domain samples over a toy world.

    Args:
        toy_world: :class:`ToyWorldSpec` fields of the world to generate under ``cache_dir`` (or ``root``: a seed-layout
            folder with ``motion.npz`` per clip).
        descriptor_ckpt: the descriptor model whose keypoints are the cartoon stream (cached per clip).
        pairing: ``paired`` or ``unpaired`` (training only; see the module docstring).
        window: W, frames of landmark context per sample (the adapter's window).
        human_seed: seed of the human identities and their detector noise; ``noise``: :class:`DetectorNoise` fields
            (``null``: clean landmarks); ``head_turn``: :class:`HeadTurn` fields (``null``: the heads never turn out of
            the image plane).
    """

    def __init__(self, descriptor_ckpt: str, toy_world: dict | None = None, root: str | None = None, cache_dir: str = ".cache",
                 image_size: int = 64, pairing: str = "paired", window: int = 1, human_seed: int = 0, noise: dict | None = None,
                 head_turn: dict | None = None,
                 val_fraction: float = 0.15, test_fraction: float = 0.15, split_seed: int = 0, batch_size: int = 64,
                 eval_batch_size: int | None = None, num_workers: int = 0, shuffle_seed: int = 0):
        super().__init__()
        if (root is None) == (toy_world is None):
            raise InputError("data: give exactly one of data.root (a seed-layout toy world) or data.toy_world (generated)")
        if pairing not in ("paired", "unpaired"):
            raise InputError(f"data.pairing must be 'paired' or 'unpaired', got {pairing!r}")
        self.descriptor_ckpt = descriptor_ckpt
        self.toy_world = ToyWorldSpec(**toy_world) if toy_world is not None else None
        self.root, self.cache_dir, self.image_size = root, cache_dir, image_size
        self.pairing, self.window, self.human_seed = pairing, window, human_seed
        self.noise = DetectorNoise(**noise) if noise is not None else None
        self.head_turn = HeadTurn(**head_turn) if head_turn is not None else None
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.shuffle_seed = num_workers, shuffle_seed
        self.splits: dict[str, list[str]] = {}
        self.clips: dict[str, list[_Clip]] = {}
        self.datasets: dict[str, CrossDomainDataset] = {}

    def _records(self) -> list[ClipRecord]:
        root = ensure_toy_world(self.cache_dir, self.toy_world) if self.toy_world is not None else self.root
        return discover_clips(root, "seed")[1]

    def prepare_data(self) -> None:
        DescriptorCache(self.cache_dir, self.descriptor_ckpt, self.image_size).ensure(self._records())

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        records = self._records()
        cache = DescriptorCache(self.cache_dir, self.descriptor_ckpt, self.image_size)
        cache.ensure(records)
        self.splits = split_identities([r.identity for r in records], self.val_fraction, self.test_fraction, self.split_seed)
        for split, identities in self.splits.items():
            self.clips[split] = [_Clip(r, cache.load(r.identity), self.human_seed, self.noise, self.head_turn) for r in records if r.identity in set(identities)]
        train = self.clips["train"]
        if self.pairing == "paired":
            self.datasets["train"] = CrossDomainDataset(train, train, self.window, paired=True, random_reference=True)
        else:
            if len(train) < 2:
                raise InputError("unpaired training needs >= 2 training identities (one half per domain)")
            half = len(train) // 2
            self.datasets["train"] = CrossDomainDataset(train[:half], train[half:], self.window, paired=False, random_reference=True)
        for split in ("val", "test"):
            if self.clips.get(split):
                self.datasets[split] = CrossDomainDataset(self.clips[split], self.clips[split], self.window, paired=True,
                                                          random_reference=False, image_size=self.image_size, with_images=True)
        if "test" not in self.datasets and "val" in self.datasets:
            self.datasets["test"] = self.datasets["val"]

    def training_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every training frame of the *paired* clips as (N, P * 2) landmark motion and (N, K * 2) descriptor motion,
        reference frame 0: what the least-squares affine baseline is fitted on."""
        landmarks, descriptors = [], []
        for clip in self.clips["train"]:
            normalised = normalize_landmarks(clip.landmarks, reference=0)
            landmarks.append((normalised - normalised[0]).reshape(len(clip), -1))
            descriptors.append((clip.value - clip.value[0]).reshape(len(clip), -1))
        return np.concatenate(landmarks), np.concatenate(descriptors)

    def split_settings(self) -> str:
        return f"val_fraction={self.val_fraction}, test_fraction={self.test_fraction}"
