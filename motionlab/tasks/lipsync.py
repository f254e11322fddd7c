"""Lip-sync tasks: the audio-visual sync models (``ave`` encoder, SyncNet) and the SyncTalk_2D-layout U-Net.

Batches come from :class:`motionlab.data.lipsync.LipSyncDataModule`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motionlab.losses.lipsync import LipSyncLoss, sync_contrastive_loss, sync_pair_loss, sync_probability
from motionlab.metrics.sync import SyncScores
from motionlab.tasks.base import MotionlabTask

# (x, y, width, height) blanked in the current frame's 320 crop: SyncTalk_2D's rectangle
SYNCTALK_MASK = (5, 5, 310, 305)
# rows / columns of the 320 crop scored as the mouth region (the crop starts at the nose bridge)
MOUTH_REGION = (slice(160, 310), slice(60, 260))


def lower_face(face: torch.Tensor) -> torch.Tensor:
    """The bottom half (B, 3, 160, 320) of (B, 3, 320, 320) face crops: what the mouth shows."""
    return face[..., face.shape[-2] // 2 :, :]


def random_shift(images: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each image moved by its own random offset of up to ``max_shift`` pixels (edges replicated): crops of one
    clip then differ by more than their head pose, so a sync model cannot match frames by position alone."""
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, [max_shift] * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), device=images.device)
    return torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets.tolist())])


def syncnet_audio(audio: torch.Tensor, mode: str) -> torch.Tensor:
    """The SyncNet's audio input from the U-Net layout: all of it, except for ``wenet`` whose SyncNet
    reads the centre 8 of the 16 context frames (channels 64:192 of 256)."""
    return audio[:, 64:192] if mode == "wenet" else audio


def mask_face(face: torch.Tensor, rect: tuple[int, int, int, int] = SYNCTALK_MASK) -> torch.Tensor:
    """A copy of (B, 3, H, W) faces with the ``(x, y, width, height)`` rectangle set to black."""
    x, y, w, h = rect
    masked = face.clone()
    masked[..., y : y + h, x : x + w] = 0
    return masked


class SyncTask(MotionlabTask):
    """Trains a two-tower audio-visual model on in-sync pairs and off-sync pairs (the same face with audio
    from at least ``data.min_offset`` frames away).

    ``loss_type``: ``bce`` is Wav2Lip's BCE on cosine similarity (in-sync label 1, off-sync label 0), which
    makes the cosine a sync probability (what the U-Net's sync loss needs); ``contrastive`` is InfoNCE with
    the batch's other audio and the off-sync windows as negatives (faster to learn an embedding).

    ``net`` has ``embed_face`` and ``embed_audio``: the ``ave`` :class:`AudioVisualEncoder` (lower-face
    crops and mel windows: ``audio_key="mel"``) or a :class:`SyncNet` (full crops and U-Net-layout features:
    ``audio_key="audio"``). Validation logs ``sync_acc``: the fraction of held-out frames whose in-sync audio
    is nearer than their off-sync audio; ``sync_bce_acc`` (pairs classified at 0.5, ``bce`` only) and, per
    held-out clip, the offset sweep of :class:`SyncScores` (``*_ours``: our SyncNet, not published LSE numbers).
    """

    task_name = "lipsync_sync"

    def __init__(self, net: nn.Module, optimizer: Callable, scheduler: Callable | None = None, audio_key: str = "audio",
                 face_region: str = "full", loss_type: str = "bce", temperature: float = 0.07, max_shift: int = 0, max_offset: int = 15):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        if audio_key not in ("mel", "audio") or face_region not in ("full", "lower") or loss_type not in ("bce", "contrastive"):
            raise ValueError(f"SyncTask: audio_key must be mel|audio, face_region full|lower and loss_type bce|contrastive, "
                             f"got {audio_key!r}, {face_region!r}, {loss_type!r}")
        self.net, self.audio_key, self.face_region = net, audio_key, face_region
        self.loss_type, self.temperature, self.max_shift = loss_type, temperature, max_shift
        self.mode = getattr(net, "mode", "ave")
        self.max_offset = max_offset
        self._val_embeddings: list[tuple[torch.Tensor, ...]] = []

    def _face(self, batch: dict) -> torch.Tensor:
        face = random_shift(batch["face"], self.max_shift) if self.training else batch["face"]
        return lower_face(face) if self.face_region == "lower" else face

    def _audio(self, batch: dict, key: str) -> torch.Tensor:
        audio = batch[key]
        return audio if self.audio_key == "mel" else syncnet_audio(audio, self.mode)

    def _pairs(self, batch: dict) -> tuple[torch.Tensor, ...]:
        face = self.net.embed_face(self._face(batch))
        audio = self.net.embed_audio(torch.cat([self._audio(batch, self.audio_key), self._audio(batch, f"{self.audio_key}_offsync")]))
        audio_sync, audio_off = audio.chunk(2)
        return face, audio_sync, audio_off

    def _loss(self, face, audio_sync, audio_off) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        in_sync, off_sync = sync_probability(audio_sync, face), sync_probability(audio_off, face)
        scores = {"sync_acc": (in_sync > off_sync).float().mean()}
        if self.loss_type == "contrastive":
            return sync_contrastive_loss(audio_sync, face, audio_off, self.temperature), scores
        ones, zeros = torch.ones(len(face), device=face.device), torch.zeros(len(face), device=face.device)
        scores["sync_bce_acc"] = torch.cat([in_sync > 0.5, off_sync <= 0.5]).float().mean()
        return 0.5 * (sync_pair_loss(audio_sync, face, ones) + sync_pair_loss(audio_off, face, zeros)), scores

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, scores = self._loss(*self._pairs(batch))
        self.log("train/loss", loss, prog_bar=True)
        for name, value in scores.items():
            self.log(f"train/{name}", value)
        return loss

    def _evaluation_step(self, batch: dict, split: str) -> None:
        face, audio_sync, audio_off = self._pairs(batch)
        loss, scores = self._loss(face, audio_sync, audio_off)
        self.log(f"{split}/loss", loss, batch_size=len(face), sync_dist=True)
        for name, value in scores.items():
            self.log(f"{split}/{name}", value, batch_size=len(face), prog_bar=name == "sync_acc", sync_dist=True)
        self._val_embeddings.append((batch["clip"], batch["frame"], face, audio_sync))

    def _evaluation_epoch_end(self, split: str) -> None:
        for name, value in clip_sync_scores(self, self._val_embeddings, self.max_offset).items():
            self.log(f"{split}/{name}", value)
        self._val_embeddings.clear()


def clip_sync_scores(task: MotionlabTask, embeddings: list[tuple[torch.Tensor, ...]], max_offset: int) -> dict[str, torch.Tensor]:
    """The offset sweep over each held-out clip's frames, from (clip, frame, face, audio) batches gathered on all ranks.

    Every rank gathers every clip whole, so a fresh local :class:`SyncScores` gives the same answer on all of them.
    """
    if not embeddings:
        return {}
    scores = SyncScores(max_offset=max_offset).to(task.device)
    clip, frame, face, audio = (torch.cat(parts) for parts in zip(*embeddings))
    if task.trainer.world_size > 1:  # every rank sees every clip whole (padded samples repeat frames: deduplicated)
        clip, frame, face, audio = (task.all_gather(t).flatten(0, 1) for t in (clip, frame, face, audio))
    for c in clip.unique():
        chosen = (clip == c).nonzero().squeeze(1)
        frames, first = frame[chosen].unique(return_inverse=True)
        order = torch.zeros(len(frames), dtype=torch.long, device=chosen.device).scatter_(0, first, chosen)
        if len(frames) > scores.max_offset:
            scores.update(face[order].float(), audio[order].float())
    return scores.compute() if int(scores.clips) > 0 else {}


class LipSyncTask(MotionlabTask):
    """Trains the SyncTalk_2D-layout U-Net: (reference crop + masked current crop, audio) -> current crop.

    Args:
        net: a :class:`LipSyncUNet`.
        loss: a :class:`LipSyncLoss`.
        syncnet_ckpt: a trained SyncNet (``lipsync_syncnet`` run or SyncTalk_2D file) for the sync loss and
            the held-out sync scores; frozen. Needed when ``loss.sync > 0``.
        mask: the ``(x, y, width, height)`` rectangle blanked in the current frame (SyncTalk_2D's by default).
    """

    task_name = "lipsync"

    def __init__(self, net: nn.Module, loss: LipSyncLoss, optimizer: Callable, scheduler: Callable | None = None,
                 syncnet_ckpt: str | None = None, mask: tuple[int, int, int, int] = SYNCTALK_MASK, max_offset: int = 15):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        self.net, self.loss, self.mask = net, loss, tuple(mask)
        if loss.sync > 0 and syncnet_ckpt is None:
            raise ValueError("loss.sync > 0 needs model.syncnet_ckpt: train experiment=lipsync_syncnet_quick first, or set loss.sync=0")
        self.syncnet = None
        if syncnet_ckpt is not None:
            from motionlab.inference.lipsync import load_syncnet

            self.syncnet = load_syncnet(syncnet_ckpt, mode=net.mode).requires_grad_(False)
        self.max_offset = max_offset
        self._val_embeddings: list[tuple[torch.Tensor, ...]] = []

    def train(self, mode: bool = True) -> "LipSyncTask":
        super().train(mode)
        if self.syncnet is not None:
            self.syncnet.eval()  # frozen: BatchNorm keeps its statistics
        return self

    def forward(self, reference: torch.Tensor, face: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([reference, mask_face(face, self.mask)], dim=1), audio)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        face = batch["face"]
        generated = self(batch["reference"], face, batch["audio"])
        terms = {"l1": self.loss.l1 * F.l1_loss(generated, face)}
        if self.loss.perceptual is not None and self.loss.perceptual_weight > 0:
            terms["perceptual"] = self.loss.perceptual_weight * self.loss.perceptual(generated, face)
        if self.loss.sync > 0:
            audio_embedding, face_embedding = self.syncnet(generated, syncnet_audio(batch["audio"], self.net.mode))
            terms["sync"] = self.loss.sync * sync_pair_loss(audio_embedding, face_embedding, torch.ones(len(face), device=face.device))
        total = sum(terms.values())
        self.log("train/loss", total, prog_bar=True)
        for name, value in terms.items():
            self.log(f"train/{name}", value)
        return total

    @torch.no_grad()
    def preview(self, dataset, num_samples: int) -> tuple[np.ndarray, str]:
        """Rows of held-out frames: reference | masked input | generated | target, as a uint8 grid."""
        from motionlab.callbacks.preview import side_by_side

        indices = np.linspace(0, len(dataset) - 1, num_samples).round().astype(int)
        samples = [dataset[int(i)] for i in indices]
        reference, face, audio = (torch.stack([s[key] for s in samples]).to(self.device) for key in ("reference", "face", "audio"))
        generated = self(reference, face, audio)
        rows = [side_by_side(r, mask_face(f[None], self.mask)[0], g, f) for r, f, g in zip(reference, face, generated)]
        return np.concatenate(rows, axis=0), "reference | masked | generated | target"

    def _evaluation_step(self, batch: dict, split: str) -> None:
        face = batch["face"]
        generated = self(batch["reference"], face, batch["audio"]).clamp(0, 1)
        rows, cols = MOUTH_REGION
        n = len(face)
        self.log(f"{split}/l1", F.l1_loss(generated, face), batch_size=n, prog_bar=True, sync_dist=True)
        self.log(f"{split}/mouth_l1", F.l1_loss(generated[..., rows, cols], face[..., rows, cols]), batch_size=n, prog_bar=True, sync_dist=True)
        # the trivial baseline: the reference frame's mouth as the answer
        self.log(f"{split}/mouth_l1_reference", F.l1_loss(batch["reference"][..., rows, cols], face[..., rows, cols]), batch_size=n, sync_dist=True)
        if self.syncnet is not None:
            audio_embedding, face_embedding = self.syncnet(generated, syncnet_audio(batch["audio"], self.net.mode))
            self.log(f"{split}/sync_prob", sync_probability(audio_embedding, face_embedding).mean(), batch_size=n, sync_dist=True)
            self._val_embeddings.append((batch["clip"], batch["frame"], face_embedding, audio_embedding))

    def _evaluation_epoch_end(self, split: str) -> None:
        for name, value in clip_sync_scores(self, self._val_embeddings, self.max_offset).items():
            self.log(f"{split}/{name}", value)
        self._val_embeddings.clear()
