"""LivePortrait: the training its release left out (stage 1: the base networks; stage 2: stitching on a frozen base)
and its inference (the predictor): a face crop of the portrait, relative driving of 3-D implicit keypoints,
stitching, eye / lip retargeting from dlib landmarks, and the result pasted back into the portrait."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from motionlab.data.batches import AnimationBatch, RetargetingBatch
from motionlab.data.images import to_uint8
from motionlab.geometry import Keypoints
from motionlab.losses.base import TaskLoss
from motionlab.metrics.suite import EvaluationSuite
from motionlab.models.liveportrait import LivePortrait, LivePortraitDiscriminator
from motionlab.tasks.base import MotionlabTask
from motionlab.tasks.liveportrait_predictor import resized
from motionlab.utils.errors import InputError

# stage 2's choice -> the MLP of the stitching / retargeting module it trains (the release's names)
RETARGETING_MLPS = {"stitching": "retarget_shoulder", "eyes": "retarget_eye", "lips": "retarget_mouth"}


class LivePortraitTask(MotionlabTask):
    """Trains a :class:`LivePortrait` model.

    ``stage=1`` trains the appearance extractor, motion extractor, warping module and generator by reconstructing a
    driver frame from the portrait of the same clip (:class:`motionlab.losses.liveportrait.LivePortraitLoss`).
    ``stage=2`` freezes them (start it with ``init_ckpt=<stage-1 checkpoint>``) and trains one MLP of the stitching /
    retargeting module, ``retargeting``: ``stitching`` (the portrait driven by another identity's frame must stay
    itself outside the face, :class:`~motionlab.losses.liveportrait.StitchingLoss`), or ``eyes`` / ``lips`` (the
    portrait's keypoints moved by the MLP's offset for a wanted openness must render the portrait re-rendered with it,
    :class:`~motionlab.losses.liveportrait.RetargetingLoss`, on :mod:`motionlab.data.retargeting` pairs). Frames
    larger than the network's input size are resized for it (a 512 px target for a 256 px input, as in the paper);
    the output must come out at the frames' size. Validation scores reconstruction (L1 against copying the portrait)
    in stage 1, the trained MLP's error in stage 2.

    With a ``discriminator`` (stage 1's GAN terms) it trains under ``discriminator_optimizer``: every batch takes a
    generator step, then a critic step (the loss's ``discriminator`` phase on the same results), each clipped to
    ``gradient_clip`` (manual optimisation, so set ``trainer.gradient_clip_val=null``); Lightning counts both steps in
    ``trainer.global_step``.
    """

    task_name = "liveportrait"

    def __init__(self, net: LivePortrait, loss: TaskLoss, optimizer: Callable, scheduler: Callable | None = None, stage: int = 1,
                 discriminator: LivePortraitDiscriminator | None = None, discriminator_optimizer: Callable | None = None,
                 gradient_clip: float | None = 1.0, retargeting: str = "stitching"):
        if stage not in (1, 2):
            raise InputError(f"model.stage must be 1 (base networks) or 2 (stitching / retargeting), got {stage}")
        if retargeting not in RETARGETING_MLPS:
            raise InputError(f"model.retargeting must be one of {sorted(RETARGETING_MLPS)}, got {retargeting!r}")
        if (discriminator is None) != (discriminator_optimizer is None):
            raise InputError("model.discriminator and model.discriminator_optimizer go together: give both (stage 1's GAN) or neither")
        if discriminator is not None and stage != 1:
            raise InputError("model.discriminator trains with stage 1 only; set model.discriminator=null for stage 2")
        optimizers = {"net": optimizer, "discriminator": discriminator_optimizer} if discriminator is not None else optimizer
        super().__init__(optimizer=optimizers, scheduler={"net": scheduler} if discriminator is not None and scheduler is not None else scheduler)
        self.net, self.stage, self.discriminator, self.gradient_clip, self.retargeting = net, stage, discriminator, gradient_clip, retargeting
        self.loss = loss.bind(keypoints_2d=self.keypoints_2d, discriminator=discriminator)
        self.input_size = net.model_info.input_size[0]
        if stage == 2:
            net.requires_grad_(False)
            getattr(net.stitching_retargeting_module, RETARGETING_MLPS[retargeting]).requires_grad_(True)
            self._freeze_base_statistics()
        self.eval_suites = nn.ModuleDict({split: EvaluationSuite() for split in ("val", "test")})

    def _freeze_base_statistics(self) -> None:
        """Stage 2: the frozen base runs in eval mode, so its batch norms keep the statistics it was trained with.
        Lightning keeps each module's mode across validation and never calls ``train()`` on the task itself, so this
        is set once here; :meth:`train` sets it again after anything that does call it (the preview callback)."""
        for name in ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator"):
            getattr(self.net, name).eval()

    def train(self, mode: bool = True) -> "LivePortraitTask":
        super().train(mode)
        if self.stage == 2:
            self._freeze_base_statistics()
        return self

    def network_input(self, images: torch.Tensor) -> torch.Tensor:
        return resized(images, self.input_size)

    def keypoints_2d(self, images: torch.Tensor) -> Keypoints:
        """(x, y) of the posed keypoints of network-input images, with their depth."""
        posed = self.net.keypoints(self.net.motion_extractor.motion(images))
        return Keypoints(posed[..., :2], size=tuple(images.shape[-2:]), depth=posed[..., 2])

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        """Stage 1: the driver reconstructed from the source. Stage 2: the source driven by ``driving`` with stitching."""
        source_input, driver_input = self.network_input(source), self.network_input(driving)
        if self.stage == 1:
            return {**self.net(source_input, driver_input), "driver_input": driver_input}
        net = self.net
        with torch.no_grad():
            motion_source, motion_driving = net.motion_extractor.motion(source_input), net.motion_extractor.motion(driver_input)
            x_source = net.keypoints(motion_source)
            x_driving = net.keypoints(motion_driving, canonical=motion_source["canonical"])
            volume = net.appearance_feature_extractor(source_input)
        stitched = net.stitching_retargeting_module.stitch(x_source, x_driving)
        image = net.render(volume, x_source, stitched)["image"]
        return {"image": image, "offset": stitched - x_driving, "source": source}

    def retarget(self, source: torch.Tensor, ratios: torch.Tensor, unmoved: bool = False) -> dict:
        """Stage 2, eyes / lips: ``source`` rendered with its keypoints moved by the retargeting offset for ``ratios``
        (:meth:`~motionlab.models.liveportrait.StitchingRetargeting.retarget_eyes` / ``retarget_lips``); with
        ``unmoved``, also rendered without it."""
        net, source_input = self.net, self.network_input(source)
        with torch.no_grad():
            x_source = net.keypoints(net.motion_extractor.motion(source_input))
            volume = net.appearance_feature_extractor(source_input)
        module = net.stitching_retargeting_module
        offset = (module.retarget_eyes if self.retargeting == "eyes" else module.retarget_lips)(x_source, ratios)
        outputs = {"image": net.render(volume, x_source, x_source + offset)["image"], "offset": offset}
        if unmoved:
            with torch.no_grad():
                outputs["unmoved"] = net.render(volume, x_source, x_source)["image"]
        return outputs

    def _stage2_terms(self, batch: dict, evaluation: bool = False) -> dict[str, torch.Tensor]:
        if self.retargeting == "stitching":
            return self.loss(self(*self._pairs(batch)), batch)
        return self.loss(self.retarget(batch["portrait"], batch["ratios"], unmoved=evaluation), batch)

    @torch.no_grad()
    def preview(self, dataset, num_samples: int) -> tuple[np.ndarray, str] | None:
        """Retargeting's preview rows (portrait | target | retargeted | unmoved, uint8); other modes use the
        callback's portrait | driver | generated layout (``None``)."""
        if self.stage == 1 or self.retargeting == "stitching":
            return None
        samples = [dataset[int(i)] for i in np.linspace(0, len(dataset) - 1, num_samples).round()]
        source = torch.stack([s["portrait"] for s in samples]).to(self.device)
        target = torch.stack([s["target"] for s in samples]).to(self.device)
        outputs = self.retarget(source, torch.stack([s["ratios"] for s in samples]).to(self.device), unmoved=True)
        columns = [resized(images, target.shape[-1]) for images in (source, target, outputs["image"], outputs["unmoved"])]
        rows = to_uint8(torch.cat(columns, dim=-1))
        return np.concatenate(list(rows), axis=0), f"portrait | target {self.retargeting} | retargeted | unmoved"

    def _check_output_size(self, image: torch.Tensor, target: torch.Tensor) -> None:
        if image.shape[-2:] != target.shape[-2:]:
            raise InputError(f"the generator renders {tuple(image.shape[-2:])} from {self.input_size} px inputs but the frames are "
                             f"{tuple(target.shape[-2:])}: set data.image_size to the output size (or model.net.spade_generator.upscale)")

    def _pairs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(portraits, drivers): stage 2 drives each portrait with the next sample's frame (another identity when the
        batch mixes them, which is where stitching matters)."""
        return (batch["portrait"], batch["driver"]) if self.stage == 1 else (batch["portrait"], batch["driver"].roll(1, dims=0))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"net": [p for p in self.net.parameters() if p.requires_grad]}
        if self.discriminator is not None:
            groups["discriminator"] = list(self.discriminator.parameters())
        return groups

    def training_step(self, batch: AnimationBatch | RetargetingBatch, batch_idx: int) -> torch.Tensor | None:
        if self.stage == 2:
            terms = self._stage2_terms(batch)
            self.log_terms("train", terms)
            return terms["total"]
        source, driving = self._pairs(batch)
        outputs = self(source, driving)
        self._check_output_size(outputs["image"], batch["driver"])
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)  # the generator's step moves the networks only
        terms = self.loss(outputs, batch)
        self.log_terms("train", terms)
        if self.discriminator is None:
            return terms["total"]
        self.manual_step("net", terms["total"], self.gradient_clip)
        self.discriminator.requires_grad_(True)
        critic = self.loss(outputs, batch, phase="discriminator")
        self.log_terms("train", {f"critic_{name}": value for name, value in critic.items()})
        self.manual_step("discriminator", critic["total"], self.gradient_clip)
        return None

    def _evaluation_step(self, batch: AnimationBatch | RetargetingBatch, split: str) -> None:
        if self.stage == 2:
            terms = self._stage2_terms(batch, evaluation=True)
            for name, value in terms.items():
                if name.endswith("_error"):
                    self.log(f"{split}/{name}", value, prog_bar=True, batch_size=len(batch["portrait"]), sync_dist=True)
            return
        source = batch["portrait"]
        driver = torch.stack([batch["driver"], batch["driver_next"]], dim=1)
        generated = torch.stack([self(source, driver[:, i])["image"].clamp(0, 1) for i in range(2)], dim=1)
        self._check_output_size(generated[:, 0], batch["driver"])
        self.evaluation_suite(split).update(source, driver, generated)

    def _evaluation_epoch_end(self, split: str) -> None:
        if self.stage == 2:
            return
        values = self.evaluation_suite(split).compute()
        self.evaluation_suite(split).reset()
        self.log_evaluation(split, values, prog_bar=("l1", "l1_ratio_to_copy"))










