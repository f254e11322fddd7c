"""MuseTalk 1.5's training (its ``train.py``, stage 1): the U-Net learns to inpaint the lower half of a face in the
frozen VAE's latent space from a reference frame and the frozen Whisper encoder's audio context, judged on the decoded
face. At inference the release folder or a run's checkpoint runs through :class:`MuseTalkPredictor`
(:mod:`motionlab.inference.musetalk`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from motionlab.data.batches import MuseTalkBatch
from motionlab.losses.musetalk import MuseTalkLoss
from motionlab.models import freeze
from motionlab.models.musetalk import MuseTalk, context_width, padded_hidden
from motionlab.tasks.base import MotionlabTask
from motionlab.tasks.musetalk_predictor import masked_faces


class MuseTalkTask(MotionlabTask):
    """Trains ``net``'s U-Net (``musetalk_v15``: its VAE, Whisper encoder and face parser stay frozen, as in MuseTalk)
    on :class:`~motionlab.data.lipsync.MuseTalkDataset` samples (``data.samples=musetalk``): the face's masked latents
    and the reference's latents in, one U-Net step at timestep 0 with the frame's Whisper context, the prediction
    decoded; loss :class:`~motionlab.losses.musetalk.MuseTalkLoss`.

    Validation logs ``l1``, ``mouth_l1`` (the lower half, which the U-Net generates; [0, 1] scale) and the reference's
    ``mouth_l1_reference`` (copying the reference: the trivial answer).

    Args:
        fps: the clips' frame rate (the audio context's padding depends on it, as at inference).
    """

    task_name = "musetalk"

    def __init__(self, net: MuseTalk, loss: MuseTalkLoss, optimizer: Callable, scheduler: Callable | None = None, fps: float = 25.0):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        self.net, self.loss, self.fps = net, loss, fps
        for part in (net.vae, net.audio_encoder, net.face_parser):
            freeze(part)

    def train(self, mode: bool = True) -> "MuseTalkTask":
        super().train(mode)
        for part in (self.net.vae, self.net.audio_encoder, self.net.face_parser):
            part.eval()
        return self

    @torch.no_grad()
    def audio_context(self, batch: MuseTalkBatch) -> torch.Tensor:
        """(B, context_length, D): each sample's Whisper hidden states, cut to its audio and padded as at inference,
        read from its start (MuseTalk's ``process_audio_features``)."""
        states = self.net.audio_encoder(batch["whisper_mel"], output_hidden_states=True).hidden_states
        hidden = torch.stack(states, dim=2)
        width = context_width()
        windows = [padded_hidden(hidden[b : b + 1], int(frames), self.fps)[0, int(start) : int(start) + width]
                   for b, (start, frames) in enumerate(zip(batch["audio_start"], batch["audio_frames"]))]
        return torch.stack(windows).flatten(1, 2)

    def forward(self, face: torch.Tensor, reference: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Faces and references (B, 3, 256, 256) in [-1, 1], audio context -> ``image`` (decoded), ``latents``
        (predicted) and ``target_latents`` (the face's)."""
        with torch.no_grad():
            inputs = torch.cat([self.net.encode(masked_faces(face)), self.net.encode(reference)], dim=1)
            target = self.net.encode(face)
        predicted = self.net(inputs, audio)
        return {"image": self.net.decode(predicted), "latents": predicted, "target_latents": target}

    def training_step(self, batch: MuseTalkBatch, batch_idx: int) -> torch.Tensor:
        terms = self.loss(self(batch["face"], batch["reference"], self.audio_context(batch)), batch)
        self.log_terms("train", terms, batch_size=len(batch["face"]))
        return terms["total"]

    def _evaluation_step(self, batch: MuseTalkBatch, split: str) -> None:
        face, reference = batch["face"], batch["reference"]
        generated = self(face, reference, self.audio_context(batch))["image"].clamp(-1, 1)
        lower, n = slice(face.shape[-2] // 2, None), len(face)
        self.log(f"{split}/l1", F.l1_loss(generated, face) / 2, batch_size=n, prog_bar=True, sync_dist=True)
        self.log(f"{split}/mouth_l1", F.l1_loss(generated[..., lower, :], face[..., lower, :]) / 2, batch_size=n, prog_bar=True, sync_dist=True)
        self.log(f"{split}/mouth_l1_reference", F.l1_loss(reference[..., lower, :], face[..., lower, :]) / 2, batch_size=n, sync_dist=True)

    def _evaluation_epoch_end(self, split: str) -> None:
        """Everything is logged per batch (Lightning averages over the epoch)."""

    @torch.no_grad()
    def preview(self, dataset, num_samples: int) -> tuple[np.ndarray, str]:
        """Rows of held-out frames: reference | masked input | generated | target, as a uint8 grid."""
        from motionlab.data.datamodule import collate
        from motionlab.data.images import side_by_side

        indices = np.linspace(0, len(dataset) - 1, num_samples).round().astype(int)
        batch = collate([dataset[int(i)] for i in indices])
        batch = {key: value.to(self.device) if torch.is_tensor(value) else value for key, value in batch.items()}
        generated = self(batch["face"], batch["reference"], self.audio_context(batch))["image"].clamp(-1, 1)
        unit = lambda images: images / 2 + 0.5  # noqa: E731
        rows = [side_by_side(r, m, g, f) for r, m, g, f in zip(unit(batch["reference"]), unit(masked_faces(batch["face"])), unit(generated), unit(batch["face"]))]
        return np.concatenate(rows, axis=0), "reference | masked | generated | target"
