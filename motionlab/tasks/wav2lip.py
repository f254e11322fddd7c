"""Wav2Lip: its generator trained on talking clips with the expert SyncNet's loss (:class:`Wav2LipTask`), and at inference
its release files (``wav2lip.pth``, ``wav2lip_gan.pth``) or a run's checkpoint as the release's ``inference.py`` runs
them (:class:`Wav2LipPredictor`; :mod:`motionlab.inference.wav2lip` reads the video, detects and crops the faces, and
pastes back)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from motionlab.data.batches import Wav2LipBatch
from motionlab.losses.sync import sync_probability
from motionlab.losses.wav2lip import Wav2LipLoss
from motionlab.models.wav2lip import expert_sync_input, wav2lip_input
from motionlab.tasks.base import MotionlabTask
from motionlab.utils.errors import InputError


class Wav2LipTask(MotionlabTask):
    """Trains Wav2Lip's generator (``wav2lip96``) on 5-frame windows (:class:`~motionlab.data.lipsync.Wav2LipDataset`,
    ``data.samples=wav2lip``): each frame from its crop with the lower half zeroed, a reference window's crop and its
    mel window; loss :class:`~motionlab.losses.wav2lip.Wav2LipLoss` with the expert SyncNet (``syncnet_wav2lip``,
    ``lipsync_expert.pth``) frozen. Everything is BGR, as the release's networks and files are.

    Validation logs ``l1``, ``mouth_l1`` (the lower half, where the mouth is generated), the reference window's
    ``mouth_l1_reference`` (the trivial answer) and, with the SyncNet, ``sync_prob`` of the generated windows.
    """

    task_name = "wav2lip"

    def __init__(self, net: nn.Module, loss: Wav2LipLoss, optimizer: Callable, scheduler: Callable | None = None,
                 syncnet: nn.Module | None = None):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        if loss.active("sync") and syncnet is None:
            raise InputError("loss.sync > 0 needs the expert SyncNet: model.syncnet.ckpt=lipsync_expert.pth (Wav2Lip's), or loss.sync=0")
        self.net = net
        self.add_helper("syncnet", syncnet)
        self.loss = loss.bind(syncnet=self.syncnet)

    def forward(self, faces: torch.Tensor, reference: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, 96, 96) windows, their references and (B, T, 1, 80, 16) mels -> (B, T, 3, 96, 96) generated."""
        b, t = faces.shape[:2]
        generated = self.net(mels.flatten(0, 1), wav2lip_input(faces.flatten(0, 1), reference.flatten(0, 1)))
        return generated.view(b, t, *generated.shape[1:])

    def training_step(self, batch: Wav2LipBatch, batch_idx: int) -> torch.Tensor:
        terms = self.loss({"image": self(batch["faces"], batch["reference"], batch["mels"])}, batch)
        self.log_terms("train", terms)
        return terms["total"]

    def _evaluation_step(self, batch: Wav2LipBatch, split: str) -> None:
        faces = batch["faces"]
        generated = self(faces, batch["reference"], batch["mels"]).clamp(0, 1)
        lower = slice(faces.shape[-2] // 2, None)
        n = len(faces)
        self.log(f"{split}/l1", torch.nn.functional.l1_loss(generated, faces), batch_size=n, prog_bar=True, sync_dist=True)
        self.log(f"{split}/mouth_l1", torch.nn.functional.l1_loss(generated[..., lower, :], faces[..., lower, :]), batch_size=n, prog_bar=True,
                 sync_dist=True)
        self.log(f"{split}/mouth_l1_reference", torch.nn.functional.l1_loss(batch["reference"][..., lower, :], faces[..., lower, :]),
                 batch_size=n, sync_dist=True)
        if self.syncnet is not None:
            audio_embedding, face_embedding = self.syncnet(batch["sync_mel"], expert_sync_input(generated))
            self.log(f"{split}/sync_prob", sync_probability(audio_embedding, face_embedding).mean(), batch_size=n, sync_dist=True)

    def _evaluation_epoch_end(self, split: str) -> None:
        """Everything is logged per batch (Lightning averages over the epoch)."""

    @torch.no_grad()
    def preview(self, dataset, num_samples: int) -> tuple[np.ndarray, str]:
        """Rows of held-out windows' middle frames: reference | masked input | generated | target, as a uint8 grid."""
        from motionlab.data.images import side_by_side

        indices = np.linspace(0, len(dataset) - 1, num_samples).round().astype(int)
        samples = [dataset[int(i)] for i in indices]
        faces, reference, mels = (torch.stack([s[key] for s in samples]).to(self.device) for key in ("faces", "reference", "mels"))
        generated = self(faces, reference, mels)[:, 2].flip(-3)
        middle, masked = faces[:, 2].flip(-3), wav2lip_input(faces[:, 2])[:, :3].flip(-3)
        rows = [side_by_side(r, m, g, f) for r, m, g, f in zip(reference[:, 2].flip(-3), masked, generated, middle)]
        return np.concatenate(rows, axis=0), "reference | masked | generated | target"


