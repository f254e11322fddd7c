"""Pairs for LivePortrait's eye and lip retargeting (stage 2), paired by construction in the toy world: a character's
portrait and the same portrait re-rendered with only its eyes (or its mouth) changed, with the openness ratios of both
measured on their 68 landmarks (:func:`motionlab.geometry.landmarks.eye_openness` / ``lip_openness``, dlib's
analogue of the release's ratios, as :class:`motionlab.tasks.liveportrait_predictor.LivePortraitPredictor` measures them).

A sample: ``source`` (3, S, S) the portrait, ``target`` (3, S, S) the re-rendered portrait, ``ratios`` the
retargeting MLP's condition (eyes: the portrait's two eye ratios and the wanted one, (3,); lips: the portrait's lip
ratio and the wanted one, (2,)), ``identity`` (str).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from motionlab.data.batches import RetargetingBatch
from motionlab.data.datamodule import PortraitVideoDataModule
from motionlab.data.datasets import ClipRecord, frames_to_tensor, split_identities
from motionlab.data.synthetic import landmarks68, load_character, neutral_motion, render_frame
from motionlab.geometry.landmarks import eye_openness, lip_openness
from motionlab.utils.errors import InputError

PARTS = {"eyes": "blink", "lips": "mouth"}


class RetargetingPairs(Dataset):
    """``samples_per_identity`` (portrait, re-rendered portrait) pairs per toy character of ``records``: the ``part``'s
    motion value (blink for ``eyes``, mouth opening for ``lips``) drawn uniformly from [0, 1], everything else at rest.
    ``seed``: the draws of item ``i`` are fixed (evaluation); ``None`` draws afresh on every access (training)."""

    def __init__(self, records: list[ClipRecord], image_size: int, part: str, samples_per_identity: int = 40, render_size: int = 64,
                 seed: int | None = None):
        if part not in PARTS:
            raise InputError(f"retargeting part must be one of {sorted(PARTS)}, got {part!r}")
        self.rest = {name: float(value[0]) for name, value in neutral_motion().items()}
        # per character: identity, style, and its portrait at rest (image and landmarks), which every pair shares
        self.characters = []
        for record in records:
            character = load_character(record.clip)
            if character is None:
                raise InputError(f"retargeting pairs: clip {record.clip} has no toy character (motion.npz with its style); "
                                 "eye / lip retargeting pairs are rendered from the toy world's characters (data.toy_world)")
            style = character[0]
            self.characters.append((record.identity, style, render_frame(style, self.rest, render_size), landmarks68(style, self.rest, render_size)))
        self.image_size, self.part, self.samples, self.render_size, self.seed = image_size, part, samples_per_identity, render_size, seed

    def __len__(self) -> int:
        return len(self.characters) * self.samples

    def __getitem__(self, item: int) -> RetargetingBatch:
        identity, style, rest_image, rest_points = self.characters[item // self.samples]
        rng = np.random.default_rng(None if self.seed is None else (self.seed, item))
        changed = {**self.rest, PARTS[self.part]: float(rng.uniform(0.0, 1.0))}
        images = np.stack([rest_image, render_frame(style, changed, self.render_size)])
        points = np.stack([rest_points, landmarks68(style, changed, self.render_size)])
        if self.part == "eyes":
            ratios = np.concatenate([eye_openness(points[:1])[0], eye_openness(points[1:]).mean(axis=1)])
        else:
            ratios = lip_openness(points)
        source, target = frames_to_tensor(images, self.image_size)
        return {"portrait": source, "target": target, "ratios": torch.from_numpy(ratios.astype(np.float32)), "identity": identity}


class RetargetingDataModule(PortraitVideoDataModule):
    """:class:`RetargetingPairs` over the identity split of a :class:`PortraitVideoDataModule` (the toy world's
    characters; the same train / val / test identities): ``part`` ``eyes`` or ``lips``; training pairs are drawn
    afresh, evaluation pairs are fixed by ``split_seed``."""

    def __init__(self, part: str = "eyes", samples_per_identity: int = 40, **kwargs):
        super().__init__(**kwargs)
        if part not in PARTS:
            raise InputError(f"data.part must be one of {sorted(PARTS)}, got {part!r}")
        self.part, self.samples_per_identity = part, samples_per_identity

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        _, records, _ = self.discover()
        self.splits = split_identities([r.identity for r in records], self.val_fraction, self.test_fraction, self.split_seed)
        size = self.toy_world.size if self.toy_world is not None else self.image_size
        for name, ids in self.splits.items():
            chosen = [r for r in records if r.identity in set(ids)]
            if chosen:
                self.datasets[name] = RetargetingPairs(chosen, self.image_size, self.part, self.samples_per_identity, size,
                                                       seed=None if name == "train" else self.split_seed)
        if "test" not in self.datasets and "val" in self.datasets:
            self.datasets["test"] = self.datasets["val"]
