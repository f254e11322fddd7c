"""Lip-sync losses: the SyncNet pair loss (Wav2Lip's BCE on cosine similarity) and the U-Net's weighted sum."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from motionlab.losses.descriptor import PerceptualPyramidLoss


def sync_probability(audio_embedding: torch.Tensor, face_embedding: torch.Tensor) -> torch.Tensor:
    """(B,) cosine similarity of unit (B, D) embeddings, read as P(in sync) (clamped into (0, 1) for the BCE)."""
    if audio_embedding.shape != face_embedding.shape or audio_embedding.ndim != 2:
        raise ValueError(f"sync embeddings must be two (B, D) tensors of one shape, got {tuple(audio_embedding.shape)} and {tuple(face_embedding.shape)}")
    return (audio_embedding * face_embedding).sum(dim=1).clamp(1e-6, 1.0 - 1e-6)


def sync_pair_loss(audio_embedding: torch.Tensor, face_embedding: torch.Tensor, in_sync: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of :func:`sync_probability` against ``in_sync`` (B,) labels in {0, 1}."""
    return F.binary_cross_entropy(sync_probability(audio_embedding, face_embedding), in_sync.to(audio_embedding.dtype))


def sync_contrastive_loss(audio_embedding: torch.Tensor, face_embedding: torch.Tensor, offsync_audio: torch.Tensor,
                          temperature: float = 0.07) -> torch.Tensor:
    """InfoNCE over a batch: each face's in-sync audio against the other faces' audio and every off-sync window.

    (B, D) unit embeddings; ``offsync_audio`` (B, D) are extra negatives from the same clips, hard ones at
    least ``min_offset`` frames away. Symmetric: audio -> face over the in-sync faces as well.
    """
    candidates = torch.cat([audio_embedding, offsync_audio])  # (2B, D): column i < B is face i's positive
    logits = face_embedding @ candidates.T / temperature
    targets = torch.arange(len(face_embedding), device=face_embedding.device)
    audio_to_face = audio_embedding @ face_embedding.T / temperature
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(audio_to_face, targets))


class LipSyncLoss(nn.Module):
    """``l1 * |pred - target| + perceptual_weight * perceptual(pred, target) + sync * BCE(SyncNet(pred, audio), 1)``.

    Args:
        l1: weight of the pixel L1 over the whole 320 x 320 crop.
        perceptual: a :class:`PerceptualPyramidLoss` (offline backbone) or ``None``.
        perceptual_weight: its weight.
        sync: weight of the sync loss from a frozen SyncNet (the task's ``syncnet_ckpt``); 0 turns it off.
    """

    def __init__(self, l1: float = 1.0, perceptual: PerceptualPyramidLoss | None = None, perceptual_weight: float = 0.01, sync: float = 0.0):
        super().__init__()
        self.l1, self.perceptual, self.perceptual_weight, self.sync = l1, perceptual, perceptual_weight, sync
