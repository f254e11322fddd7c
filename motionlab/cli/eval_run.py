"""What ``motionlab-eval`` runs (:mod:`motionlab.cli.evaluate` imports it once a command runs, so ``--help`` stays
fast): score a checkpoint or a folder of generated videos (eval.json / .md / .html), or several models on the same clips
side by side (compare.json / .md), each with its metafile; and ``motionlab-eval table``."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from motionlab.cli.app import command_options
from motionlab.inference.evaluate import (
    REFERENCE_ROWS,
    clips_from_checkpoint,
    clips_from_folders,
    clips_from_model,
    evaluate_clips,
    metric_columns,
    model_entry,
    reference_clips,
)
from motionlab.inference.metafile import (
    METAFILE,
    CostMeter,
    clip_manifest,
    metafile_table,
    metric_comparability,
    model_record,
    protocol_status,
    write_metafile,
)
from motionlab.inference.report import NOTE, write_reports
from motionlab.metrics.identity import ProfileSimilarity
from motionlab.metrics.profile import read_profile
from motionlab.metrics.suite import check_metric_names
from motionlab.utils.config import ConfigError, validate_config
from motionlab.utils.io import append_jsonl, atomic_write_text, write_json
from motionlab.utils.progress import progress, progress_wanted

log = logging.getLogger(__name__)


def _log_wandb(result: dict, out_dir: Path, tags: list[str]) -> None:
    import wandb

    run = wandb.init(project="motionlab", job_type="eval", dir=str(out_dir), mode="offline", tags=tags, config={"source": result["source"]})
    try:
        run.summary.update({f"eval/{k}": v for k, v in result["metrics"].items()})
        columns = metric_columns(result["clips"])
        table = wandb.Table(columns=["clip", "frames", "preview", *columns])
        for row in result["clips"]:
            preview = wandb.Video(row["preview"], format="gif") if "preview" in row else None
            table.add_data(row["clip"], row["frames"], preview, *[row[c] for c in columns])
        run.log({"eval/clips": table, **{f"eval/{k}": v for k, v in result["metrics"].items()}})
    finally:
        wandb.finish()


def _evaluate_cross_domain(options: dict, out_dir: Path) -> dict:
    from motionlab.geometry.landmarks import SIGNALS
    from motionlab.inference.cross_domain import CEILINGS, evaluate_cross_domain, write_cross_domain_reports

    if options["ckpt"] is None or not options["drivers"]:
        raise ConfigError("cross-domain evaluation: give ckpt=<descriptor checkpoint>, adapter_ckpt=<adapter checkpoint> and drivers=[clip, ...]")
    result = evaluate_cross_domain(options["ckpt"], options["adapter_ckpt"], list(options["drivers"]), options["paths"]["cache_dir"],
                                   options["portrait"], options["max_frames"], options["device"], options["landmark_reference"])
    paths = write_cross_domain_reports(result, out_dir)
    append_jsonl(out_dir / "metrics.jsonl", {"command": "motionlab-eval", "source": result["source"], "metrics": result["metrics"]})
    table = Table(title="motionlab-eval: motion agreement, driver vs generated (Pearson r / Lin's CCC / amplitude ratio)")
    table.add_column("clip")
    for name in SIGNALS:
        table.add_column(name, justify="right")
    for name, clip in result["clips"].items():
        table.add_row(name, *(f"{clip['correlation'][s]:.3f} / {clip['ccc'][s]:.3f} / {clip['amplitude'][s]:.2f}" for s in SIGNALS))
    for name, clip in result["clips"].items():
        table.add_row(f"{name}: adapted keypoints", *(f"{clip['adapted_correlation'][s]:.3f}" for s in SIGNALS))
    for key, label in CEILINGS.items():
        table.add_row(label, *(f"{result['metrics'][f'agreement/{key}/{s}']:.3f}" for s in SIGNALS))
    console = Console()
    console.print(table)
    console.print(f"wrote {paths['metrics']}, {paths['json'].name}, {paths['md'].name} and {paths['html'].name}")
    return result


def _evaluate_models(cfg: DictConfig, options: dict, out_dir: Path, paper_protocol: dict | None) -> dict:
    """``compare=[...]``: every model on the same clips with the same metrics, one row per model (compare.json / .md)."""
    if options["driver_dir"] is None or options["ckpt"] is not None or options["generated_dir"] is not None:
        raise ConfigError("compare=[PATH or PATH@ARCH, ...] animates driver_dir=... with each model; give ckpt=null and no generated_dir")
    models = [model_entry(entry) for entry in options["compare"]]  # every path checked before any work
    protocol = "cross-identity (portrait_dir)" if options["portrait_dir"] is not None else "self-reenactment (each clip's first frame)"
    rows = []
    scope = (options["driver_dir"], options["portrait_dir"], options["image_size"], options["max_clips"], options["max_frames"])
    # the reference rows first (reference_rows=false leaves them out), then each model
    entries = [(kind, None, kind, reference_clips(kind, *scope)) for kind in REFERENCE_ROWS if options["reference_rows"]]
    entries += [(Path(ckpt).name + (f" @{arch}" if arch else ""), arch, ckpt, None) for ckpt, arch in models]
    for index, (label, arch, ckpt, clips) in enumerate(entries):
        reference = clips is not None
        suite = instantiate(cfg.suite)
        with progress(f"{label}: scoring", "clips", progress_wanted(options["progress"])) as on_clip:
            meter = CostMeter(clips if reference else clips_from_model(ckpt, arch, *scope, options["device"]), on_clip)
            result = evaluate_clips(iter(meter), suite, preview_dir=out_dir / "previews" / f"model_{index}", fps=options["preview_fps"])
        meta = write_metafile(out_dir / "metafiles" / f"model_{index}.json", model_record(None if reference else ckpt, arch, label), paper_protocol,
                              clip_manifest(result["clips"]), result["metrics"], suite.weights_records(), meter.record(options["device"]))
        rows.append({"model": label, "ckpt": None if reference else str(ckpt), "arch": arch, "metrics": result["metrics"], "clips": result["clips"],
                     "comparability": metric_comparability(meta),
                     "cost": meta["cost"], "manifest": meta["manifest"]["sha256"]})
    source = f"{len(rows)} models on {options['driver_dir']}, {protocol}, frames scored at {options['image_size']} px"
    comparison = {"source": source, "note": NOTE, "protocol": paper_protocol, "models": rows}
    names = sorted({name for row in rows for name in row["metrics"]})
    lines = [f"# motionlab-eval: {source}", "", f"_{NOTE}_", "", "| model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += ["| " + row["model"] + " | " + " | ".join(f"{row['metrics'][n]:.4g}" if n in row["metrics"] else "" for n in names) + " |" for row in rows]
    write_json(out_dir / "compare.json", comparison)
    atomic_write_text(out_dir / "compare.md", "\n".join(lines) + "\n")
    for row in rows:
        append_jsonl(out_dir / "metrics.jsonl", {"command": "motionlab-eval", "source": f"{row['model']}: {source}", "metrics": row["metrics"]})
    table = Table(title=f"motionlab-eval: {source}")
    table.add_column("model")
    for name in names:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(row["model"], *(f"{row['metrics'][n]:.4g}" if n in row["metrics"] else "" for n in names))
    console = Console()
    console.print(table)
    console.print(f"[dim]{NOTE}[/dim]")
    console.print(_comparability_line(paper_protocol))
    console.print(f"wrote {out_dir / 'compare.json'}, compare.md, metafiles/ and previews/model_<i>/ for each model "
                  f"(motionlab-eval table runs=[{out_dir}] out=table builds the table from run folders)", markup=False)
    return comparison


def evaluate(cfg: DictConfig) -> dict:
    """Run the evaluation ``cfg`` describes; returns the result dict written to ``eval.json``."""
    options = validate_config(cfg, required=("paths", "suite"))
    out_dir = Path(cfg.paths.output_dir)
    if options["adapter_ckpt"] is not None:
        return _evaluate_cross_domain(options, out_dir)
    check_metric_names(options["metrics"])  # before anything is built: an unknown name lists the known ones
    paper_protocol = protocol_status(options["protocol"], options)
    if options["compare"]:
        return _evaluate_models(cfg, options, out_dir, paper_protocol)
    suite = instantiate(cfg.suite)
    profile = None
    if options["profile"] is not None:  # read before any work: a bad profile fails fast
        identity = read_profile(options["profile"])
        profile = ProfileSimilarity(identity.mean_vector(), identity.embedder)
    if options["ckpt"] is not None:
        if options["generated_dir"] is not None:
            raise ConfigError("config keys 'ckpt' and 'generated_dir' exclude each other: score a checkpoint or a folder")
        split, clips = clips_from_checkpoint(options["ckpt"], options["paths"]["cache_dir"], options["split"], options["max_clips"],
                                             options["max_frames"], options["batch_size"], options["device"])
        source = f"checkpoint {options['ckpt']} ({split} split" + (": no test identities held out, these picked the checkpoint)" if split != options["split"] else ")")
    elif options["generated_dir"] is not None and options["driver_dir"] is not None:
        split = None
        clips = clips_from_folders(options["generated_dir"], options["driver_dir"], options["portrait_dir"], options["image_size"], options["max_clips"], options["max_frames"])
        source = f"videos {options['generated_dir']} vs drivers {options['driver_dir']}"
    else:
        raise ConfigError("config: give ckpt=..., or ckpt=null with generated_dir=... and driver_dir=...")
    if profile is not None:
        source += f", CSIM to profile {identity.name}"
    with progress("scoring", "clips", progress_wanted(options["progress"])) as on_clip:
        meter = CostMeter(iter(clips), on_clip)
        result = evaluate_clips(iter(meter), suite, preview_dir=out_dir / "previews", fps=options["preview_fps"], profile=profile)
    result["source"] = source
    result["note"] = NOTE
    label = Path(options["ckpt"]).name if options["ckpt"] is not None else f"videos {Path(options['generated_dir']).name}"
    meta = write_metafile(out_dir / METAFILE, model_record(options["ckpt"], None, label), paper_protocol, clip_manifest(result["clips"]), result["metrics"],
                          suite.weights_records(), meter.record(options["device"]), split)
    result["protocol"], result["cost"] = paper_protocol, meta["cost"]
    result["comparability"] = metric_comparability(meta)
    paths = write_reports(result, out_dir)
    append_jsonl(out_dir / "metrics.jsonl", {"command": "motionlab-eval", "source": source, "metrics": result["metrics"]})
    if options["wandb"]:
        _log_wandb(result, out_dir, list(options["tags"]))

    console = Console()
    table = Table(title=f"motionlab-eval: {source}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(result["metrics"].items()):
        table.add_row(name, f"{value:.4g}")
    console.print(table)
    console.print(f"[dim]{NOTE}[/dim]")
    console.print(_comparability_line(paper_protocol))
    console.print(f"wrote {paths['json']}, {paths['md'].name}, {paths['html'].name}, {METAFILE} and {len(result['clips'])} previews")
    return result


def _comparability_line(protocol: dict | None) -> str:
    if protocol is None:
        return "[yellow]no paper's protocol (protocol=<name>, conf/protocol/): no number here is comparable to a paper's[/yellow]"
    if protocol["overridden"]:
        return f"[yellow]protocol {protocol['name']} with {', '.join(protocol['overridden'])} overridden: not the paper's protocol[/yellow]"
    where = protocol["paper"] or "motionlab's fixed pipeline (comparable between runs under it, not to one paper)"
    return f"protocol {protocol['name']}: {where}; each metric's comparable_to_papers is in the metafile"


def table(cfg: DictConfig) -> None:
    options = command_options(cfg)
    report = metafile_table(list(options["runs"]), options["out"], options["layout"], None if options["metrics"] is None else list(options["metrics"]))
    print(f"wrote {report['md']} and {report['csv']}: {report['rows']} rows" + (f" ({report['manifests']} different clip manifests)" if report["manifests"] > 1 else ""))
