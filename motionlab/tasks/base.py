"""What every motionlab LightningModule shares: optimisers, frozen helper networks, pretrained starts, logging of
loss terms, evaluation hooks and the checkpoint payload."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import lightning as L
import torch
from torch import nn

from motionlab.data import trained_on
from motionlab.models import CheckpointFormatError, freeze, load_pretrained
from motionlab.models.lora import LoraSpec, add_lora, check_base, is_adapter_key, lora_spec
from motionlab.utils.errors import InputError
from motionlab.utils.io import file_digest


class MotionlabTask(L.LightningModule):
    """Base task.

    Args:
        optimizer: a partial taking ``params`` (``_partial_: true`` in config), or a mapping of such partials by
            parameter group (:meth:`parameter_groups`; several optimisers mean manual optimisation, GAN-style).
        scheduler: a partial taking ``(optimizer, total_steps)`` (or a mapping by group, or ``None``); stepped every step.

    Networks a task trains live in ``net``; frozen helpers (a SyncNet, a descriptor model) arrive built by config
    and are registered with :meth:`add_helper`. Every network built by :mod:`motionlab.models` carries a spec;
    :meth:`on_save_checkpoint` stores them, with :meth:`predictor_settings` and the run config (a record only),
    under ``"motionlab"``, so :func:`motionlab.tasks.load_predictor` rebuilds the task's predictor from the file.

    With LoRA (:meth:`add_lora`) only the adapters of ``net`` train; checkpoints then hold those alone (no frozen
    base or helper weights), with the LoRA spec and the base checkpoint's path and SHA-256 under
    ``motionlab.lora``; resuming puts the base weights back after checking that digest.
    """

    task_name = "base"

    def __init__(self, optimizer: Callable | Mapping[str, Callable], scheduler: Callable | Mapping[str, Callable] | None = None):
        super().__init__()
        self.optimizer_factories = dict(optimizer) if isinstance(optimizer, Mapping) else {"net": optimizer}
        if isinstance(scheduler, Mapping):
            self.scheduler_factories = dict(scheduler)
        else:
            self.scheduler_factories = {name: scheduler for name in self.optimizer_factories} if scheduler is not None else {}
        unknown = set(self.scheduler_factories) - set(self.optimizer_factories)
        if unknown:
            raise InputError(f"schedulers for {sorted(unknown)} have no optimizer (optimizers: {sorted(self.optimizer_factories)})")
        self.automatic_optimization = len(self.optimizer_factories) == 1
        self.helper_names: list[str] = []
        self.run_config: dict = {}
        self.lora_base: dict | None = None

    def add_helper(self, name: str, module: nn.Module | None, trainable: bool = False) -> None:
        """Register a helper network as attribute ``name`` (``None`` allowed), always in eval mode. Frozen (no
        gradients) unless ``trainable``: then its weights train with the task while its batch-norm statistics stay
        as loaded, the usual way to fine-tune a pretrained network on a task's small batches."""
        if module is not None:
            module = module.eval().requires_grad_(True) if trainable else freeze(module)
        setattr(self, name, module)
        if module is not None:
            self.helper_names.append(name)

    def train(self, mode: bool = True) -> "MotionlabTask":
        super().train(mode)
        for name in self.helper_names:
            getattr(self, name).eval()  # frozen: batch-norm statistics must not move
        if self.lora_base is not None:
            self._freeze_base_norms()
        return self

    def _freeze_base_norms(self) -> None:
        """Under LoRA the base's batch norms run on their stored statistics (modules_to_save copies still train).
        Lightning keeps each module's mode across validation, so setting it once holds for the run."""
        for module in self.net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in module.parameters(recurse=False)):
                module.eval()

    def init_from(self, path: str | os.PathLike) -> None:
        """Start ``net`` from pretrained weights (a motionlab checkpoint of the same variant, or a published file its
        architecture reads); unlike resuming (``resume``), optimiser, schedule and step start afresh."""
        load_pretrained(self.net, path)

    def add_lora(self, spec: LoraSpec, base: str | os.PathLike) -> None:
        """Freeze ``net`` (already holding the weights of the checkpoint ``base``) and add LoRA adapters to it;
        only they (and ``spec.modules_to_save``) train from here on."""
        trained = [name for name in self.helper_names if any(p.requires_grad for p in getattr(self, name).parameters())]
        if trained:
            raise InputError(f"LoRA trains adapters of net only, but helper network(s) {trained} are set to train: freeze them "
                             "(e.g. model.descriptor_lr_scale=0) or train without LoRA")
        add_lora(self.net, spec)
        self.lora_base = {"path": str(Path(base).resolve()), "sha256": file_digest(base)}
        self._freeze_base_norms()

    def _dropped_from_checkpoint(self, key: str) -> bool:
        """Under LoRA: the frozen base and helper weights, which the base checkpoint and the config already hold."""
        return (key.startswith("net.") and not is_adapter_key(key)) or any(key.startswith(f"{name}.") for name in self.helper_names)

    def parameter_groups(self) -> dict[str, Iterable[torch.nn.Parameter] | Iterable[dict]]:
        """Trainable parameters by optimiser name; one optimiser (``net``) takes every trainable parameter. Torch's
        parameter-group dicts are allowed; a group's ``lr_scale`` multiplies the optimiser's learning rate for it."""
        if len(self.optimizer_factories) != 1:
            raise NotImplementedError(f"{type(self).__name__} has optimizers {sorted(self.optimizer_factories)}: it must define parameter_groups()")
        return {next(iter(self.optimizer_factories)): [p for p in self.parameters() if p.requires_grad]}

    def configure_optimizers(self):
        groups = self.parameter_groups()
        configured = []
        for name, factory in self.optimizer_factories.items():
            optimizer = factory(params=list(groups[name]))
            for group in optimizer.param_groups:  # before the scheduler records each group's base learning rate
                group["lr"] *= group.get("lr_scale", 1.0)
            entry: dict = {"optimizer": optimizer}
            if name in self.scheduler_factories:
                total_steps = int(self.trainer.estimated_stepping_batches)
                entry["lr_scheduler"] = {"scheduler": self.scheduler_factories[name](optimizer=optimizer, total_steps=max(1, total_steps)), "interval": "step"}
            configured.append(entry)
        if len(configured) == 1:
            return configured[0] if "lr_scheduler" in configured[0] else configured[0]["optimizer"]
        return configured

    def manual_step(self, name: str, loss: torch.Tensor, gradient_clip: float | None = None) -> None:
        """One step of optimiser ``name`` under manual optimisation (several optimisers): backward of ``loss``, gradient
        norm clipping to ``gradient_clip`` (Lightning clips only automatic optimisation), the step, and the group's
        scheduler if it has one."""
        names = list(self.optimizer_factories)
        optimizers = self.optimizers()
        optimizer = optimizers[names.index(name)] if isinstance(optimizers, list) else optimizers
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if gradient_clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=gradient_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        if name in self.scheduler_factories:
            scheduled = [n for n in names if n in self.scheduler_factories]
            schedulers = self.lr_schedulers()
            (schedulers[scheduled.index(name)] if isinstance(schedulers, list) else schedulers).step()

    def log_evaluation(self, split: str, values: Mapping[str, torch.Tensor | float], prog_bar: tuple[str, ...] = ()) -> None:
        """Log an evaluation epoch's values as ``<split>/<name>``. Under DDP they are held-out-set values already
        reduced over every rank (torchmetrics syncs on compute; tasks reduce their own sums); ``sync_dist`` averages
        those equal numbers, which changes nothing and tells Lightning they are global."""
        for name, value in values.items():
            self.log(f"{split}/{name}", torch.as_tensor(value, dtype=torch.float32, device=self.device), prog_bar=name in prog_bar, sync_dist=True)

    def log_terms(self, split: str, terms: Mapping[str, torch.Tensor], **options) -> None:
        """Log every entry a loss returned as ``<split>/<name>`` (``total`` as ``<split>/loss``, on the progress bar)."""
        for name, value in terms.items():
            key = "loss" if name == "total" else name
            self.log(f"{split}/{key}", value, prog_bar=name == "total", **options)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Logged by the task rather than LearningRateMonitor, which refuses to run without a logger.
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"model/params_total": total, "model/params_trainable": trainable, "model/params_frozen": total - trainable}

    # Validation and test share one path; a task implements _evaluation_step / _evaluation_epoch_end.
    def _evaluation_step(self, batch: dict, split: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    def _evaluation_epoch_end(self, split: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    @property
    def test_split(self) -> str:
        """The name test metrics are logged under: ``test``, or ``val_best`` when the datamodule holds no test
        identities and stands its validation ones in (they picked the checkpoint, so they are never called test)."""
        datasets = getattr(getattr(self._trainer, "datamodule", None), "datasets", None) or {}
        return "val_best" if datasets.get("test") is not None and datasets.get("test") is datasets.get("val") else "test"

    def evaluation_suite(self, split: str):
        """The task's evaluation suite of ``split`` (its ``eval_suites``: val and test; ``val_best`` uses the test one)."""
        return self.eval_suites["test" if split == "val_best" else split]

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step(batch, self.test_split)

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end(self.test_split)

    def predictor_settings(self) -> dict:
        """Plain settings the task's predictor needs besides the networks (the lip-sync mask, say)."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        specs = {name: module.model_info.spec() for name, module in self.named_children() if hasattr(module, "model_info")}
        checkpoint["motionlab"] = {"task": self.task_name, "models": specs, "predictor": self.predictor_settings(),
                                   "config": self.run_config, "data": trained_on(self.run_config.get("data")),
                                   "torch": str(torch.__version__)}
        if self.lora_base is not None:
            checkpoint["motionlab"]["lora"] = {"spec": lora_spec(self.net).to_dict(), "base_path": self.lora_base["path"],
                                               "base_sha256": self.lora_base["sha256"]}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not self._dropped_from_checkpoint(k)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Resuming (or testing) a LoRA run: the file holds the adapters; the base weights come from init_from.
        lora = (checkpoint.get("motionlab") or {}).get("lora")
        if (lora is None) != (self.lora_base is None):
            raise CheckpointFormatError(
                "this checkpoint holds LoRA adapters: resume it with the same lora=... and init_ckpt=<its base>"
                if lora is not None else "this run adds LoRA adapters (lora=...) but the checkpoint has none: resume a LoRA run's checkpoint")
        if lora is None:
            return
        check_base(lora["base_sha256"], self.lora_base["sha256"], "the checkpoint being resumed", f"init_from {self.lora_base['path']}",
                   Path(lora["base_path"]).name)
        state = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key not in state and self._dropped_from_checkpoint(key):
                state[key] = value
