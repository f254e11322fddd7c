"""The generated sequences under a runs folder, as the viewer opens them: sequence files (``motionlab-animate
sequence_out=``) and the portrait | driver | generated previews of training and evaluation runs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from motionlab.inference.sequence import Sequence, build_sequence, read_sequence
from motionlab.utils.runs import hidden


def _is_sequence(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "format.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def sequence_files(folder: str | Path) -> list[Path]:
    """Sequences (``motionlab-animate sequence_out=``) and previews (portrait | driver | generated GIFs of training
    and evaluation runs) under ``folder``."""
    folder = Path(folder)
    visible = [p for p in folder.glob("**/*") if not hidden(p, folder)]
    return sorted(p for p in visible if (p.suffix == ".npz" and _is_sequence(p)) or (p.suffix == ".gif" and p.parent.name == "previews"))


def open_sequence(path: str | Path, fps: float = 12.5) -> Sequence:
    """A sequence file, or an evaluation preview GIF split into its three panels (no layers; traces computed)."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        return read_sequence(path)
    with Image.open(path) as image:
        frames = np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])
    width = frames.shape[2] // 3
    portrait, driver, generated = (frames[:, :, i * width : (i + 1) * width] for i in range(3))
    return build_sequence(portrait[0], driver, generated, fps)
