"""MuseTalk's generator and critic losses (its ``train.py``): L1 on the decoded face, the perceptual pyramid, and in
stage 2 least-squares GAN terms with feature matching for the face and the mouth, and an expert SyncNet's sync loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from motionlab.losses.base import TaskLoss
from motionlab.losses.perceptual import FeaturePyramid, PerceptualPyramidLoss
from motionlab.losses.sync import sync_pair_loss

# MuseTalk resizes faces (and mouth crops, after taking them to 256) to 224 before its VGG pyramid and critics
CRITIC_SIZE, MOUTH_SIZE = 224, 256


def mouth_views(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(N, 3, 256, 256) faces -> (N, 3, 256, 256): each face's (x0, y0, x1, y1) mouth box resized bilinearly to 256
    (MuseTalk's ``get_mouth_region``)."""
    return torch.cat([F.interpolate(image[None, :, y0:y1, x0:x1], size=(MOUTH_SIZE, MOUTH_SIZE), mode="bilinear", align_corners=False)
                      for image, (x0, y0, x1, y1) in zip(images, boxes.tolist())])


def _critic_view(images: torch.Tensor) -> torch.Tensor:
    return F.interpolate(images, size=(CRITIC_SIZE, CRITIC_SIZE), mode="bilinear", align_corners=False)


class MuseTalkLoss(TaskLoss):
    """``l1 * mean |decoded - face| + perceptual * P + latent_l1 * mean |predicted - face latents|`` and, in stage 2,
    ``gan * G(face) + mouth_gan * G(mouth) + feature_matching * (FM(face) + FM(mouth)) + sync * S``.

    ``P`` is MuseTalk's VGG term: the images resized to 224, over the pyramid ``scales``, the mean over the feature layers
    (equal weights, normalised by their sum) of mean |f(down(decoded)) - f(down(face))| on [0, 1] images. The release
    uses ImageNet VGG-19 (``backbone=vgg19`` with ``weights_path``, torchvision's state dict: nothing is downloaded); the
    default is the offline EfficientNet-Lite0 features (:class:`~motionlab.losses.perceptual.FeaturePyramid`).
    ``G`` = mean (1 - D(x))^2 of a critic (:class:`~motionlab.models.musetalk.PatchDiscriminator`) on the 224 px face or
    on the mouth box taken to 256 then 224 (:func:`mouth_views`); ``FM`` = sum over the critic's feature maps of mean
    |D_l(real) - D_l(generated)|; the GAN terms count from step ``gan_start`` (MuseTalk's ``start_gan``), feature
    matching from the start. ``S`` is the BCE of an expert SyncNet's cosine similarity on 5-frame windows (Wav2Lip's
    ``lipsync_expert.pth`` at 96 px: MuseTalk's own is LatentSync's SyncNet on 16 frames, not built here).
    The ``discriminator`` phase gives the critics' least-squares loss (1 - D(real))^2 + D(generated)^2.

    ``outputs``: ``image`` (N, 3, 256, 256) decoded in [-1, 1] (N = batch x window frames), ``latents`` /
    ``target_latents``, ``step``; ``batch``: ``face`` and ``mouth_box`` ((B, T, ...)), ``sync_mel``. Binds
    ``discriminator`` / ``mouth_discriminator`` / ``syncnet`` when their terms are on. MuseTalk 1.5's weights: stage 1
    l1 1, perceptual 0.01; stage 2 adds gan 0.01, mouth_gan 0.01, feature matching 1, sync 0.05.
    """

    def __init__(self, l1: float = 1.0, perceptual: float = 0.01, latent_l1: float = 0.0, gan: float = 0.0, mouth_gan: float = 0.0,
                 feature_matching: float = 1.0, sync: float = 0.0, gan_start: int = 1000, backbone: str = "efficientnet_lite0",
                 weights_path: str | None = None, scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125), layers: int = 5):
        super().__init__(l1=l1, perceptual=perceptual, latent_l1=latent_l1, gan=gan, mouth_gan=mouth_gan, feature_matching=feature_matching,
                         sync=sync, discriminator=1.0)
        self.gan_start = gan_start
        self.perceptual_loss = (PerceptualPyramidLoss(FeaturePyramid(backbone, weights_path), scales, [1.0 / layers] * layers)
                                if perceptual > 0 else None)

    def critics(self) -> dict[str, str]:
        """The critics the terms call: {term: network name}."""
        return {name: network for name, network in (("gan", "discriminator"), ("mouth_gan", "mouth_discriminator")) if self.active(name)}

    def _views(self, term: str, images: torch.Tensor, batch: dict) -> torch.Tensor:
        return _critic_view(images if term == "gan" else mouth_views(images, batch["mouth_box"].flatten(0, 1)))

    def forward(self, outputs: dict, batch: dict, phase: str = "generator") -> dict[str, torch.Tensor]:
        generated, face = outputs["image"], batch["face"].flatten(0, 1)
        schedule = 1.0 if outputs.get("step", 0) >= self.gan_start else 0.0
        if phase == "discriminator":
            value = sum(((1 - self.network(network)(self._views(term, face, batch))[1]) ** 2).mean()
                        + self.network(network)(self._views(term, generated.detach(), batch))[1].pow(2).mean()
                        for term, network in self.critics().items())
            return self.total({"discriminator": value * schedule})
        terms = {"l1": F.l1_loss(generated, face)}
        if self.perceptual_loss is not None:
            terms["perceptual"] = self.perceptual_loss(_critic_view(generated) / 2 + 0.5, _critic_view(face) / 2 + 0.5)
        if self.active("latent_l1"):
            terms["latent_l1"] = F.l1_loss(outputs["latents"], outputs["target_latents"])
        matching = []
        for term, network in self.critics().items():
            critic = self.network(network)
            fake_features, fake_scores = critic(self._views(term, generated, batch))
            with torch.no_grad():
                real_features, _ = critic(self._views(term, face, batch))
            terms[term] = ((1 - fake_scores) ** 2).mean()
            matching.append(sum((real - fake).abs().mean() for real, fake in zip(real_features, fake_features)))
        if matching:
            terms["feature_matching"] = sum(matching)
        if self.active("sync"):
            terms["sync"] = self._sync(generated, batch)
        scheduled = {name: value * schedule if name in ("gan", "mouth_gan") else value for name, value in terms.items()}
        return {**self.total(scheduled), **{name: value for name, value in terms.items()}}

    def _sync(self, generated: torch.Tensor, batch: dict) -> torch.Tensor:
        from motionlab.models.wav2lip import FACE_SIZE, SYNC_FRAMES, expert_sync_input

        b, t = batch["face"].shape[:2]
        if t != SYNC_FRAMES:
            raise ValueError(f"the expert SyncNet scores windows of {SYNC_FRAMES} frames; set data.window_frames={SYNC_FRAMES} (got {t})")
        faces = F.interpolate(generated / 2 + 0.5, size=(FACE_SIZE, FACE_SIZE), mode="bilinear", align_corners=False).flip(-3)  # BGR, as the expert
        audio_embedding, face_embedding = self.network("syncnet")(batch["sync_mel"], expert_sync_input(faces.view(b, t, *faces.shape[1:])))
        return sync_pair_loss(audio_embedding, face_embedding, torch.ones(b, device=generated.device))
