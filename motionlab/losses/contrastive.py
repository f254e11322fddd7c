"""Contrastive objectives on unit embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, extra_negatives: torch.Tensor | None = None, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of (B, D) unit embeddings: anchor i must pick positive i among all positives
    (and the (N, D) ``extra_negatives``), and positive i must pick anchor i among all anchors."""
    candidates = positives if extra_negatives is None else torch.cat([positives, extra_negatives])  # column i < B: i's positive
    targets = torch.arange(len(anchors), device=anchors.device)
    anchor_to_positive = anchors @ candidates.T / temperature
    positive_to_anchor = positives @ anchors.T / temperature
    return 0.5 * (F.cross_entropy(anchor_to_positive, targets) + F.cross_entropy(positive_to_anchor, targets))
