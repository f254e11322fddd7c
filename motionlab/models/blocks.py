"""Convolutional building blocks shared by motionlab's networks."""

from __future__ import annotations

import torch
from torch import nn


class ConvNormAct(nn.Sequential):
    """3x3 convolution, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ResBlock(nn.Module):
    """Pre-activation residual block keeping channels and resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DownBlock(nn.Sequential):
    """ConvNormAct then 2x average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(ConvNormAct(in_channels, out_channels), nn.AvgPool2d(2))


class UpBlock(nn.Sequential):
    """2x nearest upsampling then ConvNormAct."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), ConvNormAct(in_channels, out_channels))


class Hourglass(nn.Module):
    """U-Net style encoder-decoder; output (B, out_channels, H, W) concatenates the input's skip.

    ``H`` and ``W`` must be divisible by ``2 ** len(channels)``.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...]):
        super().__init__()
        self.down = nn.ModuleList()
        previous = in_channels
        for width in channels:
            self.down.append(DownBlock(previous, width))
            previous = width
        self.up = nn.ModuleList()
        skips = [in_channels, *channels[:-1]]
        for skip in reversed(skips):
            self.up.append(UpBlock(previous, skip))
            previous = 2 * skip
        self.out_channels = previous
        self.factor = 2 ** len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"Hourglass input H, W must be divisible by {self.factor}, got {tuple(x.shape[-2:])}")
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out
