"""The animator task's inference: AnimatorPredictor (importable without the training stack: no Lightning, no
torchmetrics)."""

from __future__ import annotations

import torch
from torch import nn

from motionlab.tasks.predictor import AnimationPredictor, register_predictor


def _descriptors(detector: nn.Module, images: torch.Tensor, given: torch.Tensor | None) -> torch.Tensor:
    # a frozen detector's weights need no gradient, so no graph is recorded for it
    return given if given is not None else detector(images).value


def animate(net: nn.Module, descriptor_model: nn.Module | None, portrait: torch.Tensor, driver: torch.Tensor,
            portrait_descriptors: torch.Tensor | None = None, driver_descriptors: torch.Tensor | None = None,
            strength: float = 1.0) -> dict[str, torch.Tensor]:
    """The Animator's forward as its task runs it: a net with ``num_descriptors`` gets the (B, K, 2) normalised
    keypoints of portrait and driver, given (cached) or detected by ``descriptor_model`` on the images as
    they are (augmented ones included); they are returned with the outputs as ``portrait_descriptors`` /
    ``driver_descriptors``."""
    if not getattr(net, "num_descriptors", 0):
        return net(portrait, driver, strength=strength)
    descriptors = {"portrait_descriptors": _descriptors(descriptor_model, portrait, portrait_descriptors),
                   "driver_descriptors": _descriptors(descriptor_model, driver, driver_descriptors)}
    return {**net(portrait, driver, strength=strength, **descriptors), **descriptors}


@register_predictor
class AnimatorPredictor(AnimationPredictor):
    """An Animator checkpoint at inference: re-renders the portrait in each driver frame's pose (descriptor
    inputs detected by the checkpoint's own descriptor model, as trained, when the net takes them)."""

    families = ("animator",)

    def __init__(self, net: nn.Module, descriptor_model: nn.Module | None = None):
        super().__init__(net=net, descriptor_model=descriptor_model)

    @classmethod
    def from_models(cls, models: dict[str, nn.Module], settings: dict, **options) -> "AnimatorPredictor":
        return cls(models["net"], models.get("descriptor_model"))

    @torch.no_grad()
    def __call__(self, portrait: torch.Tensor, driver: torch.Tensor, initial: torch.Tensor, context: dict | None = None) -> dict:
        portraits = portrait.expand(driver.shape[0], -1, -1, -1)
        return {"generated": animate(self.net, self.descriptor_model, portraits, driver)["image"].clamp(0, 1)}
