"""Evaluation metafiles and the table built from them (mmagic's metafile -> model-index idea).

Every ``motionlab-eval`` run writes one metafile per model it scored: the model and its weights' SHA-256, the protocol
(and whether the run kept it), the manifest (which clips, how many frames: its hash), every metric with whether it is
comparable to a paper's number and why, and the cost (device, ms per generated frame, peak memory).
``motionlab-eval table runs=[...]`` turns any set of run folders into one Markdown + CSV table.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from motionlab.metrics.standard import comparability
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_write_text, file_digest, write_json

METAFILE = "metafile.json"
# a suite metric -> the names its values are reported under, where they differ
REPORTED_AS = {"lse_syncnet": ("lse_d_syncnet", "lse_c_syncnet", "sync_offset_syncnet"),
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
        cost = {"device": device if device != "cpu" else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
                "ms_per_frame": 1000.0 * self.seconds / self.frames if self.frames else None,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
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


def write_metafile(path: str | os.PathLike, model: dict, protocol: dict | None, clips: list[dict], metrics: dict[str, float],
                   weights: dict[str, dict], cost: dict, split: str | None = None) -> dict:
    """Write one model's metafile (:data:`METAFILE` layout); returns it."""
    meta = {"model": model, "split": split, "protocol": protocol, "manifest": clip_manifest(clips),
            "metric_weights": weights, "metrics": metric_records(metrics, weights, protocol), "cost": cost}
    write_json(path, meta)
    return meta


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


def metafile_table(runs: list[str | os.PathLike], out: str | os.PathLike) -> dict:
    """``motionlab-eval table``: one row per metafile of ``runs``, the metrics as columns (a dagger marks a value not
    comparable to a paper's number; the reasons are listed under the table), and the cost; writes ``out.md`` and
    ``out.csv``. Rows with different manifest hashes scored different clips: the table says so."""
    metas = [(path, json.loads(Path(path).read_text())) for path in find_metafiles(runs)]
    names = sorted({name for _, meta in metas for name in meta["metrics"]})
    header = ["model", "protocol", "split", "manifest", *names, "ms/frame", "peak RSS MB", "device"]
    shown, values, reasons = [], [], {}
    for _, meta in metas:
        protocol, cost = meta.get("protocol") or {}, meta.get("cost") or {}
        first = [meta["model"]["name"], protocol.get("name") or "none", meta.get("split") or "", meta["manifest"]["sha256"][:12]]
        last = [cost.get("ms_per_frame"), cost.get("peak_rss_mb"), cost.get("device", "")]
        entries = [meta["metrics"].get(name) for name in names]
        for name, entry in zip(names, entries):
            if entry is not None and not entry["comparable_to_papers"]:
                reasons.setdefault(entry["reason"], set()).add(name)
        shown.append(first + ["" if e is None else f"{e['value']:.4g}" + ("" if e["comparable_to_papers"] else "†") for e in entries]
                     + ["" if last[0] is None else f"{last[0]:.1f}", "" if last[1] is None else f"{last[1]:.0f}", last[2]])
        values.append(first + ["" if e is None else e["value"] for e in entries] + last
                      + ["" if e is None else e["comparable_to_papers"] for e in entries])
    manifests = {meta["manifest"]["sha256"] for _, meta in metas}
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(map(str, row)) + " |" for row in shown]
    lines.append("")
    if len(manifests) > 1:
        lines += [f"**The rows scored different clips ({len(manifests)} manifests): compare only rows with one manifest hash.**", ""]
    if reasons:
        lines += ["† not comparable to a paper's number:"] + [f"- {', '.join(sorted(metrics))}: {reason}" for reason, metrics in reasons.items()]
    out = Path(out)
    markdown, table = out.with_suffix(".md"), io.StringIO()
    # the CSV holds the numbers as numbers, with one comparable_to_papers column per metric
    csv.writer(table).writerows([header + [f"{name}_comparable_to_papers" for name in names], *values])
    atomic_write_text(markdown, "\n".join(lines) + "\n")
    atomic_write_text(out.with_suffix(".csv"), table.getvalue())
    return {"rows": len(shown), "md": str(markdown), "csv": str(out.with_suffix(".csv")), "manifests": len(manifests)}
