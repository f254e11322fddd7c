"""What every motionlab LightningModule shares: optimiser / scheduler wiring and the checkpoint payload."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch


class MotionlabTask(L.LightningModule):
    """Base task.

    Args:
        optimizer: partial taking ``params`` (``_partial_: true`` in config).
        scheduler: partial taking ``(optimizer, total_steps)`` or ``None``; stepped every step.

    ``run_config`` (set by :func:`motionlab.train.train`) is the resolved run configuration as plain
    containers. It is stored in every checkpoint under ``"motionlab"`` so inference can rebuild the
    network without Hydra; plain containers keep checkpoints loadable with ``torch.load(weights_only=True)``.
    """

    task_name = "base"

    def __init__(self, optimizer: Callable, scheduler: Callable | None = None):
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.run_config: dict = {}

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=max(1, total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

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

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["motionlab"] = {"task": self.task_name, "config": self.run_config, "torch": str(torch.__version__)}
