"""Perceptual losses on frozen, offline ImageNet features: FOMM's multi-scale pyramid (shared by the descriptor and
lip-sync losses)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from motionlab.metrics.features import IMAGENET_MEAN, IMAGENET_STD, load_efficientnet_lite0
from motionlab.models.fomm import AntiAliasInterpolation2d


class FeaturePyramid(nn.Module):
    """Frozen multi-layer ImageNet features of (B, 3, H, W) images in [0, 1] for perceptual losses.

    ``backbone="efficientnet_lite0"`` (default, offline: weights from the installed package) gives its
    five feature stages; ``backbone="vgg19"`` with ``weights_path`` (torchvision's ``vgg19`` state dict)
    gives FOMM's relu1_1 ... relu5_1. Nothing is downloaded.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", weights_path: str | None = None):
        super().__init__()
        if backbone == "efficientnet_lite0":
            self.net = load_efficientnet_lite0(features_only=True)
            self.slices = None
        elif backbone == "vgg19":
            import torchvision

            from motionlab.utils.checkpoint import load_checkpoint, load_state_dict_strict

            if weights_path is None:
                raise FileNotFoundError("vgg19 perceptual features need weights_path (torchvision vgg19 state dict); nothing is downloaded")
            vgg = torchvision.models.vgg19()
            load_state_dict_strict(vgg, load_checkpoint(weights_path), str(weights_path))
            layers = vgg.features
            self.net = layers
            self.slices = [(0, 2), (2, 7), (7, 12), (12, 21), (21, 30)]  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
        else:
            raise ValueError(f"unknown perceptual backbone {backbone!r}; use efficientnet_lite0 or vgg19")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "FeaturePyramid":
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        if self.slices is None:
            return self.net(x)
        features = []
        for start, stop in self.slices:
            for layer in self.net[start:stop]:
                x = layer(x)
            features.append(x)
        return features


class PerceptualPyramidLoss(nn.Module):
    """Sum over image scales and feature layers of ``weight_l * mean |f_l(down_s(pred)) - f_l(down_s(target))|``."""

    def __init__(self, features: FeaturePyramid, scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125), layer_weights: Sequence[float] = (10, 10, 10, 10, 10)):
        super().__init__()
        self.features = features
        self.scales = list(scales)
        self.layer_weights = list(layer_weights)
        self.pyramid = nn.ModuleList(nn.Identity() if s == 1 else AntiAliasInterpolation2d(3, s) for s in self.scales)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = prediction.new_zeros(())
        for down in self.pyramid:
            predicted_features = self.features(down(prediction))
            with torch.no_grad():
                target_features = self.features(down(target))
            for weight, a, b in zip(self.layer_weights, predicted_features, target_features):
                total = total + weight * (a - b).abs().mean()
        return total
