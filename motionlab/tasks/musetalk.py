"""MuseTalk 1.5's training (its ``train.py``): the U-Net learns to inpaint the lower half of a face in the frozen VAE's
latent space from a reference frame and the frozen Whisper encoder's audio context, judged on the decoded face (stage
1), then also by critics of the face and the mouth and an expert SyncNet (stage 2). At inference the release folder or
a run's checkpoint runs through :class:`MuseTalkPredictor` (:mod:`motionlab.inference.musetalk`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motionlab.data.batches import MuseTalkBatch
from motionlab.losses.musetalk import MuseTalkLoss
from motionlab.models import freeze
from motionlab.models.musetalk import MuseTalk, context_width, padded_hidden
from motionlab.tasks.base import MotionlabTask
from motionlab.tasks.musetalk_predictor import masked_faces
from motionlab.utils.errors import InputError


class MuseTalkTask(MotionlabTask):
    """Trains ``net``'s U-Net (``musetalk_v15``: its VAE, Whisper encoder and face parser stay frozen, as in MuseTalk)
    on :class:`~motionlab.data.lipsync.MuseTalkDataset` samples (``data.samples=musetalk``): each frame's masked latents
    and its reference's latents in, one U-Net step at timestep 0 with the frame's Whisper context, the prediction
    decoded; loss :class:`~motionlab.losses.musetalk.MuseTalkLoss`.

    Stage 2 (MuseTalk's ``stage2.yaml``): with ``discriminator`` / ``mouth_discriminator``
    (:class:`~motionlab.models.musetalk.PatchDiscriminator`) and ``discriminator_optimizer`` every batch takes a U-Net
    step, then a step of the critics on the same results (each clipped to ``gradient_clip``, as MuseTalk's
    ``max_grad_norm``); with ``syncnet`` (Wav2Lip's expert, frozen) the loss's sync term scores 5-frame windows.

    Validation logs ``l1``, ``mouth_l1`` (the lower half, which the U-Net generates; [0, 1] scale) and the reference's
    ``mouth_l1_reference`` (copying the reference: the trivial answer).

    Args:
        fps: the clips' frame rate (the audio context's padding depends on it, as at inference).
    """

    task_name = "musetalk"

    def __init__(self, net: MuseTalk, loss: MuseTalkLoss, optimizer: Callable, scheduler: Callable | None = None, fps: float = 25.0,
                 discriminator: nn.Module | None = None, mouth_discriminator: nn.Module | None = None,
                 discriminator_optimizer: Callable | None = None, syncnet: nn.Module | None = None, gradient_clip: float = 1.0):
        critics = {"discriminator": discriminator, "mouth_discriminator": mouth_discriminator}
        if loss is not None:
            for term, network in loss.critics().items():
                if critics[network] is None:
                    raise InputError(f"loss.{term} > 0 needs model.{network} (and model.discriminator_optimizer), or loss.{term}=0")
            if loss.active("sync") and syncnet is None:
                raise InputError("loss.sync > 0 needs the expert SyncNet: model.syncnet.ckpt=lipsync_expert.pth (Wav2Lip's), or loss.sync=0")
        has_critics = any(critic is not None for critic in critics.values())
        if has_critics != (discriminator_optimizer is not None):
            raise InputError("model.discriminator / mouth_discriminator and model.discriminator_optimizer go together (stage 2's GAN)")
        optimizers = {"net": optimizer, "discriminator": discriminator_optimizer} if has_critics else optimizer
        super().__init__(optimizer=optimizers, scheduler={"net": scheduler} if has_critics and scheduler is not None else scheduler)
        self.net, self.loss, self.fps, self.gradient_clip = net, loss, fps, gradient_clip
        self.discriminator, self.mouth_discriminator = discriminator, mouth_discriminator
        self.add_helper("syncnet", syncnet)
        for part in self._frozen_parts():
            freeze(part)
        if loss is not None:
            loss.bind(discriminator=discriminator, mouth_discriminator=mouth_discriminator, syncnet=self.syncnet)

    def _frozen_parts(self) -> tuple[nn.Module, ...]:
        return self.net.vae, self.net.audio_encoder, self.net.face_parser

    def _critics(self) -> list[nn.Module]:
        return [critic for critic in (self.discriminator, self.mouth_discriminator) if critic is not None]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"net": [p for p in self.net.parameters() if p.requires_grad]}
        if "discriminator" in self.optimizer_factories:
            groups["discriminator"] = [p for critic in self._critics() for p in critic.parameters()]
        return groups

    def train(self, mode: bool = True) -> "MuseTalkTask":
        super().train(mode)
        for part in self._frozen_parts():
            part.eval()
        return self

    @torch.no_grad()
    def audio_context(self, batch: MuseTalkBatch) -> torch.Tensor:
        """(B x T, context_length, D): each frame's Whisper hidden states, cut to its audio and padded as at inference,
        read from its start (MuseTalk's ``process_audio_features``)."""
        states = self.net.audio_encoder(batch["whisper_mel"], output_hidden_states=True).hidden_states
        hidden = torch.stack(states, dim=2)
        width = context_width()
        windows = []
        for b, (starts, frames) in enumerate(zip(batch["audio_start"], batch["audio_frames"])):
            padded = padded_hidden(hidden[b : b + 1], int(frames), self.fps)[0]
            windows += [padded[int(start) : int(start) + width] for start in starts]
        return torch.stack(windows).flatten(1, 2)

    def forward(self, face: torch.Tensor, reference: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Faces and references (N, 3, 256, 256) in [-1, 1], audio context (N, ...) -> ``image`` (decoded), ``latents``
        (predicted) and, where the loss has a latent term, ``target_latents`` (the face's: one more VAE encode)."""
        with torch.no_grad():
            inputs = torch.cat([self.net.encode(masked_faces(face)), self.net.encode(reference)], dim=1)
            target = self.net.encode(face) if self.loss is not None and self.loss.active("latent_l1") else None
        predicted = self.net(inputs, audio)
        return {"image": self.net.decode(predicted), "latents": predicted, **({"target_latents": target} if target is not None else {})}

    def _outputs(self, batch: MuseTalkBatch) -> dict[str, torch.Tensor]:
        return self(batch["face"].flatten(0, 1), batch["reference"].flatten(0, 1), self.audio_context(batch))

    def training_step(self, batch: MuseTalkBatch, batch_idx: int) -> torch.Tensor | None:
        critics = self._critics()
        for critic in critics:
            critic.requires_grad_(False)  # the U-Net's step moves the U-Net only
        outputs = {**self._outputs(batch), "step": self.global_step}
        terms = self.loss(outputs, batch)
        self.log_terms("train", terms, batch_size=len(batch["face"]))
        if not critics:
            return terms["total"]
        self.manual_step("net", terms["total"], self.gradient_clip)
        for critic in critics:
            critic.requires_grad_(True)
        critic_terms = self.loss(outputs, batch, phase="discriminator")
        self.log_terms("train", {f"critic_{name}": value for name, value in critic_terms.items()}, batch_size=len(batch["face"]))
        self.manual_step("discriminator", critic_terms["total"], self.gradient_clip)
        return None

    def _evaluation_step(self, batch: MuseTalkBatch, split: str) -> None:
        face, reference = batch["face"].flatten(0, 1), batch["reference"].flatten(0, 1)
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
        generated = self._outputs(batch)["image"].clamp(-1, 1)
        face, reference = batch["face"].flatten(0, 1), batch["reference"].flatten(0, 1)
        unit = lambda images: images / 2 + 0.5  # noqa: E731
        rows = [side_by_side(r, m, g, f) for r, m, g, f in zip(unit(reference), unit(masked_faces(face)), unit(generated), unit(face))]
        return np.concatenate(rows, axis=0), "reference | masked | generated | target"
