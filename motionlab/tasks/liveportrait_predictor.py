"""The liveportrait task's inference: LivePortraitPredictor (importable without the training stack: no Lightning, no
torchmetrics)."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motionlab.data.crops import (
    CROP_SIZE,
    PortraitCrop,
    box_crop_matrix,
    face_crop,
    paste_into_portrait,
    read_paste_mask,
    warp_crop,
)
from motionlab.data.images import to_tensor
from motionlab.geometry import Keypoints
from motionlab.geometry.head_pose import REGIONS, driving_keypoints, source_video_keypoints
from motionlab.geometry.landmarks import (
    eye_openness,
    face_crop_square,
    lip_openness,
    release_eye_ratios,
    release_lip_ratio,
)
from motionlab.models.liveportrait import LivePortrait
from motionlab.tasks.predictor import AnimationPredictor, register_predictor
from motionlab.utils.errors import InputError

log = logging.getLogger(__name__)


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) images at (size, size) (antialiased bilinear), or as they are when they already are."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def motion_multiplier(x_source: torch.Tensor, x_first: torch.Tensor) -> float:
    """LivePortrait's ``calc_motion_multiplier``: sqrt of the ratio of the convex-hull volumes of the (1, K, 3) source
    keypoints and the first driving frame's."""
    from scipy.spatial import ConvexHull

    volumes = [ConvexHull(points[0].detach().float().cpu().numpy()).volume for points in (x_source, x_first)]
    return float(np.sqrt(volumes[0]) / np.sqrt(volumes[1]))


def retargeted_keypoints(x_source: torch.Tensor, x_driving: torch.Tensor, delta: torch.Tensor, relative: bool) -> torch.Tensor:
    """The keypoints a frame renders with under eye / lip retargeting, as the release's pipeline sets them: with
    relative motion the retargeting offset ``delta`` is applied to the *source's* keypoints (``x_s + delta``: the
    driver's motion is left out, retargeting alone moves the face), with absolute motion to the driver's
    (``x_d + delta``). All (N, K, 3); stitching, if on, follows."""
    return (x_source if relative else x_driving) + delta


# the release's crop settings (its CropConfig): portraits at scale 2.3, vy -0.125 into 512 px (CROP_SIZE), driving
# frames at 2.2, -0.1
DRIVER_CROP = {"scale": 2.2, "vy_ratio": -0.1}


class FaceMeasure:
    """A face's crop points and eye / lip openness, from the release's models (InsightFace 106 points for the crop,
    the 203-point ``landmark.onnx`` for the ratios, as the release does) or from dlib's 68 points when the weights
    folder does not hold them (``name`` says which: ``insightface106+landmark203`` or ``dlib68``)."""

    def __init__(self, crop_models: dict | None):
        if crop_models is not None:
            from motionlab.data.face_models import ReleaseFaceLandmarks

            self.release = ReleaseFaceLandmarks(crop_models)
            self.name = self.release.name
        else:
            from motionlab.data.landmarks import DlibLandmarks

            self.dlib = DlibLandmarks()
            self.name = "dlib68"

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(crop points, eye openness (2,), lip openness (1,)) of the largest face, or None."""
        if self.name == "dlib68":
            points = self.dlib(image)
            return None if points is None else (points, *self.openness(points))
        found = self.release(image)
        if found is None:
            return None
        points_106, points_203 = found  # cropped on the 106 points, measured on the 203, as the release does
        return points_106, *self.openness(points_203)

    def openness(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(eye openness (2,), lip openness (1,)) of tracked points (:meth:`LivePortraitPredictor._tracked`: 203 points
        from the release's models, else dlib's 68)."""
        if self.name == "dlib68":
            return eye_openness(points[None])[0], lip_openness(points[None])
        return release_eye_ratios(points[None])[0], release_lip_ratio(points[None])

    def wanted_eyes(self, eyes: np.ndarray) -> np.ndarray:
        """(N, 2) driver eye openness -> the (N, 1) target the eye MLP takes: the release passes its first eye's ratio;
        dlib's analogue takes both eyes' mean."""
        return eyes[:, :1] if self.name != "dlib68" else eyes.mean(axis=1, keepdims=True)


@register_predictor
class LivePortraitPredictor(AnimationPredictor):
    """LivePortrait's inference (a release folder or a LivePortraitTask checkpoint).

    Faces are measured by the release's own models when the weights folder holds them (InsightFace's ``det_10g`` and
    ``2d106det`` and the release's ``landmark.onnx``: :mod:`motionlab.data.face_models`), else by dlib's 68 points
    (a warning says so; :attr:`crop_model` names which). The portrait is cropped as the release's cropper does
    (:func:`motionlab.geometry.landmarks.face_crop_matrix` at scale ``crop_scale``, vy -0.125, into 512 px, area-resized
    to the network's input) unless ``crop_portrait`` is off; driver frames are used as given (LivePortrait expects
    face-centred drivers) unless ``crop_driver`` (the release's driving-video crop: scale 2.2, vy -0.1). Each frame's
    keypoints move the portrait's by the driver's motion since its first frame (``relative``; else the driver's pose
    and expression are used as they are). Eye / lip retargeting set the openness measured on the driver's faces as the
    release does (:func:`retargeted_keypoints`: with relative motion the offset moves the portrait's own keypoints and
    replaces the driver's motion), and stitching keeps the face attached to the portrait. The result (the generator's
    size, 512 for the release) is pasted back into the portrait with a feathered mask (``paste_back``), else returned
    as the crop.

    :meth:`prepare_portrait` returns the portrait's crop and :meth:`prepare_driver` the driver frames' openness as
    their contexts, which :meth:`__call__` (retargeting) and :meth:`finish` (paste-back) take: nothing is kept between
    calls.
    """

    families = ("liveportrait",)
    options = {"relative": True, "stitching": True, "eye_retargeting": False, "lip_retargeting": False, "crop_portrait": True,
               "crop_driver": False, "paste_back": True, "crop_scale": 2.3, "render_batch": None, "crop_models": None,
               "animation_region": "all", "driving_option": "pose-friendly", "driving_multiplier": 1.0, "crop_box": None,
               "normalize_lip": False, "paste_mask": None}

    def __init__(self, net: LivePortrait, relative: bool = True, stitching: bool = True, eye_retargeting: bool = False,
                 lip_retargeting: bool = False, crop_portrait: bool = True, crop_driver: bool = False, paste_back: bool = True,
                 crop_scale: float = 2.3, render_batch: int | None = None, crop_models: dict | None = None, animation_region: str = "all",
                 driving_option: str = "pose-friendly", driving_multiplier: float = 1.0, crop_box: list | str | None = None,
                 normalize_lip: bool = False, paste_mask: str | None = None):
        """``crop_models``: the release's three crop-model files by role (:func:`motionlab.data.face_models.find_crop_models`).
        ``animation_region`` (all, exp, pose, lip, eyes), ``driving_option`` and ``driving_multiplier`` are the release's
        (:func:`motionlab.geometry.head_pose.driving_keypoints`, :meth:`__call__`). ``crop_box``: the portrait's crop given
        instead of found ([x0, y0, x1, y1] pixels, made square about its centre, or ``centre``: the largest centred
        square), for faces no human landmark model finds (the animals release, whose detector is CUDA-only).
        ``normalize_lip``: the release's ``flag_normalize_lip``: with relative motion and no eye / lip retargeting, a
        portrait whose lips are open (ratio >= 0.03) is rendered with the lip MLP's offset towards closed lips added.
        ``paste_mask``: the release's ``mask_template.png`` for the paste-back, instead of motionlab's feathered mask."""
        super().__init__(net=net)
        if crop_box is not None and crop_box != "centre" and (not isinstance(crop_box, (list, tuple)) or len(crop_box) != 4
                                                             or crop_box[2] <= crop_box[0] or crop_box[3] <= crop_box[1]):
            raise InputError(f"predictor.crop_box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0, or centre; got {crop_box!r}")
        self.crop_box, self.normalize_lip = crop_box, normalize_lip
        self.paste_mask = read_paste_mask(paste_mask) if paste_mask is not None else None
        if animation_region not in REGIONS:
            raise InputError(f"predictor.animation_region must be one of {', '.join(REGIONS)}, got {animation_region!r}")
        if driving_option not in ("pose-friendly", "expression-friendly"):
            raise InputError(f"predictor.driving_option must be pose-friendly or expression-friendly, got {driving_option!r}")
        self.animation_region, self.driving_option, self.driving_multiplier = animation_region, driving_option, float(driving_multiplier)
        self.relative, self.stitching = relative, stitching
        self.eye_retargeting, self.lip_retargeting = eye_retargeting, lip_retargeting
        self.crop_portrait, self.crop_driver, self.paste_back, self.crop_scale = crop_portrait, crop_driver, paste_back, crop_scale
        self.render_batch = render_batch
        self.crop_models = crop_models
        self._measure: FaceMeasure | None = None

    @classmethod
    def from_models(cls, models: dict[str, nn.Module], settings: dict, relative: bool = True, checkpoint_path=None,
                    crop_models: str | None = None, **options) -> "LivePortraitPredictor":
        """The release's crop models are looked for in the folder ``crop_models`` (the user's option), else beside a
        release folder (``checkpoint_path``): :func:`motionlab.data.face_models.find_crop_models`."""
        from motionlab.data.face_models import find_crop_models

        if crop_models is not None:
            found = find_crop_models(crop_models)
            if found is None:
                raise InputError(f"predictor.crop_models={crop_models} does not hold LivePortrait's crop models (det_10g.onnx, 2d106det.onnx, "
                                 "landmark.onnx, in the release layout or side by side)")
        else:
            found = find_crop_models(checkpoint_path) if checkpoint_path is not None and os.path.isdir(checkpoint_path) else None
        # the caller's options for other predictors (whether to detect keypoints on the output, say) pass by
        predictor = cls(models["net"], relative=relative, crop_models=found, **{key: value for key, value in options.items() if key in cls.options})
        # a release folder's frames are truncated to uint8, as its parse_output does
        predictor.quantize = settings.get("quantize", "round")
        return predictor

    @property
    def crop_model(self) -> str:
        """Which landmarks crop and measure faces: ``insightface106+landmark203`` (the release's) or ``dlib68``."""
        return "insightface106+landmark203" if self.crop_models is not None else "dlib68"

    def _face_measure(self) -> FaceMeasure:
        if self._measure is None:
            if self.crop_models is None:
                log.warning("LivePortrait: the weights folder holds no det_10g.onnx / 2d106det.onnx / landmark.onnx (the release's crop "
                            "models): faces are cropped and measured with dlib's 68 points instead (crop_model: dlib68)")
            self._measure = FaceMeasure(self.crop_models)
        return self._measure

    def _face(self, image: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = self._face_measure()(image)
        if found is None:
            raise InputError(f"no face found in the {what} by {self.crop_model}; LivePortrait crops around a face "
                             f"(give predictor.crop_{what}=false to use the whole image)")
        return found

    def _resized(self, frames: np.ndarray) -> torch.Tensor:
        """Uncropped frames at the network's input as the release resizes them (``cv2.resize``, bilinear, squashed)."""
        size = self.image_size
        return to_tensor(np.stack([frame if frame.shape[:2] == (size, size) else cv2.resize(frame, (size, size)) for frame in frames]))

    def prepare_portrait(self, image: np.ndarray) -> tuple[torch.Tensor, dict]:
        """The portrait cropped around its face (context ``crop``: a :class:`PortraitCrop`, None without cropping)."""
        size = self.image_size
        if not self.crop_portrait:
            return self._resized(image[None]), {"crop": None}
        if self.crop_box is not None:
            matrix = box_crop_matrix(self.crop_box, image.shape[:2], CROP_SIZE)
            return to_tensor(warp_crop(image, matrix, size)[None]), {"crop": PortraitCrop(matrix, CROP_SIZE, image, None, None)}
        points, eyes, lips = self._face(image, "portrait")
        cropped, crop = face_crop(image, points, size, self.crop_scale, -0.125)
        return to_tensor(cropped[None]), {"crop": replace(crop, eyes=eyes[None], lips=lips[None])}

    @property
    def needs_driver_scan(self) -> bool:
        return self.crop_driver

    def scan_driver(self, batches) -> dict:
        """The release's driving-video crop (its ``crop_driving_video``): the face tracked through the clip (the
        203-point model from the previous frame's points once the first face is found; dlib finds each frame's), each
        frame's crop square (scale 2.2, up 0.1), and one box for the whole clip, their mean (``driver_box``: x0, y0, x1,
        y1 pixels)."""
        boxes, previous = [], None
        for batch in batches:
            for frame in batch:
                points = self._tracked(frame, previous)
                if points is None:
                    continue
                previous = points
                centre, side, _ = face_crop_square(points, DRIVER_CROP["scale"], vy_ratio=DRIVER_CROP["vy_ratio"])
                boxes.append([centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2])
        if not boxes:
            raise InputError(f"no face found in any driver frame by {self.crop_model}; predictor.crop_driver=false uses the frames as they are")
        return {"driver_box": np.mean(boxes, axis=0)}

    def _tracked(self, frame: np.ndarray, previous: np.ndarray | None) -> np.ndarray | None:
        measure = self._face_measure()
        if measure.name == "dlib68":
            return measure.dlib(frame)
        if previous is not None:
            return measure.release.landmarks_203(frame, previous)
        found = measure.release(frame)
        return None if found is None else found[1]

    def prepare_driver(self, frames: np.ndarray, clip: dict | None = None) -> tuple[torch.Tensor, dict]:
        """The driver frames, cropped with ``crop_driver`` by the clip's one box (``clip``: :meth:`scan_driver`'s result)
        to 512 and resized bilinearly, as the release does (context ``driver_eyes`` (N, 1) and ``driver_lips`` (N, 1):
        the openness retargeting targets, measured on the frames returned where needed)."""
        if self.crop_driver:
            if not clip or "driver_box" not in clip:
                raise InputError("predictor.crop_driver crops every frame with one box for the clip: scan_driver() it first "
                                 "(motionlab-animate does)")
            matrix = box_crop_matrix(list(clip["driver_box"]), frames.shape[1:3], CROP_SIZE)
            frames = np.stack([cv2.warpAffine(frame, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR) for frame in frames])
        if not (self.eye_retargeting or self.lip_retargeting):
            return self._resized(frames), {"driver_eyes": None, "driver_lips": None}
        crops, eyes, lips = [], [], []
        for frame in frames:
            _, frame_eyes, frame_lips = self._face(frame, "driver")
            crops.append(frame)
            eyes.append(frame_eyes)
            lips.append(frame_lips)
        return self._resized(np.stack(crops)), {"driver_eyes": self._face_measure().wanted_eyes(np.stack(eyes)),
                                                "driver_lips": np.stack(lips).reshape(-1, 1)}

    def finish(self, frames: np.ndarray, context: dict) -> np.ndarray:
        """Generated (N, S', S', 3) uint8 crops -> the frames to write: pasted back into the portrait when it was cropped."""
        crop = context.get("crop")
        if not self.paste_back or crop is None:
            return frames
        return np.stack([paste_into_portrait(frame, crop, self.paste_mask) for frame in frames])

    def _measured_faces(self, context: dict, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(source eyes, source lips, driver eyes, driver lips) for eye / lip retargeting of ``n`` frames."""
        crop, driver_eyes, driver_lips = context.get("crop"), context.get("driver_eyes"), context.get("driver_lips")
        if crop is not None and crop.eyes is None:
            raise InputError("eye / lip retargeting measures the portrait's face, which predictor.crop_box skips: leave crop_box unset")
        if crop is None or driver_eyes is None or len(driver_eyes) != n:
            raise InputError("eye / lip retargeting needs the portrait's and the driver's faces measured: run through prepare_portrait / "
                             "prepare_driver (motionlab-animate does) with crop_portrait on")
        return crop.eyes, crop.lips, driver_eyes, driver_lips

    def _retargeting(self, x_source: torch.Tensor, source_eyes: np.ndarray, source_lips: np.ndarray, driver_eyes: np.ndarray,
                     driver_lips: np.ndarray) -> torch.Tensor:
        """The eye / lip retargeting offsets (N, K, 3) for N driver frames' openness (``driver_eyes`` (N, 1),
        ``driver_lips`` (N, 1)), from source keypoints and openness given once (1, ...) or per frame (N, ...)."""
        n = len(driver_eyes)
        delta = torch.zeros(n, *x_source.shape[1:], device=self.device)
        module = self.net.stitching_retargeting_module
        source = x_source.expand(n, -1, -1)

        def ratios(source_ratio: np.ndarray, wanted: np.ndarray) -> torch.Tensor:
            per_frame = np.broadcast_to(source_ratio, (n, source_ratio.shape[1]))
            return torch.from_numpy(np.concatenate([per_frame, wanted], axis=1)).float().to(self.device)

        if self.eye_retargeting:
            delta = delta + module.retarget_eyes(source, ratios(source_eyes, driver_eyes))
        if self.lip_retargeting:
            delta = delta + module.retarget_lips(source, ratios(source_lips, driver_lips))
        return delta

    def _closed_lips(self, x_source: torch.Tensor, lips: np.ndarray | None) -> torch.Tensor:
        """The release's lip normalisation for (N, K, 3) source keypoints with lip ratios ``lips`` (N, 1): the lip MLP's
        offset from each ratio to 0 where it is >= 0.03, else none."""
        if lips is None:
            raise InputError("predictor.normalize_lip measures the portrait's lips: keep crop_portrait on and crop_box unset")
        lips = torch.tensor(np.asarray(lips, dtype=np.float32).reshape(-1, 1), device=self.device)
        ratios = torch.cat([lips, torch.zeros_like(lips)], dim=1)
        return self.net.stitching_retargeting_module.retarget_lips(x_source, ratios) * (lips >= 0.03)[:, :, None]

    def _finished_keypoints(self, x_source: torch.Tensor, x_driving: torch.Tensor, faces, source_lips: np.ndarray | None) -> torch.Tensor:
        """Retargeting, stitching, lip normalisation and the driving multiplier on driven keypoints, in the release's
        order (its "Algorithm 1"). ``faces``: a callable giving :meth:`_measured_faces` (only called when retargeting);
        ``x_source`` (1 or N, K, 3)."""
        n = x_driving.shape[0]
        x_source = x_source.expand(n, -1, -1)
        retargeting = self.eye_retargeting or self.lip_retargeting
        if retargeting:
            x_driving = retargeted_keypoints(x_source, x_driving, self._retargeting(x_source, *faces()), self.relative)
        if self.stitching:
            x_driving = self.net.stitching_retargeting_module.stitch(x_source, x_driving)
        if self.normalize_lip and self.relative and not retargeting:
            x_driving = x_driving + self._closed_lips(x_source, None if source_lips is None else np.broadcast_to(source_lips, (n, 1)))
        return x_source + (x_driving - x_source) * self.driving_multiplier

    def _render(self, volume: torch.Tensor, x_source: torch.Tensor, x_driving: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, S', S') in [0, 1] rendered ``render_batch`` at a time; ``volume`` / ``x_source``: one or N.
        Unset, 1 on a CPU (at the release's size on two cores batch 1 made 1.1x the frames/s of batch 2: W and G are
        memory-bound there) and 4 elsewhere."""
        n = x_driving.shape[0]
        batch = self.render_batch or (1 if self.device.type == "cpu" else 4)
        volume, x_source = volume.expand(n, -1, -1, -1, -1), x_source.expand(n, -1, -1)
        return torch.cat([self.net.render(v, s, d)["image"] for v, s, d in zip(volume.split(batch), x_source.split(batch), x_driving.split(batch))]).clamp(0, 1)

    supports_source_video = True

    @torch.no_grad()
    def plan_source_video(self, source_batches, driver_batches, driver_scan: dict | None = None) -> dict:
        """Video-to-video, first pass (the release's source-video path): the face tracked through the source frames
        (:meth:`_tracked`), each frame cropped by its own points (scale ``crop_scale``, vy -0.125) and measured; every
        source frame's motion and the paired driver frame's (:meth:`prepare_driver`); the driven keypoints smoothed
        through time (:func:`motionlab.geometry.head_pose.source_video_keypoints`), then retargeting, stitching, lip
        normalisation and the multiplier as for a still portrait. ``source_batches`` / ``driver_batches`` yield
        (N, H, W, 3) uint8 batches of equal lengths. Returns the plan :meth:`render_source_video` renders from:
        ``matrices`` (T, 2, 3) crop matrices, ``x_source`` / ``x_driving`` / ``driver_keypoints`` (T, K, 3)."""
        if not self.crop_portrait or self.crop_box is not None:
            raise InputError("a source video is cropped frame by frame around its tracked face: leave predictor.crop_portrait on and crop_box unset")
        net, measure = self.net, self._face_measure()
        matrices, eyes, lips, source_motion, driver_motion, driver_eyes, driver_lips = [], [], [], [], [], [], []
        previous = None
        for index, (source_frames, driver_frames) in enumerate(zip(source_batches, driver_batches)):
            crops = []
            for frame in source_frames:
                points = self._tracked(frame, previous)
                if points is None and previous is None:
                    raise InputError(f"no face found by {self.crop_model} in the source video's first frames (batch {index}); "
                                     "video-to-video tracks the face from the first frame that shows one")
                # dlib misses a face now and then: the frame keeps the last points found
                previous = previous if points is None else points
                crop, where = face_crop(frame, previous, self.image_size, self.crop_scale, -0.125)
                frame_eyes, frame_lips = measure.openness(previous)
                matrices.append(where.matrix)
                eyes.append(frame_eyes)
                lips.append(frame_lips.reshape(-1))
                crops.append(crop)
            source_motion.append(net.motion_extractor.motion(to_tensor(np.stack(crops)).to(self.device)))
            driver, driver_context = self.prepare_driver(driver_frames, driver_scan)
            driver_motion.append(net.motion_extractor.motion(driver.to(self.device)))
            if driver_context["driver_eyes"] is not None:
                driver_eyes.append(driver_context["driver_eyes"])
                driver_lips.append(driver_context["driver_lips"])
        if not matrices:
            raise InputError("video-to-video needs at least one source frame and one driver frame")
        source = {key: torch.cat([part[key] for part in source_motion]) for key in source_motion[0]}
        driving = {key: torch.cat([part[key] for part in driver_motion]) for key in driver_motion[0]}
        x_source = net.keypoints(source)
        initial = {key: value[:1] for key, value in driving.items()}
        x_driving = source_video_keypoints(source["canonical"], source, driving, initial, self.relative, self.animation_region)
        source_eyes, source_lips = np.stack(eyes), np.stack(lips)
        faces = lambda: (source_eyes, source_lips, np.concatenate(driver_eyes), np.concatenate(driver_lips))  # noqa: E731
        x_driving = self._finished_keypoints(x_source, x_driving, faces, source_lips)
        return {"matrices": np.stack(matrices), "x_source": x_source, "x_driving": x_driving, "driver_keypoints": net.keypoints(driving)}

    @torch.no_grad()
    def render_source_video(self, frames: np.ndarray, plan: dict, start: int) -> dict:
        """Video-to-video, second pass: source frames ``start`` .. ``start + N`` ((N, H, W, 3) uint8, decoded again)
        cropped by the plan's matrices and rendered with their keypoints. Returns ``generated`` (N, 3, S', S'),
        ``portrait`` (the crops at the network's size), the keypoints, and ``crops`` (:class:`PortraitCrop` per frame,
        for :meth:`finish_source_video`)."""
        stop = start + len(frames)
        size = self.image_size
        matrices = plan["matrices"][start:stop]
        crops = np.stack([warp_crop(frame, matrix, size) for frame, matrix in zip(frames, matrices)])
        portrait = to_tensor(crops).to(self.device)
        x_source, x_driving, own = (plan[key][start:stop] for key in ("x_source", "x_driving", "driver_keypoints"))
        generated = self._render(self.net.appearance_feature_extractor(portrait), x_source, x_driving)
        return {"generated": generated, "portrait": portrait,
                "driver_keypoints": Keypoints(own[..., :2], size=(size, size), depth=own[..., 2]),
                "generated_keypoints": Keypoints(x_driving[..., :2], size=tuple(generated.shape[-2:]), depth=x_driving[..., 2]),
                "crops": [PortraitCrop(matrix, CROP_SIZE, frame, None, None) for frame, matrix in zip(frames, matrices)]}

    def finish_source_video(self, frames: np.ndarray, crops: list[PortraitCrop]) -> np.ndarray:
        """Generated (N, S', S', 3) uint8 crops, each pasted back into its own source frame (``paste_back``)."""
        if not self.paste_back:
            return frames
        return np.stack([paste_into_portrait(frame, crop, self.paste_mask) for frame, crop in zip(frames, crops)])

    @torch.no_grad()
    def _portrait_state(self, portrait: torch.Tensor, initial: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
        """(appearance volume, portrait motion, first driver frame's motion), once per clip (:meth:`per_clip`, as the
        release's pipeline computes ``f_s`` and ``x_s_info`` once): F and two M passes a batch saved."""
        net, size = self.net, self.image_size

        def compute() -> tuple[torch.Tensor, dict, dict]:
            source = resized(portrait, size)
            return net.appearance_feature_extractor(source), net.motion_extractor.motion(source), net.motion_extractor.motion(resized(initial, size))

        return self.per_clip(portrait, initial, compute)

    @torch.no_grad()
    def __call__(self, portrait: torch.Tensor, driver: torch.Tensor, initial: torch.Tensor, context: dict | None = None) -> dict:
        n = driver.shape[0]
        net = self.net
        volume, source, initial_motion = self._portrait_state(portrait, initial)
        # frames at another size (a paper-scale checkpoint's 512 px data scored by motionlab-eval) go in at the input size
        driver = resized(driver, self.image_size)
        driving = net.motion_extractor.motion(driver)
        x_source = net.keypoints(source)
        x_driving = driving_keypoints(source["canonical"], source, driving, initial_motion, self.relative, self.animation_region)
        if self.relative and self.driving_option == "expression-friendly":
            # the release scales the motion since the first frame by sqrt(hull volume of x_s / of the first frame's keypoints)
            x_first = driving_keypoints(source["canonical"], source, initial_motion, initial_motion, True, self.animation_region)
            x_driving = (x_driving - x_first) * motion_multiplier(x_source, x_first) + x_source
        context = context or {}
        crop = context.get("crop")
        x_driving = self._finished_keypoints(x_source, x_driving, lambda: self._measured_faces(context, n),
                                             None if crop is None else crop.lips)
        generated = self._render(volume, x_source, x_driving)
        own = net.keypoints(driving)
        size = tuple(driver.shape[-2:])
        return {"generated": generated,
                "driver_keypoints": Keypoints(own[..., :2], size=size, depth=own[..., 2]),
                "generated_keypoints": Keypoints(x_driving[..., :2], size=tuple(generated.shape[-2:]), depth=x_driving[..., 2])}
