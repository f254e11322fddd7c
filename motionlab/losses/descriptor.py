"""Losses of unsupervised keypoint learning (FOMM): multi-scale perceptual reconstruction and equivariance."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from motionlab.geometry import RandomAffineTPS
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


def equivariance_losses(detector: Callable[[torch.Tensor], dict], driving: torch.Tensor, kp_driving: dict,
                        transform: RandomAffineTPS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """FOMM's equivariance terms for a random warp ``transform``.

    Keypoints of the warped frame, mapped back through the warp, must equal the frame's keypoints
    (value term); with Jacobians, ``J_driving^-1 (dW J_warped)`` must be the identity (Jacobian term).
    Returns (value loss, Jacobian loss or None).
    """
    warped = detector(transform.warp_images(driving))
    value = (kp_driving["value"] - transform.warp_points(warped["value"])).abs().mean()
    if "jacobian" not in kp_driving or "jacobian" not in warped:
        return value, None
    jacobian_warped = transform.jacobian(warped["value"]) @ warped["jacobian"]
    normalised = torch.inverse(kp_driving["jacobian"]) @ jacobian_warped
    eye = torch.eye(2, device=normalised.device, dtype=normalised.dtype)
    return value, (eye - normalised).abs().mean()


class DescriptorLoss(nn.Module):
    """Weights of the descriptor task's terms (``conf/loss/descriptor.yaml``)."""

    def __init__(self, perceptual: PerceptualPyramidLoss, equivariance_value: float = 10.0, equivariance_jacobian: float = 10.0,
                 sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5, reconstruction_l1: float = 0.0):
        super().__init__()
        self.perceptual = perceptual
        self.equivariance_value, self.equivariance_jacobian = equivariance_value, equivariance_jacobian
        self.sigma_affine, self.sigma_tps, self.points_tps = sigma_affine, sigma_tps, points_tps
        self.reconstruction_l1 = reconstruction_l1
