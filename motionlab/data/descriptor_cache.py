"""On-disk descriptor caches: per-clip keypoints (and Jacobians) of a trained descriptor model.

Layout under ``<cache_dir>/descriptors/<key>/``: ``<identity>.npz`` per clip (:meth:`Keypoints.as_arrays` of the
detector's output: ``value`` (T, K, 2) normalised, ``jacobian`` (T, K, 2, 2) when the model has them,
``portrait_value`` / ``portrait_jacobian`` for
the seed layout) and ``manifest.json`` written last. The key combines the checkpoint's SHA-256 and the
preprocessing settings, so another checkpoint or image size never reads stale descriptors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from motionlab.data.datasets import ClipRecord, frames_to_tensor
from motionlab.data.video_io import open_clip, read_image
from motionlab.geometry import Keypoints
from motionlab.models import load_model
from motionlab.utils.io import atomic_open, file_digest, write_json

log = logging.getLogger(__name__)
CACHE_VERSION = 1


class DescriptorCache:
    """Descriptors of one checkpoint at one preprocessing setting.

    Args:
        cache_dir: root of the caches.
        checkpoint: the descriptor checkpoint (hashed into the key; loaded only to compute).
        image_size: frames are resized to this side before detection, as in training.
    """

    def __init__(self, cache_dir: str | os.PathLike, checkpoint: str | os.PathLike, image_size: int | None):
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"descriptor checkpoint {self.checkpoint} does not exist")
        self.settings = {"version": CACHE_VERSION, "checkpoint_sha256": file_digest(self.checkpoint), "image_size": image_size}
        key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.root = Path(cache_dir) / "descriptors" / key
        self.image_size = image_size

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def status(self, records: list[ClipRecord]) -> str:
        """``hit`` (every clip cached with matching settings and frame counts), ``missing`` or ``stale``."""
        if not self.manifest_path.is_file():
            return "missing"
        manifest = json.loads(self.manifest_path.read_text())
        if manifest.get("settings") != self.settings:
            return "stale"
        clips = manifest.get("clips", {})
        for record in records:
            entry = clips.get(record.identity)
            if entry is None or not (self.root / entry["file"]).is_file() or entry["frames"] != len(open_clip(record.clip)):
                return "stale"
        return "hit"

    def ensure(self, records: list[ClipRecord], device: str = "cpu", batch_size: int = 32) -> Path:
        """Return the cache folder, (re)computing it when missing or stale (stale is logged as a warning)."""
        state = self.status(records)
        if state == "hit":
            return self.root
        if state == "stale":
            log.warning("descriptor cache %s is stale for these clips or settings; recomputing", self.root)
        self.build(records, load_model(self.checkpoint, component="kp_detector").to(device), device=device, batch_size=batch_size)
        return self.root

    @torch.no_grad()
    def build(self, records: list[ClipRecord], detector: nn.Module, device: str = "cpu", batch_size: int = 32) -> Path:
        """Detect keypoints on every frame (and portrait) of ``records`` and write the cache."""
        self.root.mkdir(parents=True, exist_ok=True)
        clips = {}
        for record in records:
            clip = open_clip(record.clip)
            batches = [detector(frames_to_tensor(clip.get(range(s, min(s + batch_size, len(clip)))), self.image_size).to(device)).as_arrays()
                       for s in range(0, len(clip), batch_size)]
            arrays = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
            if record.portrait is not None:
                portrait: Keypoints = detector(frames_to_tensor(read_image(record.portrait)[None], self.image_size).to(device))
                arrays.update({f"portrait_{key}": value[0] for key, value in portrait.as_arrays().items()})
            name = f"{record.identity}.npz"
            with atomic_open(self.root / name, "wb") as file:
                np.savez(file, **arrays)
            clips[record.identity] = {"file": name, "frames": len(clip)}
        write_json(self.manifest_path, {"settings": self.settings, "checkpoint": str(self.checkpoint), "clips": clips})
        return self.root

    def load(self, identity: str) -> dict[str, np.ndarray]:
        """The cached arrays of one clip."""
        manifest = json.loads(self.manifest_path.read_text())
        with np.load(self.root / manifest["clips"][identity]["file"], allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
