"""Batch augmentations that treat a sample's images as one scene (kornia colour ops).

The same flip and the same colour change apply to ``portrait``, ``driver`` and ``driver_next`` of a
sample, so motion between them stays what the data says it is; samples in a batch differ.
Temporal augmentations (stride, time flip) live in the dataset because they choose frames.
"""

from __future__ import annotations

import kornia.enhance as KE
import torch
from torch import nn

from motionlab.geometry.landmarks import MIRROR_68
from motionlab.utils.errors import InputError

IMAGE_KEYS = ("portrait", "driver", "driver_next")
KEYPOINT_KEYS = ("portrait_keypoints", "driver_keypoints")


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


class PairedAugmentation(nn.Module):
    """Random horizontal flip and colour jitter, shared by the images of each sample.

    Args:
        hflip: probability of a horizontal flip (keypoint x becomes ``W - 1 - x``; left/right names are
            not swapped, so keep it 0 when regressing named keypoints). Face labels follow the mirror: the 68
            ``driver_landmarks`` swap sides (:data:`~motionlab.geometry.landmarks.MIRROR_68`) and
            ``driver_head_pose`` negates yaw and roll.

        brightness, contrast, saturation: factors drawn from ``[1 - v, 1 + v]`` (brightness additive, ``[-v, v]``).
        hue: shift drawn from ``[-hue, hue]`` in radians.
        descriptor_mirror: for batches with cached descriptors (``*_descriptors``, (B, K, 2) normalised keypoints of the
            clean frames): the keypoint each keypoint becomes in a mirrored face (a permutation of ``range(K)``), so a
            flip mirrors them as it mirrors the images. Colour changes leave them as they are: they describe where the
            face's parts are, which recolouring does not move. (A learnt detector run on the augmented images instead
            moves its keypoints under a colour change and is not mirror-symmetric: experiments/README.md.) Without it,
            flips of batches with descriptors are refused.
    """

    def __init__(self, hflip: float = 0.5, brightness: float = 0.1, contrast: float = 0.1, saturation: float = 0.1, hue: float = 0.05,
                 descriptor_mirror: list[int] | None = None):
        super().__init__()
        for name, value in (("hflip", hflip), ("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"augmentation {name} must be in [0, 1], got {value}")
        if not 0.0 <= hue <= torch.pi:
            raise InputError(f"augmentation hue must be in [0, pi], got {hue}")
        if descriptor_mirror is not None and sorted(descriptor_mirror) != list(range(len(descriptor_mirror))):
            raise InputError(f"augmentation descriptor_mirror must be a permutation of 0..K-1, got {list(descriptor_mirror)}")
        self.hflip, self.brightness, self.contrast, self.saturation, self.hue = hflip, brightness, contrast, saturation, hue
        self.descriptor_mirror = None if descriptor_mirror is None else list(descriptor_mirror)

    @torch.no_grad()
    def forward(self, batch: dict) -> dict:
        """Return a new batch dict; images (B, 3, H, W) in [0, 1], keypoints (B, K, 2) pixels, descriptors (B, K, 2)
        normalised."""
        descriptor_keys = [key for key in batch if key.endswith("descriptors")]
        if descriptor_keys and self.hflip > 0:
            count = batch[descriptor_keys[0]].shape[1]
            if self.descriptor_mirror is None or len(self.descriptor_mirror) != count:
                raise InputError(f"a flip mirrors the images, so the cached descriptors ({count} keypoints) must be mirrored too: set "
                                 f"data.augmentation.descriptor_mirror to the keypoint each one becomes in a mirrored face "
                                 f"(got {self.descriptor_mirror}), or data.augmentation.hflip=0")
        reference = batch["driver"]
        b, device = reference.shape[0], reference.device
        width = reference.shape[-1]

        def uniform(spread: float) -> torch.Tensor:
            return (torch.rand(b, device=device) * 2.0 - 1.0) * spread

        flip = torch.rand(b, device=device) < self.hflip
        brightness, contrast = uniform(self.brightness), 1.0 + uniform(self.contrast)
        saturation, hue = 1.0 + uniform(self.saturation), uniform(self.hue)
        out = dict(batch)
        for key in IMAGE_KEYS:
            if key not in batch:
                continue
            image = torch.where(_per_sample(flip), batch[key].flip(-1), batch[key])
            image = KE.adjust_brightness(image, brightness)
            image = KE.adjust_contrast(image, contrast)
            image = KE.adjust_saturation(image, saturation)
            out[key] = KE.adjust_hue(image, hue).clamp(0.0, 1.0)
        for key in KEYPOINT_KEYS:
            if key in batch:
                points = batch[key].clone()
                points[flip, :, 0] = width - 1 - points[flip, :, 0]
                out[key] = points
        for key in descriptor_keys:
            points = batch[key].clone()
            if flip.any():  # corner-aligned normalised x: the mirror of x is -x
                mirrored = points[flip][:, torch.as_tensor(self.descriptor_mirror, device=device)]
                mirrored[..., 0] = -mirrored[..., 0]
                points[flip] = mirrored
            out[key] = points
        if "driver_landmarks" in batch:
            points = batch["driver_landmarks"].clone()
            points[flip] = points[flip][:, torch.as_tensor(MIRROR_68, device=device)]
            points[flip, :, 0] = width - 1 - points[flip, :, 0]
            out["driver_landmarks"] = points
        if "driver_head_pose" in batch:
            out["driver_head_pose"] = torch.where(flip[:, None], batch["driver_head_pose"] * batch["driver_head_pose"].new_tensor([1.0, -1.0, -1.0]),
                                                  batch["driver_head_pose"])
        return out
