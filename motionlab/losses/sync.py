"""Audio-visual sync: the SyncNet pair loss (Wav2Lip's BCE on cosine similarity) and the sync tasks' loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionlab.losses.base import TaskLoss
from motionlab.losses.contrastive import info_nce


def sync_probability(audio_embedding: torch.Tensor, face_embedding: torch.Tensor) -> torch.Tensor:
    """(B,) cosine similarity of unit (B, D) embeddings, read as P(in sync) (clamped into (0, 1) for the BCE)."""
    if audio_embedding.shape != face_embedding.shape or audio_embedding.ndim != 2:
        raise ValueError(f"sync embeddings must be two (B, D) tensors of one shape, got {tuple(audio_embedding.shape)} and {tuple(face_embedding.shape)}")
    return (audio_embedding * face_embedding).sum(dim=1).clamp(1e-6, 1.0 - 1e-6)


def sync_pair_loss(audio_embedding: torch.Tensor, face_embedding: torch.Tensor, in_sync: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of :func:`sync_probability` against ``in_sync`` (B,) labels in {0, 1}."""
    return F.binary_cross_entropy(sync_probability(audio_embedding, face_embedding), in_sync.to(audio_embedding.dtype))


class SyncLoss(TaskLoss):
    """The sync models' loss on in-sync and off-sync pairs of one face.

    ``kind="bce"``: Wav2Lip's BCE on cosine similarity (in-sync label 1, off-sync label 0), which makes the cosine
    a sync probability (what the U-Net's sync loss needs). ``kind="contrastive"``: InfoNCE with the batch's other
    audio and the off-sync windows as negatives (faster to learn an embedding). Diagnostics: ``sync_acc`` (in-sync
    nearer than off-sync) and, for ``bce``, ``sync_bce_acc`` (pairs classified at 0.5).

    ``outputs``: unit (B, D) embeddings ``face``, ``audio`` (in sync) and ``audio_offsync``.
    """

    def __init__(self, kind: str = "bce", temperature: float = 0.07):
        if kind not in ("bce", "contrastive"):
            raise ValueError(f"sync loss kind must be bce or contrastive, got {kind!r}")
        super().__init__(**{kind: 1.0})
        self.kind, self.temperature = kind, temperature

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        face, audio_sync, audio_off = outputs["face"], outputs["audio"], outputs["audio_offsync"]
        in_sync, off_sync = sync_probability(audio_sync, face), sync_probability(audio_off, face)
        scores = {"sync_acc": (in_sync > off_sync).float().mean()}
        if self.kind == "contrastive":
            return {**self.total({"contrastive": info_nce(face, audio_sync, audio_off, self.temperature)}), **scores}
        ones, zeros = torch.ones(len(face), device=face.device), torch.zeros(len(face), device=face.device)
        scores["sync_bce_acc"] = torch.cat([in_sync > 0.5, off_sync <= 0.5]).float().mean()
        bce = 0.5 * (sync_pair_loss(audio_sync, face, ones) + sync_pair_loss(audio_off, face, zeros))
        return {**self.total({"bce": bce}), **scores}
