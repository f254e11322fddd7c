"""Evaluation metafiles and the table built from them (mmagic's metafile -> model-index idea).

Every ``motionlab-eval`` run writes one metafile per model it scored: the model and its weights' SHA-256, the protocol
(and whether the run kept it), the manifest (which clips, how many frames: its hash), every metric with whether it is
comparable to a paper's number and why, and the cost (device, ms per generated frame, peak memory). Every
``motionlab-train`` run writes one too (its validation / test metrics, the data config's hash as the manifest, the
training's device-hours and GPU-hours). ``motionlab-eval table runs=[...]`` turns any set of run folders into one
Markdown + CSV table; ``layout=long`` groups the runs of one model (seeds) into mean ± std.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from motionlab.metrics.standard import comparability
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_write_text, file_digest, write_json

METAFILE = "metafile.json"
# a suite metric -> the names its values are reported under, where they differ
REPORTED_AS = {"lse_syncnet": ("lse_d_syncnet", "lse_c_syncnet", "sync_offset_syncnet", "lse_syncnet_tracks", "lse_syncnet_clips_without_track"),
               "csim_arcface": ("csim_arcface", "csim_arcface_frames_missed"), "akd_fan": ("akd_fan", "akd_fan_frames_missed")}


def protocol_status(protocol: dict | None, options: dict) -> dict | None:
    """The run's protocol as recorded: its ``name`` and ``paper``, with ``overridden`` listing the keys the run set
    differently from what the protocol fixes (then ``paper`` is None: the numbers are not the paper's protocol's)."""
    if not protocol:
        return None
    overridden = {key: {"protocol": value, "run": options.get(key)} for key, value in (protocol.get("fixed") or {}).items()
                  if options.get(key) != value}
    return {"name": protocol["name"], "paper": None if overridden else protocol.get("paper"), "data": protocol.get("data"),
            "overridden": overridden}


def device_description(device: str) -> str:
    """``cpu (<processor>, <n> cores)`` on a CPU, else the device as named (``cuda:0``)."""
    return device if device != "cpu" else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def clip_manifest(clips: list[dict]) -> dict:
    """Which clips were scored, with their frame counts, and the SHA-256 of that list: runs with one manifest hash
    scored the same frames."""
    listed = sorted([row["clip"], int(row["frames"])] for row in clips)
    return {"sha256": hashlib.sha256(json.dumps(listed).encode()).hexdigest(), "clips": listed}


class CostMeter:
    """Times what an iterator of clips spends producing them (the model generating frames) and counts their frames;
    ``on_clip(done, None)`` is called after each clip (progress)."""

    def __init__(self, clips: Iterator, on_clip: Callable[[int, int | None], None] | None = None):
        self.clips, self.seconds, self.frames, self.on_clip, self.count = clips, 0.0, 0, on_clip, 0

    def __iter__(self):
        while True:
            start = time.perf_counter()
            try:
                clip = next(self.clips)
            except StopIteration:
                return
            self.seconds += time.perf_counter() - start
            self.frames += int(clip.generated.shape[0])
            yield clip
            self.count += 1
            if self.on_clip is not None:
                self.on_clip(self.count, None)

    def record(self, device: str) -> dict:
        """Device, ms per generated frame, peak memory (the process's peak RSS; on a GPU also its peak allocation)."""
        cost = {"device": device_description(device), "ms_per_frame": 1000.0 * self.seconds / self.frames if self.frames else None,
                "peak_rss_mb": peak_rss_mb()}
        if device.startswith("cuda") and torch.cuda.is_available():
            cost["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return cost


# metrics the papers define by a formula alone (no network, no implementation choice left): mean absolute difference of
# [0, 1] pixels, PSNR with data range 1. SSIM is not among them: its window and filtering differ between codes.
DEFINED_BY_FORMULA = {"l1": "mean |generated - real| of [0, 1] pixels", "psnr": "10 log10(1 / MSE) of [0, 1] pixels"}


def metric_records(metrics: dict[str, float], weights: dict[str, dict], protocol: dict | None) -> dict[str, dict]:
    """Every reported metric with its value, whether it is comparable to a paper's number and why."""
    source = {reported: name for name, names in REPORTED_AS.items() for reported in names}
    records = {}
    for key, value in metrics.items():
        used = weights.get(source.get(key, key))
        if key in DEFINED_BY_FORMULA:
            used = {"standard": True, "reason": f"computed by its formula ({DEFINED_BY_FORMULA[key]})"}
        records[key] = {"value": value, **comparability(used, protocol)}
    return records


def metric_comparability(meta: dict) -> dict[str, dict]:
    """A metafile's metrics without their values: ``{metric: {comparable_to_papers, reason}}`` (the reports show them)."""
    return {name: {"comparable_to_papers": entry["comparable_to_papers"], "reason": entry["reason"]} for name, entry in meta["metrics"].items()}


def model_record(ckpt: str | os.PathLike | None, arch: str | None, label: str) -> dict:
    """The model scored: its label, architecture and weights (a file's SHA-256; a folder's files each)."""
    if ckpt is None:
        return {"name": label, "arch": arch, "weights": None}
    path = Path(ckpt)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".pth", ".ckpt", ".safetensors", ".tar", ".onnx")) if path.is_dir() else [path]
    return {"name": label, "arch": arch, "weights": {str(p): file_digest(p) for p in files}}


def write_metafile(path: str | os.PathLike, model: dict, protocol: dict | None, manifest: dict, metrics: dict[str, float],
                   weights: dict[str, dict], cost: dict, split: str | None = None) -> dict:
    """Write one model's metafile (:data:`METAFILE` layout; ``manifest`` from :func:`clip_manifest` or
    :func:`data_manifest`); returns it."""
    meta = {"model": model, "split": split, "protocol": protocol, "manifest": manifest,
            "metric_weights": weights, "metrics": metric_records(metrics, weights, protocol), "cost": cost}
    write_json(path, meta)
    return meta


def data_manifest(data: dict) -> dict:
    """A training run's manifest: its resolved data config and the SHA-256 of what in it chooses the data (runs with one
    hash trained and were validated on the same data). Not hashed: the shuffle seed (the order of batches) and the
    checkpoints the data is computed with (``*_ckpt``: another run's, one per seed), so the seeds of one baseline share
    a manifest."""
    chosen = {key: value for key, value in data.items() if key != "shuffle_seed" and not key.endswith("_ckpt")}
    return {"sha256": hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest(), "data": data}


def write_training_metafile(run_dir: str | os.PathLike, name: str, seed: int | None, data: dict, metrics: dict[str, float],
                            weights: str | os.PathLike | None, seconds: float, devices: int, accelerator: str) -> dict:
    """``<run>/metafile.json`` of a training run: the model (``name``, its seed, the weights' SHA-256), its ``val/`` and
    ``test/`` metrics (never a paper's protocol), the data manifest and the cost: wall time, device-hours (wall time x
    devices) and GPU-hours (the same on GPUs, else None), peak memory."""
    scored = {key: value for key, value in metrics.items() if key.startswith(("val/", "test/"))}
    splits = sorted({key.split("/", 1)[0] for key in scored})
    device = "cuda" if accelerator in ("gpu", "cuda") else accelerator
    hours = seconds * devices / 3600.0
    cost = {"device": f"{devices} x {device_description(device)}", "train_seconds": seconds, "device_hours": hours,
            "gpu_hours": hours if device == "cuda" else None, "peak_rss_mb": peak_rss_mb()}
    model = {**model_record(weights, None, name), "seed": seed}
    return write_metafile(Path(run_dir) / METAFILE, model, None, data_manifest(data), scored, {}, cost, "+".join(splits) or None)


def find_metafiles(runs: list[str | os.PathLike]) -> list[Path]:
    """The metafiles of run folders (``metafile.json``, and ``metafiles/*.json`` of a compare= run) or files."""
    found = []
    for run in runs:
        run = Path(run)
        if run.is_file():
            found.append(run)
            continue
        files = ([run / METAFILE] if (run / METAFILE).is_file() else []) + sorted((run / "metafiles").glob("*.json"))
        if not files:
            raise InputError(f"{run} holds no {METAFILE} (nor metafiles/): give motionlab-eval run folders")
        found += files
    return found


def _load_metas(runs: list[str | os.PathLike]) -> list[dict]:
    return [json.loads(Path(path).read_text()) for path in find_metafiles(runs)]


def _row_key(meta: dict) -> list[str]:
    protocol = meta.get("protocol") or {}
    return [meta["model"]["name"], protocol.get("name") or "none", meta.get("split") or "", meta["manifest"]["sha256"][:12]]


def _footer(reasons: dict[str, set], manifests: set) -> list[str]:
    lines = [""]
    if len(manifests) > 1:
        lines += [f"**The rows scored different clips ({len(manifests)} manifests): compare only rows with one manifest hash.**", ""]
    if reasons:
        lines += ["† not comparable to a paper's number:"] + [f"- {', '.join(sorted(metrics))}: {reason}" for reason, metrics in reasons.items()]
    return lines


def _write_table(out: str | os.PathLike, lines: list[str], rows: list[list]) -> tuple[Path, Path]:
    out = Path(out)
    markdown, table = out.with_suffix(".md"), io.StringIO()
    csv.writer(table, lineterminator="\n").writerows(rows)
    atomic_write_text(markdown, "\n".join(lines) + "\n")
    atomic_write_text(out.with_suffix(".csv"), table.getvalue())
    return markdown, out.with_suffix(".csv")


def metafile_table(runs: list[str | os.PathLike], out: str | os.PathLike, layout: str = "wide", metrics: list[str] | None = None,
                   preamble: list[str] | None = None) -> dict:
    """``motionlab-eval table``: the metafiles of ``runs`` as one table, written as ``out.md`` and ``out.csv`` (a dagger
    marks a value not comparable to a paper's number; the reasons are listed under the table; rows with different
    manifest hashes scored different clips, and the table says so).

    ``layout``: ``wide``, one row per metafile with the metrics as columns and the cost (ms/frame, memory, device);
    ``long``, one row per model and metric, the runs of one model (same name, protocol, split and manifest: its seeds)
    side by side with their mean ± std and device-hours. ``metrics``: only these; ``preamble``: Markdown lines above
    the table."""
    if layout not in ("wide", "long"):
        raise InputError(f"table layout must be wide or long, got {layout!r}")
    metas = _load_metas(runs)
    names = sorted({name for meta in metas for name in meta["metrics"] if metrics is None or name in metrics})
    manifests = {meta["manifest"]["sha256"] for meta in metas}
    reasons: dict[str, set] = {}

    def shown_value(entry: dict | None) -> str:
        if entry is None:
            return ""
        if not entry["comparable_to_papers"]:
            reasons.setdefault(entry["reason"], set()).add(entry["name"])
        return f"{entry['value']:.4g}" + ("" if entry["comparable_to_papers"] else "†")

    def entry(meta: dict, name: str) -> dict | None:
        found = meta["metrics"].get(name)
        return None if found is None else {**found, "name": name}

    if layout == "wide":
        header = ["model", "protocol", "split", "manifest", *names, "ms/frame", "peak RSS MB", "device"]
        shown, values = [], []
        for meta in metas:
            cost, entries = meta.get("cost") or {}, [entry(meta, name) for name in names]
            last = [cost.get("ms_per_frame"), cost.get("peak_rss_mb"), cost.get("device", "")]
            shown.append(_row_key(meta) + [shown_value(e) for e in entries]
                         + ["" if last[0] is None else f"{last[0]:.1f}", "" if last[1] is None else f"{last[1]:.0f}", last[2]])
            # the CSV holds the numbers as numbers, with one comparable_to_papers column per metric
            values.append(_row_key(meta) + ["" if e is None else e["value"] for e in entries] + last
                          + ["" if e is None else e["comparable_to_papers"] for e in entries])
        csv_rows = [header + [f"{name}_comparable_to_papers" for name in names], *values]
    else:
        groups: dict[tuple, list[dict]] = {}
        for meta in metas:
            groups.setdefault(tuple(_row_key(meta)), []).append(meta)
        labels = sorted({_run_label(meta, i) for group in groups.values() for i, meta in enumerate(group)}, key=_label_order)
        header = ["model", "protocol", "split", "manifest", "metric", "mean ± std", *labels, "device-hours"]
        shown, csv_rows = [], [["model", "protocol", "split", "manifest", "metric", "mean", "std", "runs", *labels,
                                "comparable_to_papers", "device_hours", "device"]]
        for key, group in groups.items():
            by_label = {_run_label(meta, i): meta for i, meta in enumerate(group)}
            hours = sum((meta.get("cost") or {}).get("device_hours") or 0.0 for meta in group)
            for name in names:
                entries = {label: entry(meta, name) for label, meta in by_label.items()}
                present = [e for e in entries.values() if e is not None]
                if not present:
                    continue
                numbers = [e["value"] for e in present]
                mean, std = statistics.fmean(numbers), (statistics.stdev(numbers) if len(numbers) > 1 else 0.0)
                comparable = all(e["comparable_to_papers"] for e in present)
                summary = {**present[0], "value": mean, "comparable_to_papers": comparable}
                mean_text = shown_value(summary)
                shown.append([*key, name, f"{mean_text.rstrip('†')} ± {std:.2g}" + ("" if comparable else "†"), *(shown_value(entries.get(label)) for label in labels),
                              f"{hours:.3g}" if hours else ""])
                csv_rows.append([*key, name, mean, std, len(numbers), *("" if entries.get(label) is None else entries[label]["value"] for label in labels),
                                 comparable, hours or "", (group[0].get("cost") or {}).get("device", "")])
    lines = [*(preamble or []), "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in shown] + _footer(reasons, manifests)
    markdown, csv_path = _write_table(out, lines, csv_rows)
    return {"rows": len(shown), "md": str(markdown), "csv": str(csv_path), "manifests": len(manifests)}


def _run_label(meta: dict, index: int) -> str:
    """A run's column in the long layout: its seed where the metafile records one, else its place in the group."""
    seed = meta["model"].get("seed")
    return f"seed_{seed}" if seed is not None else f"run_{index + 1}"


def _label_order(label: str) -> tuple[str, int]:
    kind, number = label.rsplit("_", 1)
    return kind, int(number)
