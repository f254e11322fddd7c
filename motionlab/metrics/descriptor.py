"""Descriptor agreement: keypoint distances between generated and driver frames, and the keypoint-to-ground-truth
protocol for unsupervised landmarks."""

from __future__ import annotations

import numpy as np
import torch

from motionlab.geometry import Keypoints
from motionlab.metrics.base import MeanState


class AverageKeypointDistance(MeanState):
    """AKD: mean L2 distance, in pixels, between corresponding keypoints of generated and driver frames.

    ``update(generated, driver)`` takes the :class:`Keypoints` a detector returned for each (the same detector on
    both; any convention); optional (N, K) ``visible`` masks restrict the mean to keypoints found in both, as in
    FOMM's evaluation.
    """

    def update(self, generated: Keypoints, driver: Keypoints, visible: torch.Tensor | None = None) -> None:
        generated, driver = generated.to_pixels().value, driver.to_pixels().value
        if generated.shape != driver.shape:
            raise ValueError(f"AverageKeypointDistance: keypoints of one shape expected, got {tuple(generated.shape)} and {tuple(driver.shape)}")
        self._add((generated - driver).norm(dim=-1), visible)


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
