"""Reconstruction metrics of generated frames against targets."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from motionlab.metrics.base import MeanState


class MeanAbsoluteError(MeanState):
    """L1: mean absolute difference of (N, C, H, W) images."""

    def update(self, generated: torch.Tensor, target: torch.Tensor) -> None:
        if generated.shape != target.shape:
            raise ValueError(f"MeanAbsoluteError: shapes differ: {tuple(generated.shape)} vs {tuple(target.shape)}")
        self._add((generated - target).abs().flatten(1).mean(dim=1))


class ResidualMagnitude(MeanState):
    """Mean |generated - portrait|: how much the output departs from the still portrait (0 = a copy)."""

    higher_is_better = None

    def update(self, generated: torch.Tensor, portrait: torch.Tensor) -> None:
        self._add((generated - portrait).abs().flatten(1).mean(dim=1))


def reconstruction_metrics() -> MetricCollection:
    """L1, PSNR and SSIM of generated frames against targets, all in [0, 1] images."""
    return MetricCollection(
        {
            "l1": MeanAbsoluteError(),
            "psnr": PeakSignalNoiseRatio(data_range=1.0),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        }
    )
