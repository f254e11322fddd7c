"""Data: the toy world, clip datasets and datamodules, talking-head preprocessing, audio features, caches."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from motionlab.data import toy_human  # noqa: F401  (registers the toy world's "human" renderer)
from motionlab.utils.config import build_stored
from motionlab.utils.errors import InputError

# What a checkpoint's stored data config may build when an evaluation rebuilds its test split
# (motionlab.utils.config.build_stored refuses any other _target_).
STORED_DATA_TARGETS = (
    "motionlab.data.datamodule.PortraitVideoDataModule",
    "motionlab.data.datamodule.TargetDataModule",
    "motionlab.data.lipsync_datamodule.LipSyncDataModule",
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


def trained_on(data: Mapping | None) -> dict | None:
    """What a run's data was, from its data config: ``{"domain", "resolution"}``, the domain ``toy_world`` (the embedded
    Live2D-like characters), ``toy_talking`` (generated talking heads) or ``clips`` (the user's own data)."""
    if not isinstance(data, Mapping):
        return None
    domain = "toy_world" if data.get("toy_world") else "toy_talking" if data.get("toy_talking") else "clips"
    toy = data.get("toy_world") or data.get("toy_talking") or {}
    resolution = data.get("image_size") or (toy.get("size") if isinstance(toy, Mapping) else None)
    return {"domain": domain, "resolution": resolution}


def is_toy_media(path: str | os.PathLike) -> bool:
    """Whether ``path`` belongs to generated toy data: a toy world (``toy_world.json`` at its root) or a toy talking
    clip (its ground-truth ``mouth.npy``)."""
    path = Path(path).resolve()
    for folder in [path, *path.parents][:4]:
        if (folder / "toy_world.json").is_file() or (folder / "mouth.npy").is_file():
            return True
    return False


def toy_model_warning(record: Mapping | None, media: str | os.PathLike) -> str | None:
    """The one line to print when a model trained on toy data is given real media, or None."""
    if not record or not str(record.get("domain", "")).startswith("toy") or is_toy_media(media):
        return None
    size = f"{record['resolution']} px " if record.get("resolution") else ""
    return (f"this model was trained on the embedded {record['domain'].replace('_', ' ')} ({size}CPU toy data, for learning the "
            f"platform): on {Path(media).name} it gives a low-resolution approximation, not a real result. For real faces use "
            "published weights (FOMM arch=fomm_vox256, TPSMM arch=tpsmm_vox256, a LivePortrait folder, SyncTalk_2D, Wav2Lip "
            "arch=wav2lip96) or train on your own clips "
            "(README: what works on real media)")
