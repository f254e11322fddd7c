"""Unsupervised motion descriptors (FOMM-style): keypoints learnt by reconstructing the driver frame
from the source through the keypoint-driven generator, regularised by equivariance under random
affine + thin-plate-spline warps. No keypoint labels are used for training; the toy world's ground
truth only scores the result (keypoint-to-GT error after a linear regression, the standard protocol).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from motionlab.data.batches import AnimationBatch
from motionlab.losses.descriptor import AVDLoss, DescriptorLoss
from motionlab.metrics.descriptor import fit_keypoint_regressor, keypoint_regression_error
from motionlab.metrics.suite import EvaluationSuite
from motionlab.tasks.base import MotionlabTask
from motionlab.utils.errors import InputError


class DescriptorTask(MotionlabTask):
    """Trains a keypoint animator (:class:`~motionlab.models.fomm.FOMM`, or :class:`~motionlab.models.tpsmm.TPSMM`) without labels.

    Args:
        net: the FOMM or TPSMM model.
        loss: a :class:`DescriptorLoss` (perceptual pyramid + equivariance weights), or for ``stage=avd`` an
            :class:`~motionlab.losses.descriptor.AVDLoss`.
        regression_frames: frames per clip used by the keypoint-to-GT protocol at validation (0: off).
        stage: ``motion`` (the keypoints and the generator) or ``avd`` (TPSMM's second stage: its AVD network alone,
            the rest frozen, validated by ``avd_kp_error``).
    """

    task_name = "descriptor"

    def __init__(self, net: nn.Module, loss: DescriptorLoss | AVDLoss, optimizer: Callable, scheduler: Callable | None = None,
                 regression_frames: int = 8, stage: str = "motion"):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        if stage not in ("motion", "avd"):
            raise InputError(f"model.stage must be motion or avd, got {stage!r}")
        if stage == "avd" and (getattr(net, "avd_network", None) is None or not isinstance(loss, AVDLoss)):
            raise InputError("model.stage=avd trains a TPSMM model's AVD network with loss=tpsmm_avd; start it from a trained TPSMM "
                             "(init_ckpt=<a tpsmm run or vox.pth.tar>)")
        self.net, self.stage = net, stage
        if stage == "avd":  # the motion networks stay as trained
            net.requires_grad_(False)
            net.avd_network.requires_grad_(True)
        inpainting = getattr(net, "inpainting_network", None)
        self.loss = loss.bind(kp_detector=net.kp_detector, driver_maps=getattr(inpainting, "driver_maps", None),
                              bg_predictor=getattr(net, "bg_predictor", None), avd_network=getattr(net, "avd_network", None))
        self.regression_frames = regression_frames
        # AKD of generated vs driver frames through the detector being trained
        self.eval_suites = nn.ModuleDict({split: EvaluationSuite(keypoint_detector=net.kp_detector)
                                          for split in ("val", "test")})

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        return self.net(source, driving)

    def on_train_epoch_start(self) -> None:
        # TPSMM's dropout and background schedules run by epoch
        if hasattr(self.net, "set_epoch"):
            self.net.set_epoch(self.current_epoch)

    def train(self, mode: bool = True) -> "DescriptorTask":
        super().train(mode)
        if self.stage == "avd" and mode:  # frozen networks keep their batch-norm statistics
            self.net.eval()
            self.net.avd_network.train()
        return self

    def training_step(self, batch: AnimationBatch, batch_idx: int) -> torch.Tensor:
        terms = self.loss({} if self.stage == "avd" else self.net(batch["portrait"], batch["driver"]), batch)
        self.log_terms("train", terms)
        return terms["total"]

    def _evaluation_step(self, batch: AnimationBatch, split: str) -> None:
        source = batch["portrait"]
        if self.stage == "avd":  # how far the AVD network's keypoints lie from the driver frame's own
            kp_driving = self.net.kp_detector(batch["driver"])
            rebuilt = self.net.avd_network(self.net.kp_detector(source), kp_driving)
            self.log(f"{split}/avd_kp_error", (rebuilt.value - kp_driving.value).abs().mean(), batch_size=len(source), sync_dist=True)
        driver = torch.stack([batch["driver"], batch["driver_next"]], dim=1)
        generated = torch.stack([self.net(source, driver[:, i])["image"].clamp(0, 1) for i in range(2)], dim=1)
        self.evaluation_suite(split).update(source, driver, generated)

    def _evaluation_epoch_end(self, split: str) -> None:
        values = self.evaluation_suite(split).compute()
        self.evaluation_suite(split).reset()
        error = self.keypoint_regression_error(split)
        if error is not None:
            values["kp_to_gt_error_pct"] = torch.tensor(error)
        self.log_evaluation(split, values, prog_bar=("l1", "kp_to_gt_error_pct"))

    @torch.no_grad()
    def _detect_clips(self, dataset) -> tuple[np.ndarray, np.ndarray] | None:
        predicted, truth = [], []
        for clip_id in range(len(dataset.records)):
            gt = dataset.clip_keypoints(clip_id, self.regression_frames)
            if gt is None:
                return None
            _, frames = dataset.clip_frames(clip_id, self.regression_frames)
            predicted.append(self.net.kp_detector(frames.to(self.device)).to_pixels().value.cpu().numpy())
            truth.append(gt.numpy())
        return np.concatenate(predicted), np.concatenate(truth)

    def keypoint_regression_error(self, split: str) -> float | None:
        """Keypoint-to-GT error (% of image size): regress GT from learnt keypoints on train identities, test on ``split``'s."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        datasets = getattr(datamodule, "datasets", {})
        key = "test" if split == "val_best" else split  # val_best: the validation clips the datamodule stands in for test
        if self.regression_frames <= 0 or "train" not in datasets or key not in datasets:
            return None
        train, held_out = self._detect_clips(datasets["train"]), self._detect_clips(datasets[key])
        if train is None or held_out is None:
            return None
        weights = fit_keypoint_regressor(*train)
        return keypoint_regression_error(weights, *held_out, image_size=datasets[key].image_size or 1)


