"""Lip-sync tasks and predictor: the audio-visual sync models (``ave`` encoder, SyncNet) and the SyncTalk_2D-layout
U-Net, whose input (reference crop + masked current crop) is assembled here, once, for training and inference.

Batches come from :class:`motionlab.data.lipsync_datamodule.LipSyncDataModule`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from motionlab.data.batches import LipSyncBatch
from motionlab.losses.lipsync import LipSyncLoss
from motionlab.losses.sync import SyncLoss, sync_probability
from motionlab.metrics.sync import SyncScores
from motionlab.models import load_pretrained, motionlab_meta
from motionlab.models.lipsync import lipsync_convention, syncnet_audio, to_channel_order
from motionlab.tasks.base import MotionlabTask
from motionlab.tasks.lipsync_predictor import MOUTH_REGION, SYNCTALK_MASK, mask_face, unet_input
from motionlab.utils.checkpoint import load_checkpoint
from motionlab.utils.errors import InputError


def lower_face(face: torch.Tensor) -> torch.Tensor:
    """The bottom half (B, 3, 160, 320) of (B, 3, 320, 320) face crops: what the mouth shows."""
    return face[..., face.shape[-2] // 2 :, :]


def random_shift(images: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each image moved by its own random offset of up to ``max_shift`` pixels (edges replicated): crops of one
    clip then differ by more than their head pose, so a sync model cannot match frames by position alone."""
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, [max_shift] * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), device=images.device)
    return torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets.tolist())])






class SyncTask(MotionlabTask):
    """Trains a two-tower audio-visual model on in-sync pairs and off-sync pairs (the same face with audio
    from at least ``data.min_offset`` frames away), with a :class:`SyncLoss` (``conf/loss/sync.yaml``).

    ``net`` has ``embed_face`` and ``embed_audio``: the ``ave`` :class:`AudioVisualEncoder` (lower-face crops and
    mel windows: ``audio_key="mel"``) or a :class:`SyncNet` (full crops and U-Net-layout features:
    ``audio_key="audio"``). Validation logs the loss's entries (``sync_acc``: the fraction of held-out frames whose
    in-sync audio is nearer than their off-sync audio) and, per held-out clip, the offset sweep of
    :class:`SyncScores` (``*_ours``: our SyncNet, not published LSE numbers).
    """

    task_name = "lipsync_sync"

    def __init__(self, net: nn.Module, loss: SyncLoss, optimizer: Callable, scheduler: Callable | None = None, audio_key: str = "audio",
                 face_region: str = "full", max_shift: int = 0, max_offset: int = 15):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        if audio_key not in ("mel", "audio") or face_region not in ("full", "lower"):
            raise InputError(f"SyncTask: audio_key must be mel|audio and face_region full|lower, got {audio_key!r}, {face_region!r}")
        self.net, self.loss, self.audio_key, self.face_region = net, loss, audio_key, face_region
        self.max_shift, self.max_offset = max_shift, max_offset
        self.mode = getattr(net, "mode", "ave")
        self._val_embeddings: list[tuple[torch.Tensor, ...]] = []

    def _face(self, batch: dict) -> torch.Tensor:
        face = random_shift(batch["face"], self.max_shift) if self.training else batch["face"]
        return lower_face(face) if self.face_region == "lower" else face

    def _audio(self, batch: dict, key: str) -> torch.Tensor:
        audio = batch[key]
        return audio if self.audio_key == "mel" else syncnet_audio(audio, self.mode)

    def _embeddings(self, batch: dict) -> dict[str, torch.Tensor]:
        face = self.net.embed_face(self._face(batch))
        audio = self.net.embed_audio(torch.cat([self._audio(batch, self.audio_key), self._audio(batch, f"{self.audio_key}_offsync")]))
        audio_sync, audio_off = audio.chunk(2)
        return {"face": face, "audio": audio_sync, "audio_offsync": audio_off}

    def training_step(self, batch: LipSyncBatch, batch_idx: int) -> torch.Tensor:
        terms = self.loss(self._embeddings(batch), batch)
        self.log_terms("train", terms)
        return terms["total"]

    def _evaluation_step(self, batch: LipSyncBatch, split: str) -> None:
        outputs = self._embeddings(batch)
        self.log_terms(split, self.loss(outputs, batch), batch_size=len(outputs["face"]), sync_dist=True)
        self._val_embeddings.append((batch["clip"], batch["frame"], outputs["face"], outputs["audio"]))

    def _evaluation_epoch_end(self, split: str) -> None:
        self.log_evaluation(split, clip_sync_scores(self, self._val_embeddings, self.max_offset))
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
        net: a ``lipsync_unet328_*`` U-Net.
        loss: a :class:`LipSyncLoss`.
        syncnet: a trained SyncNet for the sync loss and the held-out sync scores (frozen); needed when ``loss.sync > 0``.
        audio_encoder: the ``ave`` encoder whose features the U-Net reads (frozen); kept in the checkpoint so
            inference turns speech into features with no other file. ``None`` for HuBERT / WeNet U-Nets.
        mask: the ``(x, y, width, height)`` rectangle blanked in the current frame (SyncTalk_2D's by default).
        convention: the data's :class:`~motionlab.models.lipsync.LipSyncConvention` (``model.convention:
            ${data.convention}``), checked against the datamodule's and stored for inference.
    """

    task_name = "lipsync"

    def __init__(self, net: nn.Module, loss: LipSyncLoss, optimizer: Callable, scheduler: Callable | None = None,
                 syncnet: nn.Module | None = None, audio_encoder: nn.Module | None = None,
                 mask: tuple[int, int, int, int] = SYNCTALK_MASK, max_offset: int = 15, convention: str = "motionlab"):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        self.net, self.mask, self.max_offset = net, tuple(mask), max_offset
        self.convention = lipsync_convention(convention)
        if loss.active("sync") and syncnet is None:
            raise InputError("loss.sync > 0 needs model.syncnet.ckpt=<a lipsync_syncnet run or SyncTalk_2D syncnet file>, or set loss.sync=0")
        if syncnet is not None and syncnet.mode != net.mode:
            raise InputError(f"the SyncNet reads {syncnet.mode} features, the U-Net {net.mode}: use syncnet328_{net.mode}")
        if (net.mode == "ave") != (audio_encoder is not None):
            raise InputError(f"a {net.mode} U-Net takes {'the' if net.mode == 'ave' else 'no'} ave audio encoder (model.audio_encoder)")
        self.add_helper("syncnet", syncnet)
        self.add_helper("audio_encoder", audio_encoder)
        self.loss = loss.bind(syncnet=self.syncnet)
        self._val_embeddings: list[tuple[torch.Tensor, ...]] = []

    def predictor_settings(self) -> dict:
        return {"mask": list(self.mask), "convention": self.convention.name}

    def init_from(self, path: str | os.PathLike) -> None:
        """Start from a U-Net's weights; they must have been trained in this task's convention (a SyncTalk_2D file's is
        ``synctalk_2d``), since a model's convention is what its weights learnt."""
        checkpoint = load_checkpoint(path)
        meta = motionlab_meta(checkpoint, path)
        settings = meta.get("predictor", {}) if meta is not None else self.net.model_info.published_settings
        source = settings.get("convention", "motionlab")
        if source != self.convention.name:
            raise InputError(f"init_from {path} holds U-Net weights of the {source} convention, the data is set up for "
                             f"{self.convention.name}: set data.convention={source}")
        load_pretrained(self.net, path, checkpoint)

    def setup(self, stage: str) -> None:
        data = getattr(self.trainer, "datamodule", None)
        if data is not None and getattr(data, "convention", self.convention) != self.convention:
            raise InputError(f"the U-Net is set up for the {self.convention.name} convention, the data for {data.convention.name}: "
                             "set model.convention=${data.convention}")
        super().setup(stage)

    def forward(self, reference: torch.Tensor, face: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.net(unet_input(reference, face, self.mask), audio)

    def training_step(self, batch: LipSyncBatch, batch_idx: int) -> torch.Tensor:
        terms = self.loss({"image": self(batch["reference"], batch["face"], batch["audio"])}, batch)
        self.log_terms("train", terms)
        return terms["total"]

    @torch.no_grad()
    def preview(self, dataset, num_samples: int) -> tuple[np.ndarray, str]:
        """Rows of held-out frames: reference | masked input | generated | target, as a uint8 grid."""
        from motionlab.data.images import side_by_side

        indices = np.linspace(0, len(dataset) - 1, num_samples).round().astype(int)
        samples = [dataset[int(i)] for i in indices]
        reference, face, audio = (torch.stack([s[key] for s in samples]).to(self.device) for key in ("reference", "face", "audio"))
        generated = self(reference, face, audio)
        rgb = [to_channel_order(images, self.convention) for images in (reference, face, generated)]
        rows = [side_by_side(r, mask_face(f[None], self.mask)[0], g, f) for r, f, g in zip(*rgb)]
        return np.concatenate(rows, axis=0), "reference | masked | generated | target"

    def _evaluation_step(self, batch: LipSyncBatch, split: str) -> None:
        face = batch["face"]
        generated = self(batch["reference"], face, batch["audio"]).clamp(0, 1)
        rows, cols = MOUTH_REGION
        n = len(face)
        self.log(f"{split}/l1", torch.nn.functional.l1_loss(generated, face), batch_size=n, prog_bar=True, sync_dist=True)
        self.log(f"{split}/mouth_l1", torch.nn.functional.l1_loss(generated[..., rows, cols], face[..., rows, cols]), batch_size=n, prog_bar=True, sync_dist=True)
        # the trivial baseline: the reference frame's mouth as the answer
        self.log(f"{split}/mouth_l1_reference", torch.nn.functional.l1_loss(batch["reference"][..., rows, cols], face[..., rows, cols]), batch_size=n, sync_dist=True)
        if self.syncnet is not None:
            audio_embedding, face_embedding = self.syncnet(generated, syncnet_audio(batch["audio"], self.net.mode))
            self.log(f"{split}/sync_prob", sync_probability(audio_embedding, face_embedding).mean(), batch_size=n, sync_dist=True)
            self._val_embeddings.append((batch["clip"], batch["frame"], face_embedding, audio_embedding))

    def _evaluation_epoch_end(self, split: str) -> None:
        self.log_evaluation(split, clip_sync_scores(self, self._val_embeddings, self.max_offset))
        self._val_embeddings.clear()


