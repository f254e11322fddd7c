"""Unsupervised motion descriptors (FOMM-style): keypoints learnt by reconstructing the driver frame
from the source through the keypoint-driven generator, regularised by equivariance under random
affine + thin-plate-spline warps. No keypoint labels are used for training; the toy world's ground
truth only scores the result (keypoint-to-GT error after a linear regression, the standard protocol).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motionlab.geometry import RandomAffineTPS, keypoints_to_pixels
from motionlab.losses.descriptor import DescriptorLoss, equivariance_losses
from motionlab.metrics.descriptor import AverageKeypointDistance, fit_keypoint_regressor, keypoint_regression_error
from motionlab.metrics.suite import EvaluationSuite
from motionlab.models.fomm import FOMM
from motionlab.tasks.base import MotionlabTask


class DescriptorTask(MotionlabTask):
    """Trains a :class:`FOMM` (keypoint detector + generator) without labels.

    Args:
        net: the FOMM model.
        loss: a :class:`DescriptorLoss` (perceptual pyramid + equivariance weights).
        regression_frames: frames per clip used by the keypoint-to-GT protocol at validation (0: off).
    """

    task_name = "descriptor"

    def __init__(self, net: FOMM, loss: DescriptorLoss, optimizer: Callable, scheduler: Callable | None = None, regression_frames: int = 8):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        self.net, self.loss = net, loss
        self.regression_frames = regression_frames
        self.eval_suites = nn.ModuleDict({split: EvaluationSuite(frechet=False, identity=False) for split in ("val", "test")})
        self.akd = nn.ModuleDict({split: AverageKeypointDistance() for split in ("val", "test")})

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        return self.net(source, driving)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        source, driving = batch["source"], batch["driver"]
        out = self.net(source, driving)
        terms = {"perceptual": self.loss.perceptual(out["image"], driving)}
        if self.loss.reconstruction_l1 > 0:
            terms["reconstruction"] = self.loss.reconstruction_l1 * F.l1_loss(out["image"], driving)
        if self.loss.equivariance_value > 0 or self.loss.equivariance_jacobian > 0:
            transform = RandomAffineTPS(driving.shape[0], self.loss.sigma_affine, self.loss.sigma_tps, self.loss.points_tps,
                                        device=driving.device, dtype=driving.dtype)
            value, jacobian = equivariance_losses(self.net.kp_detector, driving, out["kp_driving"], transform)
            terms["equivariance_value"] = self.loss.equivariance_value * value
            if jacobian is not None and self.loss.equivariance_jacobian > 0:
                terms["equivariance_jacobian"] = self.loss.equivariance_jacobian * jacobian
        total = sum(terms.values())
        self.log("train/loss", total, prog_bar=True)
        for name, value in terms.items():
            self.log(f"train/{name}", value)
        return total

    def _evaluation_step(self, batch: dict, split: str) -> None:
        source = batch["source"]
        driver = torch.stack([batch["driver"], batch["driver_next"]], dim=1)
        outputs = [self.net(source, driver[:, i]) for i in range(2)]
        generated = torch.stack([o["image"].clamp(0, 1) for o in outputs], dim=1)
        self.eval_suites[split].update(source, driver, generated)
        height, width = source.shape[-2:]
        kp_generated = self.net.kp_detector(outputs[0]["image"])["value"]
        self.akd[split].update(keypoints_to_pixels(kp_generated, height, width), keypoints_to_pixels(outputs[0]["kp_driving"]["value"], height, width))

    def _evaluation_epoch_end(self, split: str) -> None:
        values = self.eval_suites[split].compute()
        values["akd"] = self.akd[split].compute()
        self.eval_suites[split].reset()
        self.akd[split].reset()
        error = self.keypoint_regression_error(split)
        if error is not None:
            values["kp_to_gt_error_pct"] = torch.tensor(error)
        for name, value in values.items():
            self.log(f"{split}/{name}", value.float(), prog_bar=name in ("l1", "kp_to_gt_error_pct"))

    @torch.no_grad()
    def _detect_clips(self, dataset) -> tuple[np.ndarray, np.ndarray] | None:
        predicted, truth = [], []
        for clip_id in range(len(dataset.records)):
            gt = dataset.clip_keypoints(clip_id, self.regression_frames)
            if gt is None:
                return None
            _, frames = dataset.clip_frames(clip_id, self.regression_frames)
            kp = self.net.kp_detector(frames.to(self.device))["value"]
            predicted.append(keypoints_to_pixels(kp, *frames.shape[-2:]).cpu().numpy())
            truth.append(gt.numpy())
        return np.concatenate(predicted), np.concatenate(truth)

    def keypoint_regression_error(self, split: str) -> float | None:
        """Keypoint-to-GT error (% of image size): regress GT from learnt keypoints on train identities, test on ``split``'s."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        datasets = getattr(datamodule, "datasets", {})
        if self.regression_frames <= 0 or "train" not in datasets or split not in datasets:
            return None
        train, held_out = self._detect_clips(datasets["train"]), self._detect_clips(datasets[split])
        if train is None or held_out is None:
            return None
        weights = fit_keypoint_regressor(*train)
        return keypoint_regression_error(weights, *held_out, image_size=datasets[split].image_size or 1)
