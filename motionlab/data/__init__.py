"""Data: the toy world, clip datasets and datamodules, talking-head preprocessing, audio features, caches."""

from __future__ import annotations

import os
from collections.abc import Mapping

from motionlab.data import toy_human  # noqa: F401  (registers the toy world's "human" renderer)
from motionlab.utils.config import build_stored
from motionlab.utils.errors import InputError

# What a checkpoint's stored data config may build when an evaluation rebuilds its test split
# (motionlab.utils.config.build_stored refuses any other _target_).
STORED_DATA_TARGETS = (
    "motionlab.data.datamodule.PortraitVideoDataModule",
    "motionlab.data.datamodule.TargetDataModule",
    "motionlab.data.lipsync.LipSyncDataModule",
    "motionlab.data.cross_domain.CrossDomainDataModule",
    "motionlab.data.augment.PairedAugmentation",
)


# data keys of checkpoints written before their rename
STORED_RENAMED = {"descriptor_checkpoint": "descriptor_ckpt"}


def stored_datamodule(meta: Mapping, source: str | os.PathLike, cache_dir: str | os.PathLike, **overrides):
    """The datamodule a checkpoint's run trained on, rebuilt from the data config stored in its ``motionlab`` entry
    (``meta``, as :func:`motionlab.models.motionlab_meta` returns it; None for a foreign file): only the classes of
    :data:`STORED_DATA_TARGETS`, typed values, nothing resolved. Where it generates or caches anything is this
    command's ``cache_dir``, never a folder the file names; ``overrides`` replace other stored values."""
    data = ((meta or {}).get("config") or {}).get("data")
    if not isinstance(data, Mapping):
        raise InputError(f"{source} carries no run config to rebuild its data from; score videos with generated_dir= / driver_dir=")
    data = {STORED_RENAMED.get(key, key): value for key, value in data.items()}
    return build_stored(data, STORED_DATA_TARGETS, f"{source} [motionlab.config]", "data", cache_dir=str(cache_dir), **overrides)
