"""Read and write First Order Motion Model checkpoints (``*.pth.tar`` with ``kp_detector`` and ``generator``)."""

from __future__ import annotations

import os
from pathlib import Path


from motionlab.models.fomm import FOMM
from motionlab.utils.checkpoint import WeightMismatchError, atomic_torch_save, load_checkpoint, load_state_dict_strict

FOMM_PARTS = ("kp_detector", "generator")


def load_fomm_checkpoint(model: FOMM, path: str | os.PathLike) -> dict:
    """Load a FOMM release checkpoint into ``model`` (weights-only read, strict keys and shapes).

    Other entries of the file (``discriminator``, optimisers, ``epoch``) are returned untouched.
    """
    checkpoint = load_checkpoint(path)
    missing = [part for part in FOMM_PARTS if part not in checkpoint]
    if missing:
        raise WeightMismatchError(
            f"{path} is not a FOMM checkpoint: entries {missing} are missing (it has {sorted(checkpoint)}); "
            "expected the release format with 'kp_detector' and 'generator' state dicts"
        )
    for part in FOMM_PARTS:
        load_state_dict_strict(getattr(model, part), checkpoint[part], f"{path} [{part}]")
    return {key: value for key, value in checkpoint.items() if key not in FOMM_PARTS}


def save_fomm_checkpoint(model: FOMM, path: str | os.PathLike, epoch: int = 0) -> Path:
    """Write ``model`` in the FOMM release format (readable by the original ``demo.py``)."""
    payload = {part: getattr(model, part).state_dict() for part in FOMM_PARTS}
    payload["epoch"] = epoch
    atomic_torch_save(payload, path)
    return Path(path)
