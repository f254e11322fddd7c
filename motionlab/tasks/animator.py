"""The Animator's LightningModule: it owns the network's losses, metrics and optimiser."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from motionlab.losses.animator import AnimatorLoss
from motionlab.metrics.suite import EvaluationSuite
from motionlab.tasks.base import MotionlabTask


class AnimatorTask(MotionlabTask):
    """Trains an Animator network to re-render the portrait in the driver's pose.

    Batches are dicts with ``source`` (the portrait), ``driver`` and ``driver_next`` (B, 3, H, W).

    Args:
        net: the animator network (``forward(portrait, driver, strength) -> dict``).
        loss: an :class:`AnimatorLoss` (weights from ``conf/loss/``).
        identity_batch_fraction: share of each batch also driven by itself for the identity term.
        diagnostics_every_n_steps: how often the no-grad temporal diagnostic (motion smoothness) runs.
        metrics: a factory (``_partial_: true``) of the :class:`EvaluationSuite` used for validation and
            test; the default has reconstruction, temporal and colour metrics but no feature backbone.
        descriptor_model: a frozen keypoint detector (``load_keypoint_detector``) for descriptor inputs
            and the descriptor alignment loss; batches then carry cached ``*_descriptors``.
    """

    task_name = "animator"

    def __init__(
        self,
        net: nn.Module,
        loss: AnimatorLoss,
        optimizer: Callable,
        scheduler: Callable | None = None,
        identity_batch_fraction: float = 0.5,
        diagnostics_every_n_steps: int = 50,
        metrics: Callable[[], EvaluationSuite] | None = None,
        descriptor_model: nn.Module | None = None,
    ):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        if not 0.0 < identity_batch_fraction <= 1.0:
            raise ValueError(f"identity_batch_fraction must be in (0, 1], got {identity_batch_fraction}")
        self.net = net
        self.loss = loss
        self.identity_batch_fraction = identity_batch_fraction
        self.diagnostics_every_n_steps = diagnostics_every_n_steps
        self.descriptor_model = descriptor_model.eval().requires_grad_(False) if descriptor_model is not None else None
        if getattr(net, "num_descriptors", 0) and descriptor_model is None:
            raise ValueError("the Animator net takes descriptors (num_descriptors > 0) but no descriptor_model is configured")
        factory = metrics or (lambda: EvaluationSuite(frechet=False, identity=False))
        self.eval_suites = nn.ModuleDict({split: factory() for split in ("val", "test")})

    def train(self, mode: bool = True) -> "AnimatorTask":
        super().train(mode)
        if self.descriptor_model is not None:
            self.descriptor_model.eval()  # frozen: its batch-norm statistics must not move
        return self

    def _animate(self, portrait: torch.Tensor, driver: torch.Tensor, portrait_descriptors: torch.Tensor | None = None,
                 driver_descriptors: torch.Tensor | None = None, strength: float = 1.0) -> dict[str, torch.Tensor]:
        if not getattr(self.net, "num_descriptors", 0):
            return self.net(portrait, driver, strength=strength)
        with torch.no_grad():
            if portrait_descriptors is None:
                portrait_descriptors = self.descriptor_model(portrait)["value"]
            if driver_descriptors is None:
                driver_descriptors = self.descriptor_model(driver)["value"]
        return self.net(portrait, driver, strength=strength, portrait_descriptors=portrait_descriptors, driver_descriptors=driver_descriptors)

    def forward(self, portrait: torch.Tensor, driver: torch.Tensor, strength: float = 1.0) -> dict[str, torch.Tensor]:
        return self._animate(portrait, driver, strength=strength)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        portrait, driver = batch["source"], batch["driver"]
        portrait_descriptors, driver_descriptors = batch.get("source_descriptors"), batch.get("driver_descriptors")
        outputs = self._animate(portrait, driver, portrait_descriptors, driver_descriptors)
        identity_outputs = None
        if self.loss.weights["identity"] > 0:
            count = max(1, math.ceil(portrait.shape[0] * self.identity_batch_fraction))
            own = None if portrait_descriptors is None else portrait_descriptors[:count]
            identity_outputs = self._animate(portrait[:count], portrait[:count], own, own, strength=self.loss.identity_strength)
        terms = self.loss(outputs, identity_outputs, portrait, driver, self.descriptor_model, portrait_descriptors, driver_descriptors)
        self.log("train/loss", terms["total"], prog_bar=True)
        for name in ("reconstruction", "alignment", "identity", "tv", "residual_magnitude"):
            if name in terms:
                self.log(f"train/{name}", terms[name])
        if self.global_step % self.diagnostics_every_n_steps == 0:
            self.log("train/motion_smoothness", self._motion_smoothness(batch, outputs["image"]))
        return terms["total"]

    @torch.no_grad()
    def _motion_smoothness(self, batch: dict, generated: torch.Tensor) -> torch.Tensor:
        """Mean |(G(t') - G(t)) - (D(t') - D(t))|: does the output change between neighbouring driver frames as the driver does?"""
        generated_next = self._animate(batch["source"], batch["driver_next"], batch.get("source_descriptors"), batch.get("driver_next_descriptors"))["image"]
        return ((generated_next - generated) - (batch["driver_next"] - batch["driver"])).abs().mean()

    def _evaluation_step(self, batch: dict, split: str) -> None:
        # A driver frame and its neighbour make a two-frame clip, enough for the temporal metrics.
        portrait = batch["source"]
        driver = torch.stack([batch["driver"], batch["driver_next"]], dim=1)
        descriptors = [batch.get("driver_descriptors"), batch.get("driver_next_descriptors")]
        generated = torch.stack(
            [self._animate(portrait, driver[:, i], batch.get("source_descriptors"), descriptors[i])["image"].clamp(0.0, 1.0) for i in range(2)], dim=1
        )
        self.eval_suites[split].update(portrait, driver, generated)

    def _evaluation_epoch_end(self, split: str) -> None:
        values = self.eval_suites[split].compute()
        self.eval_suites[split].reset()
        for name, value in values.items():
            self.log(f"{split}/{name}", value.float(), prog_bar=name == "l1")
