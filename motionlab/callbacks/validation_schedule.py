"""Refuse, before the first training step, a run that needs a validation metric but will never validate.

A checkpoint that keeps the best model by ``val/...``, or a sweep that optimises a ``val/...`` metric, learns nothing
from a run whose validation never comes: ``limit_val_batches=0``, ``check_val_every_n_epoch`` beyond ``max_epochs``,
or ``max_steps`` reached before the first epoch ends. Lightning only warns, after training; this stops at the start.
"""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from motionlab.utils.config import ConfigError


def first_validation_step(batches_per_epoch: int, val_check_batch: int | float, check_every_n_epochs: int | None,
                          accumulate: int = 1) -> float:
    """The optimizer step after which validation first runs: the ``val_check_batch``-th batch of the
    ``check_every_n_epochs``-th epoch (every epoch's end when ``val_check_batch`` is the epoch's length or more;
    counted across epochs when ``check_every_n_epochs`` is None)."""
    if math.isinf(val_check_batch):
        return math.inf
    if check_every_n_epochs is None:
        return math.ceil(val_check_batch / accumulate)
    within = min(int(val_check_batch), batches_per_epoch)
    return math.ceil(((check_every_n_epochs - 1) * batches_per_epoch + within) / accumulate)


class ValidationScheduleCheck(Callback):
    """On fit start (the batch counts known, nothing trained): a run whose checkpoints monitor a validation metric,
    or whose ``optimized_metric`` is one, must validate before it stops; otherwise a :class:`ConfigError` says why
    and which override to change."""

    def __init__(self, optimized_metric: str | None = None):
        self.optimized_metric = optimized_metric

    def on_train_start(self, trainer, pl_module) -> None:
        wanted = sorted({c.monitor for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor and c.monitor.startswith("val")}
                        | ({self.optimized_metric} if self.optimized_metric and self.optimized_metric.startswith("val") else set()))
        if not wanted or trainer.sanity_checking:
            return
        needs = f"{', '.join(wanted)} (checkpoint monitor / optimized_metric)"
        if sum(trainer.num_val_batches or [0]) == 0:
            raise ConfigError(f"this run never validates (no validation batches: trainer.limit_val_batches, or no val split) but needs {needs}; "
                              "give validation batches or set callbacks.model_checkpoint.monitor=null")
        batches = trainer.num_training_batches
        if math.isinf(batches):
            return  # an iterable of unknown length: nothing to count
        first = first_validation_step(batches, trainer.val_check_batch, trainer.check_val_every_n_epoch, trainer.accumulate_grad_batches)
        limits = [steps for steps in (trainer.max_steps,) if steps is not None and steps >= 0]
        if trainer.max_epochs is not None and trainer.max_epochs >= 0:
            limits.append(math.ceil(trainer.max_epochs * batches / trainer.accumulate_grad_batches))
        stop = min(limits) if limits else math.inf
        if first > stop:
            raise ConfigError(
                f"this run stops after {stop} steps but first validates after step {first} ({batches} batches per epoch, "
                f"check_val_every_n_epoch={trainer.check_val_every_n_epoch}, val_check_interval={trainer.val_check_interval}), "
                f"so {needs} is never measured; validate sooner (trainer.val_check_interval=<n batches <= {stop}>, "
                "trainer.check_val_every_n_epoch=null with it) or train longer")
