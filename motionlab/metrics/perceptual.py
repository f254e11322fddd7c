"""LPIPS (Zhang et al. 2018, v0.1) with the backbone from the user's torchvision weights file.

torchmetrics computes LPIPS with the linear heads it ships (``torchmetrics/functional/image/lpips_models/*.pth``, the
lpips package's v0.1 heads) on a torchvision backbone it downloads; here the backbone is built without weights and
filled from the user's file (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``), read weights-only. Images are
[0, 1], mapped to [-1, 1] as LPIPS expects; the value is averaged over frames.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from motionlab.metrics.base import MeanState
from motionlab.utils.errors import InputError

BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}


def lpips_network(net: str, backbone_path: str | os.PathLike) -> nn.Module:
    """torchmetrics' LPIPS network (its v0.1 linear heads) with the torchvision backbone read from ``backbone_path``."""
    import torchvision
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    from motionlab.utils.checkpoint import load_checkpoint, load_state_dict_strict

    if net not in BACKBONES:
        raise InputError(f"LPIPS network must be one of {', '.join(BACKBONES)}, got {net!r}")
    backbone = getattr(torchvision.models, BACKBONES[net])(weights=None)
    load_state_dict_strict(backbone, load_checkpoint(backbone_path), str(backbone_path))
    # pnet_rand: the backbone is built empty (nothing downloaded) and filled below; pretrained: the shipped heads
    lpips = _NoTrainLpips(net=net, pretrained=True, pnet_rand=True)
    for slice_ in (lpips.net.slice1, lpips.net.slice2, lpips.net.slice3, lpips.net.slice4, lpips.net.slice5):
        for index, layer in slice_.named_children():
            layer.load_state_dict(backbone.features[int(index)].state_dict())
    return lpips.eval().requires_grad_(False)


class LearnedPerceptualSimilarity(MeanState):
    """Mean LPIPS between (N, 3, H, W) generated frames and their targets, in [0, 1]; 0 for identical images."""

    def __init__(self, net: str, backbone_path: str | os.PathLike, **kwargs):
        super().__init__(**kwargs)
        self.net_name = net
        # frozen equipment, not state: kept out of the module tree so it is neither saved nor synced
        object.__setattr__(self, "network", lpips_network(net, backbone_path))

    @property
    def name(self) -> str:
        return f"lpips_{self.net_name}"

    def update(self, generated: torch.Tensor, target: torch.Tensor) -> None:
        if generated.shape != target.shape or generated.ndim != 4 or generated.shape[1] != 3:
            raise ValueError(f"LPIPS expects two (N, 3, H, W) batches of one shape, got {tuple(generated.shape)} and {tuple(target.shape)}")
        with torch.no_grad():
            values = self.network(generated.float().clamp(0, 1), target.float().clamp(0, 1), normalize=True)
        self._add(values.reshape(-1))
