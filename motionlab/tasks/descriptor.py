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
from motionlab.geometry import Keypoints, relative_motion
from motionlab.losses.descriptor import AVDLoss, DescriptorLoss
from motionlab.metrics.descriptor import fit_keypoint_regressor, keypoint_regression_error
from motionlab.metrics.suite import EvaluationSuite
from motionlab.tasks.base import MotionlabTask
from motionlab.tasks.predictor import AnimationPredictor, register_predictor
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


@register_predictor
class DescriptorPredictor(AnimationPredictor):
    """A keypoint model (a descriptor checkpoint, a FOMM or TPSMM release file) at inference.

    With ``relative`` the driver's keypoint motion since the clip's first frame is applied to the portrait's
    keypoints (:func:`motionlab.geometry.relative_motion`), scaled by the ratio of keypoint hull areas with
    ``adapt_movement_scale`` (unset: what the model's release does, on for TPSMM's ``relative`` mode, off for FOMM's
    demo default); without it the driver's keypoints are used as they are (TPSMM's ``standard`` mode). ``avd`` takes
    the keypoints from the model's AVD network instead (TPSMM's ``avd`` mode: the portrait's identity code and the
    driver frame's pose code, for drivers whose shape differs from the portrait's).

    What depends only on the portrait and the clip's first frame (their keypoints, the generator's encoding of the
    portrait) is computed once per pair of tensors and reused while the same ``portrait`` / ``initial`` objects come
    back, batch after batch of a clip (the release loops re-encode the source for every frame). ``detect_generated``
    also runs the detector on the generated frames (``generated_keypoints``, for keypoint overlays and the
    motion-agreement trace); without it that key is absent and each frame costs one detector pass less.
    """

    families = ("keypoint_animator",)
    options = {"relative": True, "adapt_movement_scale": None, "avd": False}

    def __init__(self, net: nn.Module, relative: bool = True, adapt_movement_scale: bool = False, avd: bool = False,
                 detect_generated: bool = True):
        super().__init__(net=net)
        if avd and getattr(net, "avd_network", None) is None:
            raise InputError(f"predictor.avd=true needs a model with an AVD network (TPSMM); {net.model_info.name} has none")
        self.relative, self.adapt_movement_scale, self.avd, self.detect_generated = relative, adapt_movement_scale, avd, detect_generated
        self._prepared: tuple | None = None

    @classmethod
    def from_models(cls, models: dict[str, nn.Module], settings: dict, relative: bool = True, adapt_movement_scale: bool | None = None,
                    avd: bool = False, detect_generated: bool = True, **options) -> "DescriptorPredictor":
        if adapt_movement_scale is None:
            adapt_movement_scale = bool(settings.get("adapt_movement_scale", False))
        return cls(models["net"], relative=relative, adapt_movement_scale=adapt_movement_scale, avd=avd, detect_generated=detect_generated)

    @property
    def batch_size(self) -> int:
        # measured on two CPU cores with the FOMM vox-256 networks at 256 px: batch 1 runs 1.6x the frames/s of batch 4
        # (the dense-motion hourglass is memory-bound, and the Winograd convolutions gain nothing from batching);
        # small descriptor models at 64 px gain from batches
        return 1 if self.image_size >= 256 else 16

    def _portrait_state(self, portrait: torch.Tensor, initial: torch.Tensor) -> tuple[Keypoints, Keypoints, list[torch.Tensor]]:
        """(portrait keypoints, first-frame keypoints, portrait features), cached for the last pair of tensors."""
        if self._prepared is None or self._prepared[0] is not portrait or self._prepared[1] is not initial:
            detector = self.net.kp_detector
            self._prepared = (portrait, initial, detector(portrait), detector(initial), self.net.encode_source(portrait))
        return self._prepared[2:]

    def transferred_keypoints(self, kp_source: Keypoints, kp_driving: Keypoints, kp_initial: Keypoints) -> Keypoints:
        """The keypoints the portrait is animated to, by the options (AVD network, relative or absolute motion)."""
        if self.avd:
            return self.net.avd_network(kp_source, kp_driving)
        return relative_motion(kp_source, kp_driving, kp_initial, relative_movement=self.relative, adapt_movement_scale=self.adapt_movement_scale)

    @torch.no_grad()
    def __call__(self, portrait: torch.Tensor, driver: torch.Tensor, initial: torch.Tensor, context: dict | None = None) -> dict:
        n = driver.shape[0]
        kp_source, kp_initial, features = self._portrait_state(portrait, initial)
        kp_source, kp_initial = kp_source.expand(n), kp_initial.expand(n)
        kp_driving = self.net.kp_detector(driver)
        kp_motion = self.transferred_keypoints(kp_source, kp_driving, kp_initial)
        generated = self.net.animate(portrait.expand(n, -1, -1, -1), kp_driving=kp_motion, kp_source=kp_source,
                                     source_features=features)["prediction"].clamp(0, 1)
        out = {"generated": generated, "driver_keypoints": kp_driving}
        if self.detect_generated:
            out["generated_keypoints"] = self.net.kp_detector(generated)
        return out
