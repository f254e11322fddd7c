"""Reconstruction metrics of generated frames against targets: torchmetrics' own (L1 is its ``MeanAbsoluteError``, the
mean over every pixel and channel) and the residual from the portrait."""

from __future__ import annotations

import torch
from torchmetrics import MeanAbsoluteError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from motionlab.metrics.base import MeanState


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
