"""The wav2lip task's inference: Wav2LipPredictor (importable without the training stack: no Lightning, no
torchmetrics)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from motionlab.models.wav2lip import wav2lip_input
from motionlab.tasks.predictor import Predictor, register_predictor


@register_predictor
class Wav2LipPredictor(Predictor):
    """(N, 96, 96, 3) uint8 RGB face crops + (N, 1, 80, 16) mel windows -> (N, 96, 96, 3) uint8 RGB generated crops.

    In the release's conventions: the generator sees BGR crops in [0, 1] (lower half zeroed, then the crop itself) and
    its output is truncated to uint8 (``astype(np.uint8)``). ``runner`` computes the generator: the eager network
    (default) or any callable ``(audio, face) -> array`` on float32 arrays (an onnxruntime session of the export).
    """

    families = ("wav2lip",)

    def __init__(self, net: nn.Module):
        super().__init__(net=net)
        self.runner: Callable | None = None

    @classmethod
    def from_models(cls, models: dict[str, nn.Module], settings: dict, **options) -> "Wav2LipPredictor":
        return cls(models["net"])

    @property
    def image_size(self) -> int:
        return self.net.model_info.input_size[0]

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray, mels: torch.Tensor) -> np.ndarray:
        faces = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(0, 3, 1, 2).float() / 255.0
        face = wav2lip_input(faces)
        if self.runner is None:
            out = self.net(mels.to(self.device), face.to(self.device)).float().cpu()
        else:
            out = torch.from_numpy(self.runner(mels.numpy(), face.numpy()))
        generated = (out.permute(0, 2, 3, 1).numpy() * 255.0).astype(np.uint8)
        return np.ascontiguousarray(generated[..., ::-1])
