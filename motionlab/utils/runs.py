"""The run folders under a logs root: what ran, when, how it ended, its final metrics and curves (the viewer's Runs
tab, multirun summaries).

A run folder is one with Hydra's ``.hydra/config.yaml`` (``motionlab-train`` and ``motionlab-eval`` runs, multirun
jobs included) or a ``metrics.json``. Files are read as data only: YAML with ``safe_load``, JSON, CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

TIME_NAME = re.compile(r"^(\d{4}-\d\d-\d\d)_(\d\d)-(\d\d)-(\d\d)")


@dataclass
class RunRecord:
    folder: Path
    name: str  # the folder relative to the root
    experiment: str
    tags: list[str]
    started: str
    status: str  # finished | failed | cancelled (the command said so) | stopped (a checkpoint, no final metrics: killed or still running) | empty
    metrics: dict[str, float] = field(default_factory=dict)
    sweep: str | None = None  # the multirun folder of a sweep job

    def row(self, metric_names: list[str]) -> list:
        return [self.name, self.experiment, ", ".join(self.tags), self.started, self.status, self.sweep or "",
                *(float(f"{self.metrics[name]:.4g}") if name in self.metrics else math.nan for name in metric_names)]


def hidden(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in a dot folder under ``root`` (caches, temporary files of writes in progress)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


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


# what a command writes into its run folder when it ends otherwise than finishing (motionlab.cli.app): status and why
RUN_STATUS_FILE = "run_status.json"


def _read_status(path: Path) -> str | None:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    status = loaded.get("status") if isinstance(loaded, dict) else None
    return status if status in ("failed", "cancelled") else None


def find_runs(root: str | Path) -> list[RunRecord]:
    """Every run folder under ``root``, newest first."""
    root = Path(root)
    records = []
    folders = {p.parent.parent for p in root.glob("**/.hydra/config.yaml")} | {p.parent for p in root.glob("**/metrics.json")}
    for folder in folders:
        if hidden(folder, root):
            continue
        config = _read_yaml(folder / ".hydra" / "config.yaml")
        metrics_file = next((folder / name for name in ("metrics.json", "eval.json") if (folder / name).is_file()), None)
        ended = _read_status(folder / RUN_STATUS_FILE)
        if ended is not None:
            status = ended
        elif metrics_file is not None:
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


def _overrides(folder: Path) -> list[str]:
    try:
        loaded = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in loaded] if isinstance(loaded, list) else []


def write_multirun_summary(sweep_dir: str | Path, optimized_metric: str | None = None) -> tuple[Path, Path]:
    """``multirun_summary.csv`` (the source of truth) and ``.md`` in a sweep folder: one row per job with the
    overrides that set it apart (those all jobs share are left out), status, training seconds, the optimised metric
    and the metrics the jobs share; written atomically."""
    from motionlab.utils.io import atomic_write_text

    sweep_dir = Path(sweep_dir)
    jobs = sorted((r for r in find_runs(sweep_dir) if r.folder.parent == sweep_dir),
                  key=lambda r: (not r.folder.name.isdigit(), int(r.folder.name) if r.folder.name.isdigit() else 0, r.folder.name))
    names = [n for n in key_metrics(jobs, limit=8) if n != optimized_metric]
    columns = ["job", "overrides", "status", "seconds", *([optimized_metric] if optimized_metric else []), *names]
    overrides = {job.name: _overrides(job.folder) for job in jobs}
    shared = set.intersection(*(set(o) for o in overrides.values())) if len(jobs) > 1 else set()
    rows = [[job.folder.name, " ".join(o for o in overrides[job.name] if o not in shared), job.status, job.metrics.get("trainer/seconds", ""),
             *(job.metrics.get(name, "") for name in columns[4:])] for job in jobs]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([columns, *rows])
    csv_path = atomic_write_text(sweep_dir / "multirun_summary.csv", buffer.getvalue())

    def cell(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")

    table = [f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}", *(f"| {' | '.join(cell(v) for v in row)} |" for row in rows)]
    title = f"# Sweep {sweep_dir.name}: {len(rows)} jobs" + (f", optimising {optimized_metric}" if optimized_metric else "")
    md_path = atomic_write_text(sweep_dir / "multirun_summary.md", "\n".join([title, "", *table, ""]))
    return csv_path, md_path
