"""The one loss contract of motionlab.

A task's loss is called as ``loss(outputs, batch) -> {"total": scalar, <term>: scalar, ...}``: ``outputs`` is what
the task's networks produced for ``batch``. Terms that need networks beyond ``outputs`` (a frozen SyncNet, the
detector for equivariance, a second animation pass) call the ones the task handed over once with :meth:`bind`.
Every returned entry is logged by the task as ``<split>/<name>``; tasks never name terms. ``total`` is
``sum(weight * term)`` over the weighted terms (weights from ``conf/loss/``); other entries are diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class TaskLoss(nn.Module):
    """Base of the task losses: ``weights`` name the terms that enter ``total``."""

    def __init__(self, **weights: float):
        super().__init__()
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {value}")
        self.weights = weights
        # networks the terms call; a plain dict, so they are not registered (and saved) twice
        self.networks: dict[str, Callable] = {}

    def bind(self, **networks: Callable | None) -> "TaskLoss":
        """Hand over the networks (or bound methods) the terms call; ``None`` entries are left out."""
        self.networks.update({name: network for name, network in networks.items() if network is not None})
        return self

    def network(self, name: str) -> Callable:
        if name not in self.networks:
            raise RuntimeError(f"{type(self).__name__} needs the {name!r} network; the task binds it (loss.bind({name}=...))")
        return self.networks[name]

    def active(self, name: str) -> bool:
        return self.weights.get(name, 0.0) > 0

    def total(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``terms`` with ``total`` = the weighted sum of the weighted terms among them, in their order."""
        total = sum(self.weights[name] * value for name, value in terms.items() if name in self.weights)
        return {**terms, "total": total}

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError
