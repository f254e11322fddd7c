"""MuseTalk's generator loss (its ``train.py``): L1 on the decoded face and a perceptual pyramid loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from motionlab.losses.base import TaskLoss
from motionlab.losses.perceptual import FeaturePyramid, PerceptualPyramidLoss


class MuseTalkLoss(TaskLoss):
    """``l1 * mean |decoded - face| + perceptual * P + latent_l1 * mean |predicted latents - the face's latents|``.

    ``P`` is MuseTalk's VGG term: over the image pyramid ``scales``, the mean over the feature layers (equal weights,
    normalised by their sum) of mean |f(down(decoded)) - f(down(face))| on [0, 1] images. The release uses ImageNet VGG-19
    (``backbone=vgg19`` with ``weights_path``, torchvision's state dict: nothing is downloaded); the default is the offline
    EfficientNet-Lite0 features (:class:`~motionlab.losses.perceptual.FeaturePyramid`). Stage 1 of MuseTalk 1.5 weighs
    l1 1.0 and perceptual 0.01; ``latent_l1`` (not MuseTalk's) is 0 unless set.

    ``outputs``: ``image`` (B, 3, 256, 256) decoded in [-1, 1], ``latents`` / ``target_latents``; ``batch``: ``face``.
    """

    def __init__(self, l1: float = 1.0, perceptual: float = 0.01, latent_l1: float = 0.0, backbone: str = "efficientnet_lite0",
                 weights_path: str | None = None, scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125), layers: int = 5):
        super().__init__(l1=l1, perceptual=perceptual, latent_l1=latent_l1)
        self.perceptual_loss = (PerceptualPyramidLoss(FeaturePyramid(backbone, weights_path), scales, [1.0 / layers] * layers)
                                if perceptual > 0 else None)

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        generated, face = outputs["image"], batch["face"]
        terms = {"l1": F.l1_loss(generated, face)}
        if self.perceptual_loss is not None:
            # MuseTalk averages over scales' sums; the pyramid loss sums over scales
            terms["perceptual"] = self.perceptual_loss(generated / 2 + 0.5, face / 2 + 0.5)
        if self.active("latent_l1"):
            terms["latent_l1"] = F.l1_loss(outputs["latents"], outputs["target_latents"])
        return self.total(terms)
