"""The descriptor task's inference: DescriptorPredictor (importable without the training stack: no Lightning, no
torchmetrics)."""

from __future__ import annotations

import torch
from torch import nn

from motionlab.geometry import Keypoints, relative_motion
from motionlab.tasks.predictor import AnimationPredictor, register_predictor
from motionlab.utils.errors import InputError


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
        """(portrait keypoints, first-frame keypoints, portrait features), once per clip (:meth:`per_clip`)."""
        detector = self.net.kp_detector
        return self.per_clip(portrait, initial, lambda: (detector(portrait), detector(initial), self.net.encode_source(portrait)))

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
