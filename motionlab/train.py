"""``train(cfg)``: build data, task, callbacks, loggers and trainer from a composed config and fit.

Run it as ``motionlab-train`` (:mod:`motionlab.cli.train`, Hydra overrides on the command line).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torchmetrics
from hydra.utils import instantiate
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from motionlab.callbacks.rng_state import RNGStateCallback
from motionlab.callbacks.validation_schedule import ValidationScheduleCheck
from motionlab.inference.metafile import write_training_metafile
from motionlab.models import motionlab_meta
from motionlab.models.lora import LoraSpec, lora_spec
from motionlab.utils.checkpoint import (
    CheckpointFormatError,
    atomic_torch_save,
    find_last_checkpoint,
    load_checkpoint,
    save_pretrained,
)
from motionlab.utils.config import ConfigError, validate_config
from motionlab.utils.errors import InputError
from motionlab.utils.io import append_jsonl, flatten, remove_stale_scratch, write_json

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO whose writes are atomic (a killed run never leaves a truncated ``last.ckpt``)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options}")
        atomic_torch_save(checkpoint, path)


def _finish_wandb() -> None:
    import wandb

    if wandb.run is not None:
        wandb.finish()


def _resolve_resume(cfg: DictConfig) -> str | None:
    if cfg.resume is None:
        # a rerun in the same folder (run_name, a requeued or resubmitted cluster job) continues where it stopped: from
        # last.ckpt, or from the checkpoint Lightning saved on SLURM's requeue signal when that is newer
        output_dir = Path(cfg.paths.output_dir)
        own = [p for p in [output_dir / "checkpoints" / "last.ckpt", *output_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
        if own:
            newest = max(own, key=lambda p: p.stat().st_mtime)
            log.info("resuming from this run folder's %s", newest)
            return str(newest)
        return None
    if cfg.resume == "last":
        path = find_last_checkpoint(cfg.paths.log_dir, cfg.task_name, exclude=cfg.paths.output_dir)
        log.info("resume=last resolved to %s", path)
        return str(path)
    if not Path(cfg.resume).is_file():
        raise ConfigError(f"config key 'resume': {cfg.resume} is not a file; give a .ckpt path or 'last'")
    return str(cfg.resume)


def _checked_resume(path: str) -> str:
    """``path`` once it reads weights-only as a motionlab checkpoint whose stored entry is plain data: Lightning gets
    only such a file, so a truncated, foreign or crafted one fails in one line before anything is built."""
    checkpoint = load_checkpoint(path)
    if motionlab_meta(checkpoint, path) is None:
        raise CheckpointFormatError(f"{path} is not a checkpoint motionlab-train wrote (no 'motionlab' entry); resume only its "
                                    "last.ckpt, or start from other weights with init_ckpt=")
    if "optimizer_states" not in checkpoint:
        raise CheckpointFormatError(f"{path} holds weights only (a run's best checkpoint, or a pretrained folder): nothing to resume "
                                    "from; resume the run's last.ckpt, or start from these weights with init_ckpt=")
    return path


def _log_model_artifact(folder: Path, metrics: dict[str, float]) -> None:
    """The pretrained folder as the W&B run's ``model`` artifact (``logger.wandb.log_model=true``), tagged latest."""
    import wandb

    if wandb.run is None:
        return
    artifact = wandb.Artifact(f"model-{wandb.run.id}", type="model",
                              metadata={name: value for name, value in metrics.items() if name.startswith(("val/", "val_best/", "test/"))})
    artifact.add_dir(str(folder))
    wandb.run.log_artifact(artifact, aliases=["latest"])
    log.info("logged %s as the W&B artifact model-%s", folder, wandb.run.id)


def _write_pretrained(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float], output_dir: Path) -> Path | None:
    """``<run>/pretrained``: the best checkpoint's weights (else the last's) as a pretrained folder with its model card
    (:func:`motionlab.utils.checkpoint.save_pretrained`), which :func:`motionlab.models.from_pretrained` and every
    command's ``ckpt=`` read."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    source = Path(best) if best and Path(best).is_file() else output_dir / "checkpoints" / "last.ckpt"
    if not source.is_file():
        return None
    checkpoint = load_checkpoint(source)
    folder = save_pretrained(checkpoint, output_dir / "pretrained", model_card(checkpoint["motionlab"], metrics, cfg, source, trainer.global_step))
    log.info("wrote %s (model.safetensors, config.json, README.md) from %s", folder, source.name)
    return folder


def model_card(meta: dict, metrics: dict[str, float], cfg: DictConfig, source: Path, steps: int) -> str:
    """A pretrained folder's README.md: what the model is, what it was trained on (and whether that is the toy world),
    how long, its validation numbers, the command and the code that made it."""
    import motionlab

    data = meta.get("data") or {}
    toy = str(data.get("domain", "")).startswith("toy")
    overrides = _overrides()
    lines = [f"# {cfg.task_name}: {', '.join(spec['name'] for spec in meta['models'].values())}", "",
             f"A {meta['task']} model trained with motionlab {motionlab.__version__} (torch {meta.get('torch')}, commit {_commit()}).", ""]
    if toy:
        lines += [f"**Trained on the embedded toy world ({data.get('resolution', '?')} px, CPU minutes): a model for learning the platform, "
                  "not for real faces.** For real media use published weights (README: what works on real media).", ""]
    lines += ["## Training", "", f"- data: `{json.dumps(data, default=str)}`", f"- steps: {steps}, wall time {metrics.get('trainer/seconds', 0):.0f} s",
              f"- weights: `{source.name}` ({'the best by ' + str(cfg.get('optimized_metric')) if source.name != 'last.ckpt' else 'the last'} checkpoint)",
              f"- command: `motionlab-train {' '.join(overrides)}`" if overrides else "- command: motionlab-train (the config in config.json)", "",
              "## Validation", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.5g} |" for name, value in sorted(metrics.items()) if name.startswith(("val/", "val_best/", "test/"))]
    lines += ["", "## Use", "", "```python", "from motionlab.models import from_pretrained", "net = from_pretrained(\"pretrained\")", "```",
              "", "or `ckpt=<this folder>` in any motionlab command (motionlab-animate, motionlab-eval, motionlab-lipsync, motionlab-export).", ""]
    return "\n".join(lines)


def _overrides() -> list[str]:
    """The run's command-line overrides (Hydra's record), or none outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _commit() -> str:
    """The git commit of the working tree the code runs from, or ``unknown`` (no git, or not a checkout)."""
    import subprocess

    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The value of ``name`` in ``metrics`` (for sweeps); a clear error when it was never logged."""
    if name is None:
        return None
    if name not in metrics:
        raise InputError(f"optimized_metric {name!r} was not logged (logged: {', '.join(sorted(metrics)) or 'nothing'}); "
                         "a run must validate at least once (check trainer.max_steps / limit_val_batches), or set optimized_metric=null")
    return metrics[name]


def train(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Fit (and optionally test) the configured task; returns the final metrics and the built objects.

    Writes ``<output_dir>/metrics.json`` and always closes the W&B run, also on failure.
    """
    run_config = validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    task_logs = Path(cfg.paths.log_dir) / cfg.task_name
    if task_logs.is_dir():  # the temporary files of checkpoint writes that an earlier run was killed during
        remove_stale_scratch(task_logs, recursive=True)
    ckpt_path = _resolve_resume(cfg)
    if ckpt_path is not None:
        _checked_resume(ckpt_path)
    L.seed_everything(cfg.seed, workers=True)

    datamodule: L.LightningDataModule = instantiate(cfg.data)
    task: L.LightningModule = instantiate(cfg.model, **({"loss": cfg.loss} if cfg.get("loss") else {}))
    task.run_config = run_config
    if cfg.get("init_ckpt") and ckpt_path is not None and not cfg.get("lora"):
        if cfg.resume is not None:
            raise ConfigError("config keys 'init_ckpt' and 'resume' exclude each other: start from weights, or resume a run")
        log.info("init_ckpt is not loaded: the run resumes from its own last.ckpt")
    elif cfg.get("init_ckpt"):
        task.init_from(cfg.init_ckpt)
        log.info("model.net starts from the weights of %s", cfg.init_ckpt)
    if cfg.get("lora"):
        if not cfg.get("init_ckpt"):
            raise ConfigError("lora=... adapts a frozen base: give its weights with init_ckpt=<base checkpoint> (also when resuming)")
        task.add_lora(LoraSpec.from_dict(OmegaConf.to_container(cfg.lora, resolve=True)), cfg.init_ckpt)
        log.info("LoRA on model.net: %s", lora_spec(task.net))
    if cfg.get("compile"):
        task.net.compile()  # nn.Module.compile: in place, so state-dict keys keep their names (no "_orig_mod.")
        log.info("model.net is compiled with torch.compile (the first steps include compilation)")
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]
    callbacks += [RNGStateCallback(), ValidationScheduleCheck(cfg.get("optimized_metric"))]
    loggers, model_artifact = [], False
    for node in (cfg.get("logger") or {}).values():
        if str(node.get("_target_", "")).endswith("WandbLogger") and node.get("log_model") and node.get("offline"):
            # Lightning refuses log_model offline; motionlab logs the run's pretrained folder as the model artifact itself
            # (offline runs keep it until `wandb sync`)
            node, model_artifact = OmegaConf.merge(node, {"log_model": False}), True
        loggers.append(instantiate(node))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()])

    started = time.perf_counter()
    try:
        counts = task.parameter_counts()
        for logger in loggers:
            logger.log_hyperparams({**flatten(run_config), **counts})
        before = {}
        if cfg.get("validate_before_training") and cfg.train and ckpt_path is None:
            # the untrained model's validation metrics: the "before" of a before / after comparison
            before = {f"before/{k}": float(v) for k, v in trainer.validate(task, datamodule=datamodule, verbose=False)[0].items()}
            # validate() resets metric states under inference mode; fit's validation updates them in place outside it
            for module in task.modules():
                if isinstance(module, torchmetrics.Metric):
                    module.reset()
        if cfg.train:
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        train_metrics = dict(trainer.callback_metrics)
        finished = output_dir / "metrics.json"
        if cfg.train and ckpt_path is not None and not train_metrics and finished.is_file():
            # the same command again after the run had finished: nothing was left to train, its metrics stand
            log.info("the run in %s had finished; its metrics.json is kept", output_dir)
            return json.loads(finished.read_text()), {"cfg": cfg, "datamodule": datamodule, "model": task, "trainer": trainer}
        if cfg.test:
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics = {k: float(v) for k, v in {**train_metrics, **trainer.callback_metrics}.items() if torch.as_tensor(v).numel() == 1}
        metrics.update({k: float(v) for k, v in counts.items()})
        metrics.update(before)
        metrics["trainer/global_step"] = float(trainer.global_step)
        metrics["trainer/seconds"] = time.perf_counter() - started
        if hasattr(datamodule, "skipped_clips") and getattr(datamodule, "datasets", None):
            metrics["data/skipped_clips"] = float(datamodule.skipped_clips)
        if trainer.is_global_zero:
            write_json(output_dir / "metrics.json", metrics)
            append_jsonl(output_dir / "metrics.jsonl", {"command": "motionlab-train", "task": cfg.task_name, "metrics": metrics})
            folder = _write_pretrained(trainer, cfg, metrics, output_dir) if cfg.train else None
            if model_artifact and folder is not None:
                _log_model_artifact(folder, metrics)
            last = output_dir / "checkpoints" / "last.ckpt"
            write_training_metafile(output_dir, cfg.task_name, cfg.get("seed"), OmegaConf.to_container(cfg.data, resolve=True), metrics,
                                    folder or (last if last.is_file() else None), metrics["trainer/seconds"], trainer.world_size,
                                    type(trainer.accelerator).__name__.removesuffix("Accelerator").lower())
    finally:
        _finish_wandb()
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": task, "trainer": trainer}


if __name__ == "__main__":  # this module is the library behind the command, which lives in motionlab.cli.train
    sys.exit("python -m motionlab.train runs nothing: the command is motionlab-train (python -m motionlab.cli.train), "
             "e.g. motionlab-train --help")
