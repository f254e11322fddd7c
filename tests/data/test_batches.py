"""Every key a batch (or sample, or predictor output) is indexed with in motionlab/ is declared in
motionlab/data/batches.py, and the datasets serve what the contracts say."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import torch

from motionlab.data import batches

PACKAGE = Path(__file__).resolve().parents[2] / "motionlab"
# batch["key"], batch.get("key"), sample["key"], and sample[f"driver_{name}"] with the names it is formed from
USES = re.compile(r"\b(?:batch|sample)(?:\[|\.get\()f?\"([a-z_0-9{}]+)\"")


def declared() -> set[str]:
    keys = set()
    for kind in (batches.AnimationBatch, batches.RetargetingBatch, batches.AdapterBatch, batches.LipSyncBatch, batches.Wav2LipBatch, batches.MuseTalkBatch,
                 batches.AnimationOutput):
        keys |= set(typing.get_type_hints(kind))
    return keys


def test_every_batch_key_used_is_declared():
    keys = declared()
    used = {}
    for path in PACKAGE.rglob("*.py"):
        for key in USES.findall(path.read_text()):
            forms = [key.replace("{name}", name) for name in ("descriptors", "descriptor_jacobians")] if "{name}" in key else [key]
            for form in forms:
                used.setdefault(form, path.relative_to(PACKAGE.parent))
    undeclared = {key: str(path) for key, path in used.items() if key not in keys}
    assert len(used) >= 25 and not undeclared, undeclared


def test_the_animation_dataset_serves_its_contract(toy_world):
    from motionlab.data.datasets import PortraitVideoDataset, discover_clips

    _, records = discover_clips(toy_world, "seed")
    sample = PortraitVideoDataset(records[:2], image_size=32)[0]
    hints = typing.get_type_hints(batches.AnimationBatch)
    required = batches.AnimationBatch.__required_keys__
    assert required <= set(sample) <= set(hints)
    for key in ("portrait", "driver", "driver_next"):
        assert sample[key].shape == (3, 32, 32) and sample[key].dtype == torch.float32 and 0 <= sample[key].min() <= sample[key].max() <= 1
    assert sample["driver_keypoints"].shape[-1] == 2
