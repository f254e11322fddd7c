"""The Animator: animates a static portrait from a driver frame by predicting and applying dense motion."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from motionlab.geometry import keypoints_to_gaussian, warp
from motionlab.models.blocks import ConvNormAct, DownBlock, Hourglass, ResBlock, UpBlock
from motionlab.models.registry import register_model


class AnimatorNet(nn.Module):
    """Flow-and-occlusion image animator (version 1: motion is inferred from the two images).

    A motion hourglass reads portrait and driver together and predicts a dense backward flow and an
    occlusion map; an appearance encoder turns the portrait into features, which are warped by the
    flow, masked by the occlusion map, refined by residual blocks and decoded to RGB plus a blend map.
    The output mixes the full-resolution warped portrait (sharp where motion explains the change)
    with the decoded image (where it does not: occlusions, eyes, mouth) by that blend map.

    Args:
        image_channels: channels of portrait and driver.
        motion_channels: widths of the motion hourglass levels (H, W divisible by ``2 ** len``).
        appearance_channels: widths of the appearance encoder's downsampling levels.
        num_res_blocks: residual blocks at the bottleneck of the appearance path.
        max_flow: the largest flow offset, in normalised units (2 = image width).
        num_descriptors: K > 0 adds motion-descriptor inputs: Gaussian maps at the portrait's and the
            driver's K keypoints (from a frozen descriptor model) join the motion hourglass's input.
        descriptor_variance: variance of those Gaussians, in normalised units squared.
        descriptor_maps: ``"pair"`` (2K maps: the portrait's and the driver's Gaussians) or ``"difference"`` (K maps:
            the driver's minus the portrait's, the motion representation of FOMM's dense-motion network).
    """

    def __init__(
        self,
        image_channels: int = 3,
        motion_channels: tuple[int, ...] = (32, 64, 128),
        appearance_channels: tuple[int, ...] = (64, 128),
        num_res_blocks: int = 2,
        max_flow: float = 0.5,
        num_descriptors: int = 0,
        descriptor_variance: float = 0.01,
        descriptor_maps: str = "pair",
    ):
        super().__init__()
        if descriptor_maps not in ("pair", "difference"):
            raise ValueError(f"descriptor_maps must be 'pair' or 'difference', got {descriptor_maps!r}")
        self.image_channels = image_channels
        self.max_flow = max_flow
        self.num_descriptors, self.descriptor_variance, self.descriptor_maps = num_descriptors, descriptor_variance, descriptor_maps
        maps = num_descriptors * (2 if descriptor_maps == "pair" else 1)
        self.motion = Hourglass(2 * image_channels + maps, tuple(motion_channels))
        self.flow_head = nn.Conv2d(self.motion.out_channels, 2, 7, padding=3)
        self.occlusion_head = nn.Conv2d(self.motion.out_channels, 1, 7, padding=3)
        # Start from the identity motion: zero flow, fully visible.
        nn.init.zeros_(self.flow_head.weight)
        nn.init.zeros_(self.flow_head.bias)
        nn.init.zeros_(self.occlusion_head.weight)
        nn.init.constant_(self.occlusion_head.bias, 3.0)

        widths = list(appearance_channels)
        self.stem = ConvNormAct(image_channels, widths[0] // 2, kernel_size=7)
        encoder, previous = [], widths[0] // 2
        for width in widths:
            encoder.append(DownBlock(previous, width))
            previous = width
        self.encoder = nn.Sequential(*encoder)
        self.bottleneck = nn.Sequential(*[ResBlock(previous) for _ in range(num_res_blocks)])
        decoder = []
        for width in reversed([widths[0] // 2, *widths[:-1]]):
            decoder.append(UpBlock(previous, width))
            previous = width
        self.decoder = nn.Sequential(*decoder)
        self.to_output = nn.Conv2d(previous, image_channels + 1, 7, padding=3)

    def predict_motion(self, portrait: torch.Tensor, driver: torch.Tensor, descriptor_maps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow (B, H, W, 2) taking the portrait to the driver's pose, and occlusion (B, 1, H, W) in (0, 1)."""
        inputs = [portrait, driver] if descriptor_maps is None else [portrait, driver, descriptor_maps]
        hidden = self.motion(torch.cat(inputs, dim=1))
        flow = torch.tanh(self.flow_head(hidden)) * self.max_flow
        return flow.permute(0, 2, 3, 1), torch.sigmoid(self.occlusion_head(hidden))

    def forward(self, portrait: torch.Tensor, driver: torch.Tensor, strength: float = 1.0,
                portrait_descriptors: torch.Tensor | None = None, driver_descriptors: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Animate ``portrait`` (B, 3, H, W) towards ``driver`` (B, 3, H, W), both in [0, 1].

        ``strength`` scales the predicted motion (1: full, 0: none). With ``num_descriptors`` > 0 the
        (B, K, 2) keypoints of portrait and driver are required. Returns ``image`` (B, 3, H, W),
        ``flow`` (B, H, W, 2), ``occlusion`` (B, 1, H, W), ``blend`` (B, 1, H, W) (1: warped portrait,
        0: decoded) and ``warped_portrait`` (B, 3, H, W).
        """
        if portrait.shape != driver.shape or portrait.ndim != 4 or portrait.shape[1] != self.image_channels:
            raise ValueError(
                f"portrait and driver must both be (B, {self.image_channels}, H, W), got {tuple(portrait.shape)} and {tuple(driver.shape)}"
            )
        descriptor_maps = None
        if self.num_descriptors:
            if portrait_descriptors is None or driver_descriptors is None:
                raise ValueError(f"this Animator takes motion descriptors: pass portrait_descriptors and driver_descriptors (B, {self.num_descriptors}, 2)")
            if portrait_descriptors.shape[1:] != (self.num_descriptors, 2) or driver_descriptors.shape != portrait_descriptors.shape:
                raise ValueError(f"descriptors must be (B, {self.num_descriptors}, 2), got {tuple(portrait_descriptors.shape)} and {tuple(driver_descriptors.shape)}")
            h, w = portrait.shape[-2:]
            portrait_maps = keypoints_to_gaussian(portrait_descriptors, h, w, self.descriptor_variance)
            driver_maps = keypoints_to_gaussian(driver_descriptors, h, w, self.descriptor_variance)
            descriptor_maps = torch.cat([portrait_maps, driver_maps], 1) if self.descriptor_maps == "pair" else driver_maps - portrait_maps
        flow, occlusion = self.predict_motion(portrait, driver, descriptor_maps)
        flow = flow * strength
        features = self.encoder(self.stem(portrait))
        features = warp(features, flow)
        features = features * F.interpolate(occlusion, size=features.shape[-2:], mode="bilinear", align_corners=False)
        decoded = self.to_output(self.decoder(self.bottleneck(features)))
        rgb, blend = torch.sigmoid(decoded[:, :-1]), torch.sigmoid(decoded[:, -1:])
        warped_portrait = warp(portrait, flow)
        image = blend * warped_portrait + (1.0 - blend) * rgb
        return {"image": image, "flow": flow, "occlusion": occlusion, "blend": blend, "warped_portrait": warped_portrait}


# LoRA by default adapts the appearance decoder: what an unseen identity's rendering needs most
@register_model(family="animator", input_size=64, lora_targets=r"decoder\.\d+\.1\.0|to_output")
def animator_v1(input_size: int = 64, image_channels: int = 3, motion_channels: tuple[int, ...] = (32, 64, 128),
                appearance_channels: tuple[int, ...] = (64, 128), num_res_blocks: int = 2, max_flow: float = 0.5,
                num_descriptors: int = 0, descriptor_variance: float = 0.01, descriptor_maps: str = "pair") -> AnimatorNet:
    """The Animator, version 1 (see :class:`AnimatorNet`); ``input_size`` is the side it is trained and run at."""
    return AnimatorNet(image_channels, motion_channels, appearance_channels, num_res_blocks, max_flow, num_descriptors, descriptor_variance,
                       descriptor_maps)
