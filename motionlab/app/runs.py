"""The run folders under a logs root, as the viewer lists them: what ran, when, how it ended, its final metrics and
curves, and the sequences and previews it holds.

A run folder is one with Hydra's ``.hydra/config.yaml`` (``motionlab-train`` and ``motionlab-eval`` runs, multirun
jobs included) or a ``metrics.json``. Files are read as data only: YAML with ``safe_load``, JSON, CSV, sequences without pickle.
"""

from __future__ import annotations

import csv
import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageSequence

from motionlab.inference.sequence import Sequence, build_sequence, read_sequence

TIME_NAME = re.compile(r"^(\d{4}-\d\d-\d\d)_(\d\d)-(\d\d)-(\d\d)")


@dataclass
class RunRecord:
    folder: Path
    name: str  # the folder relative to the root
    experiment: str
    tags: list[str]
    started: str
    status: str  # finished | stopped (a checkpoint, no final metrics: killed, failed or still running) | empty
    metrics: dict[str, float] = field(default_factory=dict)
    sweep: str | None = None  # the multirun folder of a sweep job

    def row(self, metric_names: list[str]) -> list:
        return [self.name, self.experiment, ", ".join(self.tags), self.started, self.status, self.sweep or "",
                *(float(f"{self.metrics[name]:.4g}") if name in self.metrics else math.nan for name in metric_names)]


def _started(folder: Path) -> str:
    for part in (folder.name, folder.parent.name):
        match = TIME_NAME.match(part)
        if match:
            return f"{match[1]} {match[2]}:{match[3]}:{match[4]}"
    return datetime.fromtimestamp(folder.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")


def _read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _read_metrics(path: Path) -> dict[str, float]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    metrics = loaded.get("metrics", loaded)  # eval.json nests them
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)} if isinstance(metrics, dict) else {}


def find_runs(root: str | Path) -> list[RunRecord]:
    """Every run folder under ``root``, newest first."""
    root = Path(root)
    records = []
    folders = {p.parent.parent for p in root.glob("**/.hydra/config.yaml")} | {p.parent for p in root.glob("**/metrics.json")}
    for folder in folders:
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue  # caches and temporary folders
        config = _read_yaml(folder / ".hydra" / "config.yaml")
        metrics_file = next((folder / name for name in ("metrics.json", "eval.json") if (folder / name).is_file()), None)
        if metrics_file is not None:
            status = "finished"
        elif any(folder.glob("checkpoints/*.ckpt")):
            status = "stopped"
        else:
            status = "empty"
        multirun = next((parent for parent in folder.parents if (parent / "multirun.yaml").is_file() and (parent == root or root in parent.parents)), None)
        tags = config.get("tags") or []
        records.append(RunRecord(
            folder=folder, name=str(folder.relative_to(root)),
            experiment=str(config.get("task_name") or ("eval" if (folder / "eval.json").is_file() else folder.parent.name)),
            tags=[str(t) for t in tags] if isinstance(tags, list) else [str(tags)], started=_started(folder), status=status,
            metrics=_read_metrics(metrics_file) if metrics_file else {},
            sweep=str(multirun.relative_to(root)) if multirun is not None else None,
        ))
    return sorted(records, key=lambda r: (r.started, r.name), reverse=True)


def metric_order(name: str) -> tuple:
    """Validation first, then test and evaluation metrics, then training losses and counters; by name within each."""
    group = 0 if name.startswith("val/") else 2 if name.startswith(("train/", "trainer/", "model/", "data/")) else 1
    return group, name


def key_metrics(records: list[RunRecord], limit: int = 6) -> list[str]:
    """The metrics to show as columns: those the runs share most, validation before test and evaluation, then by
    name (training losses and counters are left to the curves)."""
    counts: dict[str, int] = {}
    for record in records:
        for name in record.metrics:
            if not name.startswith(("train/", "trainer/", "model/", "data/")):
                counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda name: (-counts[name], metric_order(name)))[:limit]


def metric_curves(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Logged values per metric as (step, value), from the run's CSV logger (``logger=csv``: ``csv/metrics.csv``)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).glob("csv/**/metrics.csv")):
        with open(path, newline="") as file:
            for row in csv.DictReader(file):
                step = row.get("step")
                for name, value in row.items():
                    if name in ("step", "epoch") or value in (None, "") or not step:
                        continue
                    try:
                        curves.setdefault(name, []).append((int(float(step)), float(value)))
                    except ValueError:
                        continue
    return curves


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
    visible = [p for p in folder.glob("**/*") if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
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
