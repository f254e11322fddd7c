"""Wav2Lip's generator loss: L1 reconstruction and the expert lip-sync loss through its frozen SyncNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionlab.losses.base import TaskLoss
from motionlab.losses.sync import sync_pair_loss
from motionlab.models.wav2lip import expert_sync_input


class Wav2LipLoss(TaskLoss):
    """``l1 * |generated - faces| + sync * BCE(cos(SyncNet(audio), SyncNet(lower halves of the 5 generated frames)), 1)``
    (Wav2Lip's ``recon_loss`` and ``get_sync_loss``; the release's weights: 0.97 / 0.03 once the expert sync loss is
    low, its GAN variant adds a discriminator this does not have).

    ``outputs``: ``image`` (B, 5, 3, 96, 96); ``batch``: ``faces`` (the targets) and ``sync_mel``. Binds ``syncnet``
    (the expert, frozen) when ``sync`` > 0.
    """

    def __init__(self, l1: float = 0.97, sync: float = 0.03):
        super().__init__(l1=l1, sync=sync)

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        generated, faces = outputs["image"], batch["faces"]
        terms = {"l1": F.l1_loss(generated, faces)}
        if self.active("sync"):
            audio_embedding, face_embedding = self.network("syncnet")(batch["sync_mel"], expert_sync_input(generated))
            terms["sync"] = sync_pair_loss(audio_embedding, face_embedding, torch.ones(len(faces), device=faces.device))
        return self.total(terms)
