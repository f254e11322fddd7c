"""Checkpoint files: atomic writes, weights-only reads, strict state-dict loading, finding the last run."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionlab.utils.errors import InputError, MotionlabError
from motionlab.utils.io import atomic_open


class WeightMismatchError(MotionlabError, RuntimeError):
    """A state dict that does not fit an architecture: names the missing, unexpected and mis-shaped keys."""


class CheckpointFormatError(InputError):
    """A file that is not what it was given as (not a motionlab checkpoint, another network, a bad spec, another base)."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file and a rename: readers never see half a file."""
    with atomic_open(path, "wb") as file:
        torch.save(obj, file)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint weights-only (no arbitrary code runs), with a clear error for a bad path or file.

    A pretrained folder (:func:`save_pretrained`: ``model.safetensors`` + ``config.json``) reads as the checkpoint it
    was written from. A folder of ``.pth`` files (a release published as one file per module, e.g. LivePortrait's)
    reads as ``{file stem: contents}``, searched recursively; two files with one stem are refused. A folder in a layout a
    model registered (:func:`register_folder_layout`: MuseTalk's ``models/``) reads as that layout's reader says.
    """
    path = Path(path)
    if path.is_dir() and (path / PRETRAINED_WEIGHTS).is_file():
        return _load_pretrained_folder(path)
    if path.is_dir():
        layout = next((read for matches, read in _FOLDER_LAYOUTS if matches(path)), _load_release_folder)
        return layout(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; give the path of a .ckpt written by motionlab-train")
    import zipfile

    try:
        # a zip-format file (torch >= 1.6) is memory-mapped: tensors are read as a model copies them in (239 MB of FOMM
        # vox-256: 0.05 s instead of 0.2 s); older files are read whole
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # pickle errors, truncated zip archives, non-weights payloads
        raise CheckpointFormatError(
            f"checkpoint {path} cannot be read weights-only ({type(error).__name__}: {_load_failure(error)}); "
            "it may be truncated or hold Python objects beyond tensors and plain containers"
        ) from error


# (matches(folder), read(folder)) of release folders whose layout a model module knows
_FOLDER_LAYOUTS: list[tuple[Callable[[Path], bool], Callable[[Path], dict]]] = []


def register_folder_layout(matches: Callable[[Path], bool], read: Callable[[Path], dict]) -> None:
    """Read folders for which ``matches`` is true with ``read`` (which must read weights-only) in :func:`load_checkpoint`."""
    _FOLDER_LAYOUTS.append((matches, read))


# a pretrained folder: the weights (safetensors), what motionlab records with them (JSON), a model card (Markdown)
PRETRAINED_WEIGHTS, PRETRAINED_CONFIG, PRETRAINED_CARD = "model.safetensors", "config.json", "README.md"


def save_pretrained(checkpoint: Mapping, folder: str | os.PathLike, card: str) -> Path:
    """Write a motionlab checkpoint as a pretrained folder: its ``state_dict`` as ``model.safetensors`` (no pickle at
    all), its ``motionlab`` entry (networks' specs, predictor settings, run config, data) as ``config.json`` and
    ``card`` as ``README.md``; the folder appears whole (a previous one is replaced only by another pretrained folder)."""
    import json

    from safetensors.torch import save_file

    from motionlab.utils.io import atomic_dir

    if "motionlab" not in checkpoint:
        raise CheckpointFormatError("save_pretrained takes a checkpoint motionlab-train wrote (it has no 'motionlab' entry)")
    tensors = {key: value.detach().contiguous().clone() for key, value in checkpoint["state_dict"].items()}
    with atomic_dir(folder, replaces=lambda existing: (existing / PRETRAINED_WEIGHTS).is_file()) as scratch:
        save_file(tensors, str(scratch / PRETRAINED_WEIGHTS), metadata={"format": "pt"})
        (scratch / PRETRAINED_CONFIG).write_text(json.dumps(checkpoint["motionlab"], indent=2, default=str) + "\n")
        (scratch / PRETRAINED_CARD).write_text(card)
    return Path(folder)


def _load_pretrained_folder(folder: Path) -> dict:
    import json

    from safetensors.torch import load_file

    config = folder / PRETRAINED_CONFIG
    if not config.is_file():
        raise CheckpointFormatError(f"{folder} holds {PRETRAINED_WEIGHTS} but no {PRETRAINED_CONFIG}: a pretrained folder needs both")
    try:
        return {"state_dict": load_file(str(folder / PRETRAINED_WEIGHTS)), "motionlab": json.loads(config.read_text())}
    except (OSError, ValueError) as error:
        raise CheckpointFormatError(f"pretrained folder {folder} cannot be read ({error})") from error


def _load_release_folder(folder: Path) -> dict:
    files = sorted(folder.rglob("*.pth"))
    if not files:
        raise CheckpointFormatError(f"checkpoint {folder} is a folder without .pth files; give the .ckpt file in it "
                                    f"(e.g. {folder}/checkpoints/last.ckpt) or a folder of release .pth files")
    contents = {}
    for file in files:
        if file.stem in contents:
            raise CheckpointFormatError(f"{folder} holds two files named {file.name} ({file} and another); keep one release per folder")
        contents[file.stem] = load_checkpoint(file)
    return contents


def _load_failure(error: Exception) -> str:
    """The reason in ``torch.load``'s error, on one line: its weights-only refusals wrap it in a page of advice."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    return " ".join(text.split()) or "no reason given"


def check_state_dict(expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], target: str, source: str) -> None:
    """Require ``state_dict`` to have exactly the keys and shapes of ``expected``; otherwise list what differs."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state_dict)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or mismatched:
        # two lines: what differs (the first keys of each kind, named), then what to do
        parts = [
            f"{title} ({len(items)}): " + ", ".join(items[:8]) + (f", ... {len(items) - 8} more" if len(items) > 8 else "")
            for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
            if items
        ]
        raise WeightMismatchError(
            f"weights in {source} do not match {target}: " + "; ".join(parts)
            + "\n  check that the checkpoint was trained with the same model config (or give arch= for a published file)"
        )


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``module`` requiring identical keys and shapes; otherwise list what differs."""
    check_state_dict(module.state_dict(), state_dict, type(module).__name__, source)
    module.load_state_dict(state_dict, strict=True)


def with_batchnorm_counters(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with BatchNorm's ``num_batches_tracked`` (unused in evaluation) as zero wherever a layer's
    ``running_mean`` has none: files saved before PyTorch 0.4.1 lack them."""
    counters = {key[: -len("running_mean")] + "num_batches_tracked": torch.zeros((), dtype=torch.long) for key in state if key.endswith(".running_mean")}
    return {**counters, **state}


def submodule_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix.`` with the prefix removed (a task's ``net.`` weights, say)."""
    head = prefix + "."
    return {key[len(head) :]: value for key, value in state_dict.items() if key.startswith(head)}


def find_last_checkpoint(log_dir: str | os.PathLike, task_name: str, exclude: str | os.PathLike | None = None) -> Path:
    """The newest ``last.ckpt`` under ``<log_dir>/<task_name>/`` (runs and multiruns), excluding ``exclude``'s folder."""
    base = Path(log_dir) / task_name
    excluded = Path(exclude).resolve() if exclude is not None else None
    candidates = [
        p for p in base.glob("**/checkpoints/last.ckpt") if excluded is None or excluded not in p.resolve().parents
    ]
    if not candidates:
        raise FileNotFoundError(
            f"resume=last: no checkpoints/last.ckpt under {base}; train this experiment first or give a path"
        )
    return max(candidates, key=lambda p: p.stat().st_mtime)
