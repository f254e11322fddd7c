"""LivePortrait: the training its release left out (stage 1: the base networks; stage 2: stitching on a frozen base)
and its inference (the predictor): a face crop of the portrait, relative driving of 3-D implicit keypoints,
stitching, eye / lip retargeting from dlib landmarks, and the result pasted back into the portrait."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motionlab.data.batches import AnimationBatch, RetargetingBatch
from motionlab.data.datasets import frames_to_tensor
from motionlab.data.images import to_uint8
from motionlab.geometry import Keypoints
from motionlab.geometry.head_pose import relative_driving
from motionlab.geometry.landmarks import eye_openness, face_crop_matrix, lip_openness
from motionlab.losses.base import TaskLoss
from motionlab.metrics.suite import EvaluationSuite
from motionlab.models.liveportrait import LivePortrait, LivePortraitDiscriminator
from motionlab.tasks.base import MotionlabTask
from motionlab.tasks.predictor import AnimationPredictor, register_predictor
from motionlab.utils.errors import InputError


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) images at (size, size) (antialiased bilinear), or as they are when they already are."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


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
        self.eval_suites[split].update(source, driver, generated)

    def _evaluation_epoch_end(self, split: str) -> None:
        if self.stage == 2:
            return
        values = self.eval_suites[split].compute()
        self.eval_suites[split].reset()
        self.log_evaluation(split, values, prog_bar=("l1", "l1_ratio_to_copy"))


@dataclass
class PortraitCrop:
    """Where the face crop of a portrait came from: ``matrix`` (2, 3) maps the portrait's pixels to the crop's
    (``crop_size`` square), ``image`` is the portrait; eye (1, 2) and lip (1, 1) openness of its face."""

    matrix: np.ndarray
    crop_size: int
    image: np.ndarray
    eyes: np.ndarray
    lips: np.ndarray


def feathered_mask(size: int, feather: float = 0.1) -> np.ndarray:
    """(size, size) float32 mask, 1 inside and falling smoothly to 0 over the outer ``feather`` of the side."""
    ramp = np.minimum(np.arange(size), np.arange(size)[::-1]) / max(feather * size, 1.0)
    edge = np.clip(np.minimum(ramp[:, None], ramp[None, :]), 0.0, 1.0)
    return (edge * edge * (3.0 - 2.0 * edge)).astype(np.float32)


def paste_into_portrait(frame: np.ndarray, crop: PortraitCrop) -> np.ndarray:
    """A generated crop (S', S', 3) uint8 warped back into the portrait and blended through a feathered mask."""
    size = frame.shape[0]
    matrix = crop.matrix * np.array([[size / crop.crop_size], [size / crop.crop_size]])
    inverse = cv2.invertAffineTransform(matrix)
    height, width = crop.image.shape[:2]
    warped = cv2.warpAffine(frame, inverse, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpAffine(feathered_mask(size), inverse, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    return (crop.image * (1.0 - mask) + warped * mask).round().clip(0, 255).astype(np.uint8)


def retargeted_keypoints(x_source: torch.Tensor, x_driving: torch.Tensor, delta: torch.Tensor, relative: bool) -> torch.Tensor:
    """The keypoints a frame renders with under eye / lip retargeting, as the release's pipeline sets them: with
    relative motion the retargeting offset ``delta`` is applied to the *source's* keypoints (``x_s + delta``: the
    driver's motion is left out, retargeting alone moves the face), with absolute motion to the driver's
    (``x_d + delta``). All (N, K, 3); stitching, if on, follows."""
    return (x_source if relative else x_driving) + delta


@register_predictor
class LivePortraitPredictor(AnimationPredictor):
    """LivePortrait's inference (a release folder or a LivePortraitTask checkpoint).

    The portrait is cropped around its face (dlib's 68 points, :func:`motionlab.geometry.landmarks.face_crop_matrix`)
    unless ``crop_portrait`` is off; driver frames are used as given (LivePortrait expects face-centred drivers)
    unless ``crop_driver``. Each frame's keypoints move the portrait's by the driver's motion since its first frame
    (``relative``; else the driver's pose and expression are used as they are). Eye / lip retargeting set the
    openness measured on the driver's landmarks as the release does (:func:`retargeted_keypoints`: with relative motion
    the offset moves the portrait's own keypoints and replaces the driver's motion), and stitching keeps the face
    attached to the portrait. The result
    (the generator's size, 512 for the release) is pasted back into the portrait with a feathered mask
    (``paste_back``), else returned as the crop.

    :meth:`prepare_portrait` returns the portrait's crop and :meth:`prepare_driver` the driver frames' landmarks as
    their contexts, which :meth:`__call__` (retargeting) and :meth:`finish` (paste-back) take: nothing is kept between
    calls.
    """

    families = ("liveportrait",)
    options = {"relative": True, "stitching": True, "eye_retargeting": False, "lip_retargeting": False, "crop_portrait": True,
               "crop_driver": False, "paste_back": True, "crop_scale": 2.3, "render_batch": 4}

    def __init__(self, net: LivePortrait, relative: bool = True, stitching: bool = True, eye_retargeting: bool = False,
                 lip_retargeting: bool = False, crop_portrait: bool = True, crop_driver: bool = False, paste_back: bool = True,
                 crop_scale: float = 2.3, render_batch: int = 4):
        super().__init__(net=net)
        self.relative, self.stitching = relative, stitching
        self.eye_retargeting, self.lip_retargeting = eye_retargeting, lip_retargeting
        self.crop_portrait, self.crop_driver, self.paste_back, self.crop_scale = crop_portrait, crop_driver, paste_back, crop_scale
        self.render_batch = render_batch
        self._landmarker = None

    @classmethod
    def from_models(cls, models: dict[str, nn.Module], settings: dict, relative: bool = True, **options) -> "LivePortraitPredictor":
        # the caller's options for other predictors (whether to detect keypoints on the output, say) pass by
        return cls(models["net"], relative=relative, **{key: value for key, value in options.items() if key in cls.options})

    def _landmarks(self, image: np.ndarray, what: str) -> np.ndarray:
        if self._landmarker is None:
            from motionlab.data.landmarks import DlibLandmarks

            self._landmarker = DlibLandmarks()
        points = self._landmarker(image)
        if points is None:
            raise InputError(f"no face found in the {what} by dlib; LivePortrait crops around a face "
                             f"(give predictor.crop_{what}=false to use the whole image)")
        return points

    def _face_crop(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(crop matrix, the S x S face crop, the landmarks in it) of an image and its (68, 2) landmarks."""
        size = self.image_size
        matrix = face_crop_matrix(points, size, self.crop_scale)
        cropped = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return matrix, cropped, points @ matrix[:, :2].T + matrix[:, 2]

    def prepare_portrait(self, image: np.ndarray) -> tuple[torch.Tensor, dict]:
        """The portrait cropped around its face (context ``crop``: a :class:`PortraitCrop`, None without cropping)."""
        size = self.image_size
        if not self.crop_portrait:
            return frames_to_tensor(image[None], size), {"crop": None}
        matrix, cropped, cropped_points = self._face_crop(image, self._landmarks(image, "portrait"))
        crop = PortraitCrop(matrix, size, image, eye_openness(cropped_points[None]), lip_openness(cropped_points[None])[:, None])
        return frames_to_tensor(cropped[None], size), {"crop": crop}

    def prepare_driver(self, frames: np.ndarray) -> tuple[torch.Tensor, dict]:
        """The driver frames, each cropped around its face with ``crop_driver`` (context ``driver_landmarks``: (N, 68, 2)
        in the frames returned, where retargeting or cropping needs them)."""
        size = self.image_size
        needs_landmarks = self.crop_driver or self.eye_retargeting or self.lip_retargeting
        if not needs_landmarks:
            return frames_to_tensor(frames, size), {"driver_landmarks": None}
        crops, landmarks = [], []
        for frame in frames:
            points = self._landmarks(frame, "driver")
            if self.crop_driver:
                _, frame, points = self._face_crop(frame, points)
            crops.append(frame)
            landmarks.append(points)
        return frames_to_tensor(np.stack(crops), size), {"driver_landmarks": np.stack(landmarks)}

    def finish(self, frames: np.ndarray, context: dict) -> np.ndarray:
        """Generated (N, S', S', 3) uint8 crops -> the frames to write: pasted back into the portrait when it was cropped."""
        crop = context.get("crop")
        if not self.paste_back or crop is None:
            return frames
        return np.stack([paste_into_portrait(frame, crop) for frame in frames])

    def _retargeting(self, x_source: torch.Tensor, n: int, context: dict) -> torch.Tensor:
        """The eye / lip retargeting offsets (N, K, 3) for driver frames whose landmarks ``context`` holds."""
        delta = torch.zeros(n, *x_source.shape[1:], device=self.device)
        if not (self.eye_retargeting or self.lip_retargeting):
            return delta
        crop, driver_landmarks = context.get("crop"), context.get("driver_landmarks")
        if driver_landmarks is None or len(driver_landmarks) != n or crop is None:
            raise InputError("eye / lip retargeting needs the portrait's and the driver's landmarks: run through prepare_portrait / "
                             "prepare_driver (motionlab-animate does) with crop_portrait on")
        module = self.net.stitching_retargeting_module
        source = x_source.expand(n, -1, -1)

        def ratios(source_ratio: np.ndarray, wanted: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.concatenate([np.repeat(source_ratio, n, axis=0), wanted], axis=1)).float().to(self.device)

        if self.eye_retargeting:
            wanted = eye_openness(driver_landmarks).mean(axis=1, keepdims=True)
            delta = delta + module.retarget_eyes(source, ratios(crop.eyes, wanted))
        if self.lip_retargeting:
            wanted = lip_openness(driver_landmarks)[:, None]
            delta = delta + module.retarget_lips(source, ratios(crop.lips, wanted))
        return delta

    @torch.no_grad()
    def __call__(self, portrait: torch.Tensor, driver: torch.Tensor, initial: torch.Tensor, context: dict | None = None) -> dict:
        n = driver.shape[0]
        net = self.net
        # frames at another size (a paper-scale checkpoint's 512 px data scored by motionlab-eval) go in at the input size
        portrait, driver, initial = (resized(images, self.image_size) for images in (portrait, driver, initial))
        volume = net.appearance_feature_extractor(portrait)
        source, initial_motion = net.motion_extractor.motion(portrait), net.motion_extractor.motion(initial)
        driving = net.motion_extractor.motion(driver)
        x_source = net.keypoints(source)
        if self.relative:
            x_driving = relative_driving(source["canonical"], source, driving, initial_motion)
        else:
            x_driving = net.keypoints(driving, canonical=source["canonical"].expand(n, -1, -1))
        if self.eye_retargeting or self.lip_retargeting:
            x_driving = retargeted_keypoints(x_source.expand(n, -1, -1), x_driving, self._retargeting(x_source, n, context or {}), self.relative)
        if self.stitching:
            x_driving = net.stitching_retargeting_module.stitch(x_source.expand(n, -1, -1), x_driving)
        generated = torch.cat([
            net.render(volume.expand(len(part), -1, -1, -1, -1), x_source.expand(len(part), -1, -1), part)["image"]
            for part in x_driving.split(self.render_batch)
        ]).clamp(0, 1)
        own = net.keypoints(driving)
        size = tuple(driver.shape[-2:])
        return {"generated": generated,
                "driver_keypoints": Keypoints(own[..., :2], size=size, depth=own[..., 2]),
                "generated_keypoints": Keypoints(x_driving[..., :2], size=tuple(generated.shape[-2:]), depth=x_driving[..., 2])}
