"""MuseTalk's inference around its networks: MuseTalkPredictor (importable without the training stack)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from motionlab.models.musetalk import FACE_SIZE
from motionlab.tasks.predictor import Predictor, register_predictor

# MuseTalk parses faces at 512 x 512
PARSING_SIZE = 512


def masked_faces(faces: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) faces in [-1, 1] with the lower half black (-1): MuseTalk's ``half_mask`` (rows from H / 2 on)."""
    masked = faces.clone()
    masked[:, :, faces.shape[2] // 2 :] = -1
    return masked


def faces_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(N, 256, 256, 3) uint8 RGB -> (N, 3, 256, 256) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1


@register_predictor
class MuseTalkPredictor(Predictor):
    """MuseTalk 1.5 at inference, step for step as its ``inference.py`` / ``realtime_inference.py``:

    - :meth:`audio_windows`: 16 kHz speech -> Whisper's log-mels in 30-s windows -> the encoder's hidden states ->
      (N, 50, D) windows, one per video frame (:func:`motionlab.models.musetalk.whisper_windows`);
    - :meth:`face_latents`: (N, 256, 256, 3) face crops -> (N, 8, 32, 32): the VAE latents of the crop with its lower half
      masked, then of the crop itself (the reference: the template frame, as MuseTalk);
    - ``predictor(latents, audio)``: one U-Net step at timestep 0, VAE decode, rounded to uint8 RGB;
    - :meth:`parse`: BiSeNet's class map of a face region at 512 x 512 (the blending mask's source).

    ``unet_runner`` / ``decoder_runner``: callables on float32 arrays (onnxruntime sessions of the exported graphs)
    that replace the eager U-Net / VAE decoder; None runs PyTorch.
    """

    families = ("musetalk",)

    def __init__(self, net: nn.Module):
        super().__init__(net=net)
        self.unet_runner: Callable | None = None
        self.decoder_runner: Callable | None = None
        # a reduced-precision autocast dtype for the eager U-Net and decoder (motionlab-lipsync precision=bf16), None for fp32
        self.autocast: torch.dtype | None = None

    @classmethod
    def from_models(cls, models: dict[str, nn.Module], settings: dict, **options) -> "MuseTalkPredictor":
        return cls(models["net"])

    @property
    def image_size(self) -> int:
        return FACE_SIZE

    @torch.inference_mode()
    def audio_windows(self, wav: np.ndarray, fps: float) -> torch.Tensor:
        """(N, 2 x 5 x L, D) audio context of N = floor(seconds x fps) video frames of 16 kHz mono ``wav``."""
        return self.net.speech_windows(wav, fps).cpu()

    @torch.inference_mode()
    def face_latents(self, crops: np.ndarray) -> torch.Tensor:
        """(N, 256, 256, 3) uint8 RGB crops -> (N, 8, 32, 32): masked-face latents, then reference latents."""
        faces = faces_to_tensor(crops).to(self.device)
        return torch.cat([self.net.encode(masked_faces(faces)), self.net.encode(faces)], dim=1).cpu()

    @torch.inference_mode()
    def faces(self, latents: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(N, 8, 32, 32) latents + (N, 50, D) audio windows -> (N, 3, 256, 256) decoded faces in [-1, 1] (float32, CPU)."""
        with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            if self.unet_runner is None:
                predicted = self.net(latents.to(self.device), audio.to(self.device))
            else:
                predicted = torch.from_numpy(self.unet_runner(latents.numpy(), audio.numpy()))
            if self.decoder_runner is None:
                return self.net.decode(predicted.to(self.device)).float().cpu()
        return torch.from_numpy(self.decoder_runner(predicted.float().cpu().numpy()))

    def __call__(self, latents: torch.Tensor, audio: torch.Tensor) -> np.ndarray:
        """(N, 8, 32, 32) latents + (N, 50, D) audio windows -> (N, 256, 256, 3) uint8 RGB faces."""
        faces = self.faces(latents, audio)
        return ((faces / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    @torch.inference_mode()
    def parse(self, region: Image.Image) -> np.ndarray:
        """(512, 512) uint8 BiSeNet classes of an RGB face region (resized bilinearly to 512, as MuseTalk's FaceParsing)."""
        image = np.asarray(region.resize((PARSING_SIZE, PARSING_SIZE), Image.BILINEAR), dtype=np.float32) / 255.0
        logits = self.net.face_parser(torch.from_numpy(image).permute(2, 0, 1)[None].to(self.device))
        return logits[0].argmax(0).to(torch.uint8).cpu().numpy()
