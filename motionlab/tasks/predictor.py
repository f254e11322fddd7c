"""Predictors: what a task does around its networks at inference, rebuilt from any checkpoint of that task.

``motionlab-animate``, ``motionlab-eval``, ``motionlab-lipsync`` and ``motionlab-export`` call
:func:`load_predictor` and use what it returns; none of them looks at model classes. A predictor is chosen by
the family of the checkpoint's ``net`` (:attr:`motionlab.models.ModelInfo.family`).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from motionlab.data import trained_on
from motionlab.data.datasets import frames_to_tensor
from motionlab.data.images import to_tensor
from motionlab.models import checkpoint_models, motionlab_meta
from motionlab.models.fast_conv import use_fast_convolutions
from motionlab.models.lora import load_adapter
from motionlab.utils.checkpoint import load_checkpoint
from motionlab.utils.errors import InputError
from motionlab.utils.io import file_digest

_PREDICTORS: dict[str, type["Predictor"]] = {}


class Predictor:
    """Base of the predictors: holds the networks (``networks``: attribute name -> module) and moves them."""

    families: tuple[str, ...] = ()
    # the options a user may set for this family (motionlab-animate predictor.<key>=...), with their defaults
    options: dict[str, object] = {}

    def __init__(self, **networks: nn.Module | None):
        self.networks = {name: module.eval() for name, module in networks.items() if module is not None}
        for name in networks:
            setattr(self, name, self.networks.get(name))
        self.device = torch.device("cpu")
        # the data the networks were trained on (motionlab.data.trained_on), None for published files
        self.trained_on: dict | None = None

    @classmethod
    def from_models(cls, models: dict[str, nn.Module], settings: dict, **options) -> "Predictor":
        raise NotImplementedError

    def to(self, device: str | torch.device) -> "Predictor":
        self.device = torch.device(device)
        for name, module in self.networks.items():
            setattr(self, name, module.to(self.device))
        return self


def register_predictor(cls: type[Predictor]) -> type[Predictor]:
    for family in cls.families:
        _PREDICTORS[family] = cls
    return cls


def load_predictor(path: str | os.PathLike, model: str | None = None, device: str = "cpu", base: str | os.PathLike | None = None,
                   lora: str | os.PathLike | None = None, fast_convolutions: bool = False, user_options: dict | None = None,
                   **options) -> Predictor:
    """The predictor of a checkpoint file (weights-only read); see :func:`predictor_from_checkpoint`."""
    return predictor_from_checkpoint(load_checkpoint(path), path, model, device, base, lora, fast_convolutions, user_options, **options)


def predictor_from_checkpoint(checkpoint: dict, path: str | os.PathLike, model: str | None = None, device: str = "cpu",
                              base: str | os.PathLike | None = None, lora: str | os.PathLike | None = None,
                              fast_convolutions: bool = False, user_options: dict | None = None, **options) -> Predictor:
    """The predictor of an already-read checkpoint.

    motionlab checkpoints carry their networks' specs and the task's predictor settings; published files
    (FOMM ``*.pth.tar``, SyncTalk_2D state dicts) need ``model``, the registered variant they fit. A LoRA run's
    checkpoint finds its base at the recorded path or ``base``. ``lora`` adds the adapters of an adapter file to
    ``net`` unmerged (switchable with :func:`motionlab.models.lora.set_lora_enabled`); the file must have been
    trained on this very checkpoint (SHA-256). ``fast_convolutions`` lets the networks' convolutions pick the faster of
    the direct and the Winograd / FFT algorithm on the CPU (:mod:`motionlab.models.fast_conv`: outputs within ~1e-5,
    not bit-identical). ``user_options`` are what the user set for the predictor (``motionlab-animate predictor.<key>=``):
    each must be one of the family's :attr:`Predictor.options`, else an error names the key and the valid ones.
    ``options`` are the caller's (the audio encoder for a SyncTalk_2D U-Net, whether keypoints are detected on the
    output ...) and go to the predictor as they are, with ``checkpoint_path`` (where a predictor finds files beside the
    weights: LivePortrait's crop models).
    """
    models = checkpoint_models(checkpoint, path, model, base)
    if lora is not None:
        load_adapter(models["net"], lora, file_digest(path), str(path))
        models["net"].eval()
    meta = motionlab_meta(checkpoint, path)
    family = models["net"].model_info.family
    if family not in _PREDICTORS:
        raise InputError(f"{path} holds a {models['net'].model_info.name} ({family}); there is no inference for it here: "
                         f"predictors exist for {', '.join(sorted(_PREDICTORS))} networks")
    chosen = _PREDICTORS[family]
    unknown = sorted(set(user_options or {}) - set(chosen.options))
    if unknown:
        valid = ", ".join(f"{key} (default {value})" for key, value in chosen.options.items()) or "none"
        raise InputError(f"predictor option '{unknown[0]}' is not an option of {family} models ({path}); its options are: {valid}")
    options = {**options, **(user_options or {})}
    settings = meta.get("predictor", {}) if meta is not None else dict(models["net"].model_info.published_settings)
    if fast_convolutions and torch.device(device).type == "cpu":
        for network in models.values():
            use_fast_convolutions(network)
    predictor = _PREDICTORS[family].from_models(models, settings, checkpoint_path=path, **options).to(device)
    if meta is not None:
        predictor.trained_on = meta.get("data") or trained_on((meta.get("config") or {}).get("data"))
    return predictor


class AnimationPredictor(Predictor):
    """Portrait + driver frames -> animated frames at the network's input size.

    ``predictor(portrait, driver, initial)`` takes the (1, 3, S, S) portrait, (N, 3, S, S) driver frames and the
    clip's (1, 3, S, S) first frame, all in [0, 1] on :attr:`device`, and returns ``generated`` (N, 3, S', S') in
    [0, 1] (S' = S except for networks that upsample, such as LivePortrait's) and, for keypoint models,
    ``driver_keypoints`` / ``generated_keypoints`` (:class:`Keypoints`).

    Files go through :meth:`prepare_portrait` and :meth:`prepare_driver` (uint8 images -> those tensors; a face crop
    for LivePortrait) and :meth:`finish` (generated uint8 frames -> the frames written; its paste-back). The steps keep
    no state between calls: what one step learns of its input (a crop, landmarks) it returns as a context that the
    caller hands to the next, so one predictor can serve several animations at once.
    """

    # what finds and crops faces before the network (LivePortrait's landmark models), recorded with the result; None: no crop
    crop_model: str | None = None
    # how generated frames become uint8 (motionlab.data.images.to_uint8): round, or floor where a release truncates
    quantize: str = "round"

    @property
    def image_size(self) -> int:
        return self.net.model_info.input_size[0]

    @property
    def batch_size(self) -> int:
        """Driver frames per forward pass when the caller does not choose (``motionlab-animate batch_size=null``)."""
        return 16

    # a portrait at least this many times the network's input is a photo to crop around its face (when dlib finds one)
    face_crop_above: float = 2.0
    # the face crop of such a photo: the landmarks' extent times this, shifted up by this share of the side (forehead)
    face_crop = {"scale": 2.0, "vy_ratio": -0.1}

    def prepare_portrait(self, image: np.ndarray) -> tuple[torch.Tensor, dict]:
        """(H, W, 3) uint8 portrait -> (1, 3, S, S) in [0, 1] on the CPU, and what later steps need to know of how it
        was prepared: the context passed to :meth:`__call__` and :meth:`finish`. A photo much larger than the network's
        input (:attr:`face_crop_above`) is cropped around the face dlib finds (context ``crop``), anything else is the
        whole image at its aspect (``letterbox``): the result is put back into the portrait's size either way."""
        from motionlab.data.crops import face_crop, letterbox

        size = self.image_size
        if max(image.shape[:2]) >= self.face_crop_above * size:
            points = self._face_points(image)
            if points is not None:
                cropped, crop = face_crop(image, points, size, **self.face_crop)
                return to_tensor(cropped[None]), {"crop": crop}
        square, box = letterbox(image, size)
        return to_tensor(square[None]), {"letterbox": box}

    def _face_points(self, image: np.ndarray) -> np.ndarray | None:
        """dlib's 68 points of the largest face, or None (the detector is loaded on first use)."""
        from motionlab.data.landmarks import DlibLandmarks

        if getattr(self, "_landmarks", None) is None:
            self._landmarks = DlibLandmarks()
        return self._landmarks(np.ascontiguousarray(image))

    # whether prepare_driver needs scan_driver's look at the whole clip first (LivePortrait's driving-video crop)
    needs_driver_scan: bool = False

    def scan_driver(self, batches) -> dict:
        """What a whole pass over the driver's frames (an iterable of (N, H, W, 3) uint8 batches) tells
        :meth:`prepare_driver` (its ``clip`` argument), for predictors with :attr:`needs_driver_scan`."""
        raise NotImplementedError(f"{type(self).__name__} prepares driver frames one batch at a time")

    def prepare_driver(self, frames: np.ndarray, clip: dict | None = None) -> tuple[torch.Tensor, dict]:
        """(N, H, W, 3) uint8 driver frames -> (N, 3, S, S) in [0, 1] on the CPU, and their context (their landmarks, say);
        ``clip``: :meth:`scan_driver`'s result where the predictor needs one."""
        return frames_to_tensor(frames, self.image_size), {}

    def finish(self, frames: np.ndarray, context: dict) -> np.ndarray:
        """(N, S', S', 3) uint8 generated frames -> the frames to write (``context``: the portrait's): at the portrait's
        size and aspect, a face crop pasted back through a feathered mask, a letterboxed image cut back out."""
        from motionlab.data.crops import paste_into_portrait, unletterbox

        if context.get("crop") is not None:
            return np.stack([paste_into_portrait(frame, context["crop"]) for frame in frames])
        if context.get("letterbox") is not None:
            return np.stack([unletterbox(frame, context["letterbox"]) for frame in frames])
        return frames

    # (portrait, first driver frame, what per_clip computed from them): the last clip's
    _clip_state: tuple | None = None

    def per_clip(self, portrait: torch.Tensor, initial: torch.Tensor, compute):
        """``compute()``'s result, computed once and reused while the same ``portrait`` / ``initial`` tensor objects come
        back, batch after batch of a clip: what depends only on them (their keypoints, the portrait's encoding), which
        the releases' loops recompute for every frame."""
        if self._clip_state is None or self._clip_state[0] is not portrait or self._clip_state[1] is not initial:
            self._clip_state = (portrait, initial, compute())
        return self._clip_state[2]

    # whether a video can be the source, each of its frames driven by the driver frame of the same index
    # (video-to-video: plan_source_video, render_source_video and finish_source_video, LivePortrait's)
    supports_source_video: bool = False

    def __call__(self, portrait: torch.Tensor, driver: torch.Tensor, initial: torch.Tensor, context: dict | None = None) -> dict:
        """``context``: the portrait's and the driver frames' (:meth:`prepare_portrait`, :meth:`prepare_driver`)."""
        raise NotImplementedError
