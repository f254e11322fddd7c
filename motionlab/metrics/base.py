"""Shared state layout of motionlab's averaged metrics."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class MeanState(Metric):
    """A (weighted) mean kept as a float64 sum and count, both summed across processes under DDP."""

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _add(self, values: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        values = values.double()
        if weights is None:
            self.total += values.sum()
            self.count += values.numel()
        else:
            weights = weights.double().expand_as(values)
            self.total += (values * weights).sum()
            self.count += weights.sum()

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1e-12)
