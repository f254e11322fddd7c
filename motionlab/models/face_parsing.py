"""BiSeNet face parsing (face-parsing.PyTorch, zllrunning, 2019): 19 CelebAMask-HQ classes per pixel, the parser MuseTalk
blends its generated faces with.

Module and parameter names follow the release, so :class:`BiSeNet` loads ``79999_iter.pth`` key for key (``cp.resnet``
is the ResNet-18 backbone, ``cp`` the context path with its attention refinement modules, ``ffm`` the feature fusion
module and ``conv_out*`` the heads; the spatial path is replaced by the backbone's 1/8 feature, as in the release). The
ImageNet ResNet-18 file the release names beside it only initialises the backbone before training: ``79999_iter.pth``
holds the trained backbone, so it is not read here.

Convention: images (B, 3, H, W) RGB in [0, 1] (normalised inside with ImageNet's mean and std); the output is the
(B, 19, H, W) logits of the main head (the two auxiliary heads serve training only). Class 1 is skin, 10 the nose,
11 the mouth, 12 / 13 the upper / lower lip, 14 the neck.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FACE_CLASSES = 19
SKIN, NOSE, MOUTH, UPPER_LIP, LOWER_LIP, NECK = 1, 10, 11, 12, 13, 14
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, 1, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if cin != cout or stride != 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18(nn.Module):
    """ResNet-18 returning its 1/8, 1/16 and 1/32 features (no classifier)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feature, 1))))
        return feature * attention


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel_size=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        pooled = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))
        summed32 = self.arm32(feat32) + pooled  # the release upsamples the 1x1 pool by 'nearest': a broadcast
        up32 = self.conv_head32(F.interpolate(summed32, feat16.shape[2:], mode="nearest"))
        summed16 = self.arm16(feat16) + up32
        up16 = self.conv_head16(F.interpolate(summed16, feat8.shape[2:], mode="nearest"))
        return feat8, up16, up32


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, kernel_size=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feature = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feature, 1)))))
        return feature * attention + feature


class ParsingHead(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet as face-parsing.PyTorch trains it (see the module's convention); the auxiliary heads ``conv_out16`` /
    ``conv_out32`` are kept for the release's keys and computed only by :meth:`training_outputs`."""

    def __init__(self, classes: int = FACE_CLASSES):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = ParsingHead(256, 256, classes)
        self.conv_out16 = ParsingHead(128, 64, classes)
        self.conv_out32 = ParsingHead(128, 64, classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def training_outputs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The main and the two auxiliary heads' logits, each upsampled to the input (bilinear, corners aligned)."""
        size = image.shape[2:]
        feat8, context8, context16 = self.cp((image - self.mean) / self.std)
        heads = (self.conv_out(self.ffm(feat8, context8)), self.conv_out16(context8), self.conv_out32(context16))
        return tuple(F.interpolate(head, size, mode="bilinear", align_corners=True) for head in heads)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = image.shape[2:]
        feat8, context8, _ = self.cp((image - self.mean) / self.std)
        return F.interpolate(self.conv_out(self.ffm(feat8, context8)), size, mode="bilinear", align_corners=True)
