"""Descriptor agreement: keypoint distances between generated and driver frames, identity distance,
and the keypoint-to-ground-truth protocol for unsupervised landmarks."""

from __future__ import annotations

import numpy as np
import torch

from motionlab.metrics.base import MeanState


def _check_keypoints(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"{name} expects two (N, K, 2) keypoint tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


class AverageKeypointDistance(MeanState):
    """AKD: mean L2 distance between corresponding keypoints of generated and driver frames.

    ``update(generated, driver)`` takes (N, K, 2) keypoints in pixels (detect them with the same
    descriptor model on both); optional (N, K) ``visible`` masks restrict the mean to keypoints found
    in both, as in FOMM's evaluation.
    """

    def update(self, generated: torch.Tensor, driver: torch.Tensor, visible: torch.Tensor | None = None) -> None:
        _check_keypoints("AverageKeypointDistance", generated, driver)
        self._add((generated - driver).norm(dim=-1), visible)


class MissingKeypointRate(MeanState):
    """MKR: fraction of keypoints detected in the driver frame (confidence >= threshold) that are not
    detected in the generated frame. ``update`` takes (N, K) confidences from a detector that reports them."""

    higher_is_better = False

    def __init__(self, threshold: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold

    def update(self, generated_confidence: torch.Tensor, driver_confidence: torch.Tensor) -> None:
        if generated_confidence.shape != driver_confidence.shape:
            raise ValueError(f"MissingKeypointRate: confidence shapes differ: {tuple(generated_confidence.shape)} vs {tuple(driver_confidence.shape)}")
        present = driver_confidence >= self.threshold
        self._add((generated_confidence < self.threshold).to(torch.float64), present)


class IdentityDistance(MeanState):
    """AED-style identity distance between embeddings of generated frames and of the source portrait.

    ``squared=False`` (default) is the L2 distance; ``squared=True`` is the squared L2 that FOMM's
    pose-evaluation scripts report as AED. ``update`` takes (N, D) embeddings from one identity encoder.
    """

    def __init__(self, squared: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.squared = squared

    def update(self, generated: torch.Tensor, source: torch.Tensor) -> None:
        if generated.shape != source.shape or generated.ndim != 2:
            raise ValueError(f"IdentityDistance expects two (N, D) embeddings of one shape, got {tuple(generated.shape)} and {tuple(source.shape)}")
        distance = (generated.double() - source.double()).norm(dim=-1)
        self._add(distance.square() if self.squared else distance)


def fit_keypoint_regressor(predicted: np.ndarray, ground_truth: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Least-squares linear map (with bias) from (N, K, 2) learned keypoints to (N, G, 2) ground truth.

    The standard protocol for unsupervised landmarks: fit on training identities, measure on held-out
    ones with :func:`keypoint_regression_error`. Returns the (2K + 1, 2G) weight matrix.
    """
    x = np.concatenate([predicted.reshape(len(predicted), -1), np.ones((len(predicted), 1))], axis=1)
    y = ground_truth.reshape(len(ground_truth), -1)
    gram = x.T @ x + ridge * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ y)


def keypoint_regression_error(weights: np.ndarray, predicted: np.ndarray, ground_truth: np.ndarray, image_size: float) -> float:
    """Mean L2 error of regressed keypoints against ground truth, in % of the image size."""
    x = np.concatenate([predicted.reshape(len(predicted), -1), np.ones((len(predicted), 1))], axis=1)
    regressed = (x @ weights).reshape(ground_truth.shape)
    return float(np.linalg.norm(regressed - ground_truth, axis=-1).mean() / image_size * 100.0)
