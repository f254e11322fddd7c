"""The lip-sync U-Net's loss: pixel L1, perceptual, and sync through a frozen SyncNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionlab.losses.base import TaskLoss
from motionlab.losses.perceptual import PerceptualPyramidLoss
from motionlab.losses.sync import sync_pair_loss
from motionlab.models.lipsync import syncnet_audio


class LipSyncLoss(TaskLoss):
    """``l1 * |pred - target| + perceptual_weight * perceptual(pred, target) + sync * BCE(SyncNet(pred, audio), 1)``.

    Args:
        l1: weight of the pixel L1 over the whole 320 x 320 crop.
        perceptual: a :class:`PerceptualPyramidLoss` (offline backbone) or ``None``.
        perceptual_weight: its weight.
        sync: weight of the sync loss through the frozen SyncNet the task binds as ``syncnet``; 0 turns it off.

    ``outputs``: ``image`` (B, 3, 320, 320); ``batch``: ``face`` (the target) and ``audio`` (U-Net layout).
    """

    def __init__(self, l1: float = 1.0, perceptual: PerceptualPyramidLoss | None = None, perceptual_weight: float = 0.01, sync: float = 0.0):
        super().__init__(l1=l1, perceptual=perceptual_weight if perceptual is not None else 0.0, sync=sync)
        self.perceptual = perceptual

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        generated, face = outputs["image"], batch["face"]
        terms = {"l1": F.l1_loss(generated, face)}
        if self.active("perceptual"):
            terms["perceptual"] = self.perceptual(generated, face)
        if self.active("sync"):
            syncnet = self.network("syncnet")
            audio_embedding, face_embedding = syncnet(generated, syncnet_audio(batch["audio"], syncnet.mode))
            terms["sync"] = sync_pair_loss(audio_embedding, face_embedding, torch.ones(len(face), device=face.device))
        return self.total(terms)
