"""The Animator's LightningModule and predictor: descriptor inputs from a descriptor model (frozen, or fine-tuned
with the Animator) when the net takes them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from motionlab.data.batches import AnimationBatch
from motionlab.losses.animator import AnimatorLoss
from motionlab.metrics.suite import EvaluationSuite
from motionlab.tasks.animator_predictor import animate
from motionlab.tasks.base import MotionlabTask
from motionlab.utils.errors import InputError


class AnimatorTask(MotionlabTask):
    """Trains an Animator network to re-render the portrait in the driver's pose.

    Batches are dicts with ``source`` (the portrait), ``driver`` and ``driver_next`` (B, 3, H, W), and cached
    ``*_descriptors`` when the data has a descriptor checkpoint.

    Args:
        net: the animator network (``forward(portrait, driver, strength) -> dict``).
        loss: an :class:`AnimatorLoss` (``conf/loss/``).
        diagnostics_every_n_steps: how often the no-grad temporal diagnostic (motion smoothness) runs.
        metrics: a factory (``_partial_: true``) of the :class:`EvaluationSuite` used for validation and
            test; the default has reconstruction, temporal and colour metrics but no feature backbone.
        descriptor_model: a keypoint detector (``motionlab.models.load_model(path, component="kp_detector")``) for
            descriptor inputs and the descriptor alignment loss.
        descriptor_lr_scale: 0 keeps ``descriptor_model`` frozen; above 0 it is fine-tuned with the Animator, end to end
            through the descriptor inputs, at this fraction of the optimiser's learning rate (batch-norm statistics
            stay as loaded). Checkpoints then hold the fine-tuned detector, which inference uses. Needs descriptors
            detected on every batch, not cached ones.
    """

    task_name = "animator"

    def __init__(self, net: nn.Module, loss: AnimatorLoss, optimizer: Callable, scheduler: Callable | None = None,
                 diagnostics_every_n_steps: int = 50, metrics: Callable[[], EvaluationSuite] | None = None,
                 descriptor_model: nn.Module | None = None, descriptor_lr_scale: float = 0.0):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        self.net = net
        if descriptor_lr_scale < 0:
            raise InputError(f"descriptor_lr_scale must be >= 0 (0: frozen descriptor model), got {descriptor_lr_scale}")
        if descriptor_lr_scale > 0 and not getattr(net, "num_descriptors", 0):
            raise InputError("descriptor_lr_scale > 0 fine-tunes the descriptor model through the net's descriptor inputs, "
                             "but this net takes none (num_descriptors = 0)")
        if descriptor_lr_scale > 0 and getattr(loss, "alignment_mode", "blurred_residual") != "blurred_residual":
            raise InputError(f"descriptor_lr_scale > 0 with loss.alignment_mode={loss.alignment_mode}: a trained detector would meet "
                             "a descriptor-based alignment term by moving its keypoints; use alignment_mode=blurred_residual")
        self.descriptor_lr_scale = descriptor_lr_scale
        self.add_helper("descriptor_model", descriptor_model, trainable=descriptor_lr_scale > 0)
        if getattr(net, "num_descriptors", 0) and descriptor_model is None:
            raise InputError("the Animator net takes descriptors (num_descriptors > 0) but no descriptor_model is configured")
        self.loss = loss.bind(animate=self.animate, descriptor_model=self.descriptor_model)
        self.diagnostics_every_n_steps = diagnostics_every_n_steps
        factory = metrics or EvaluationSuite
        self.eval_suites = nn.ModuleDict({split: factory() for split in ("val", "test")})

    def animate(self, portrait: torch.Tensor, driver: torch.Tensor, portrait_descriptors: torch.Tensor | None = None,
                driver_descriptors: torch.Tensor | None = None, strength: float = 1.0) -> dict[str, torch.Tensor]:
        return animate(self.net, self.descriptor_model, portrait, driver, portrait_descriptors, driver_descriptors, strength)

    def forward(self, portrait: torch.Tensor, driver: torch.Tensor, strength: float = 1.0) -> dict[str, torch.Tensor]:
        return self.animate(portrait, driver, strength=strength)

    def parameter_groups(self) -> dict[str, list[dict]]:
        if not self.descriptor_lr_scale:
            return super().parameter_groups()
        detector = list(self.descriptor_model.parameters())
        own = {id(p) for p in detector}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in own]
        return {next(iter(self.optimizer_factories)): [{"params": rest}, {"params": detector, "lr_scale": self.descriptor_lr_scale}]}

    def training_step(self, batch: AnimationBatch, batch_idx: int) -> torch.Tensor:
        if self.descriptor_lr_scale and "portrait_descriptors" in batch:
            raise InputError("descriptor_lr_scale > 0 fine-tunes the descriptor model on the batch's images, but the data "
                             "serves cached descriptors (data.descriptor_ckpt): set data.descriptor_ckpt=null")
        outputs = self.animate(batch["portrait"], batch["driver"], batch.get("portrait_descriptors"), batch.get("driver_descriptors"))
        terms = self.loss(outputs, batch)
        self.log_terms("train", terms)
        if self.global_step % self.diagnostics_every_n_steps == 0:
            self.log("train/motion_smoothness", self._motion_smoothness(batch, outputs["image"]))
            if "driver_descriptors" in outputs:
                # mean keypoint motion, portrait to driver (normalised units): a fine-tuned detector that stops
                # telling frames apart shows here as a fall towards 0
                motion = (outputs["driver_descriptors"] - outputs["portrait_descriptors"]).detach().norm(dim=-1).mean()
                self.log("train/descriptor_motion", motion)
        return terms["total"]

    @torch.no_grad()
    def _motion_smoothness(self, batch: dict, generated: torch.Tensor) -> torch.Tensor:
        """Mean |(G(t') - G(t)) - (D(t') - D(t))|: does the output change between neighbouring driver frames as the driver does?"""
        generated_next = self.animate(batch["portrait"], batch["driver_next"], batch.get("portrait_descriptors"), batch.get("driver_next_descriptors"))["image"]
        return ((generated_next - generated) - (batch["driver_next"] - batch["driver"])).abs().mean()

    def _evaluation_step(self, batch: AnimationBatch, split: str) -> None:
        # A driver frame and its neighbour make a two-frame clip, enough for the temporal metrics.
        portrait = batch["portrait"]
        driver = torch.stack([batch["driver"], batch["driver_next"]], dim=1)
        descriptors = [batch.get("driver_descriptors"), batch.get("driver_next_descriptors")]
        generated = torch.stack(
            [self.animate(portrait, driver[:, i], batch.get("portrait_descriptors"), descriptors[i])["image"].clamp(0.0, 1.0) for i in range(2)], dim=1
        )
        self.evaluation_suite(split).update(portrait, driver, generated)

    def _evaluation_epoch_end(self, split: str) -> None:
        values = self.evaluation_suite(split).compute()
        self.evaluation_suite(split).reset()
        self.log_evaluation(split, values, prog_bar=("l1",))


