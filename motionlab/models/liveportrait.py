"""LivePortrait-compatible networks (the five modules of the v1 release) and its release format beside them.

Modules, with the release's names (``state_dict()`` keys match its files after :func:`liveportrait_checkpoint_filter`):

- ``appearance_feature_extractor`` (F): image (B, 3, 256, 256) -> feature volume (B, 32, 16, 64, 64).
- ``motion_extractor`` (M): image -> pitch / yaw / roll logits (66 bins each), t (3), exp (21 x 3), scale (1) and
  canonical keypoints (21 x 3). The backbone is timm's ConvNeXt-V2 (``convnextv2_tiny`` for the release); the
  filter maps the release's ConvNeXt-V2 keys onto timm's.
- ``warping_module`` (W): volume + source / driving 3-D keypoints -> warped 2-D feature (B, 256, 64, 64), with
  the occlusion map (B, 1, 64, 64) and the deformation (B, 16, 64, 64, 3).
- ``spade_generator`` (G): warped feature -> image (B, 3, 512, 512) in [0, 1]. Its residual blocks use the legacy
  ``torch.nn.utils.spectral_norm`` (keys ``weight_orig`` / ``weight_u`` / ``weight_v``), as the release does.
- ``stitching_retargeting_module`` (S): the stitching MLP (126 -> 65) and the lip (65 -> 63) and eye (66 -> 63)
  retargeting MLPs.

Keypoints follow :mod:`motionlab.geometry.head_pose`'s convention. The release files are five ``.pth`` state
dicts; :func:`motionlab.utils.checkpoint.load_checkpoint` reads a folder holding them as ``{file stem: state}``.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from motionlab.geometry.head_pose import (
    bins_to_degrees,
    coordinate_grid_3d,
    keypoints_to_gaussian_3d,
    pose_keypoints,
    rotation_matrix,
    sample_volume,
)
from motionlab.models.registry import ExportGraph, register_model
from motionlab.utils.checkpoint import WeightMismatchError

PARTS = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator", "stitching_retargeting_module")


class SameBlock(nn.Module):
    """Convolution, batch norm, ReLU (LeakyReLU with ``lrelu``), 2-D or 3-D."""

    def __init__(self, in_features: int, out_features: int, dims: int = 2, lrelu: bool = False):
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
        self.conv = conv(in_features, out_features, kernel_size=3, padding=1)
        self.norm = norm(out_features, affine=True)
        self.lrelu = lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        return F.leaky_relu(out) if self.lrelu else F.relu(out)


class DownBlock(SameBlock):
    """SameBlock then 2x average pooling (of H and W only, for volumes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return F.avg_pool2d(out, 2) if out.dim() == 4 else F.avg_pool3d(out, (1, 2, 2))


class UpBlock3d(SameBlock):
    """Nearest 2x upsampling of H and W, then SameBlock (3-D)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, dims=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=(1, 2, 2)))


class ResBlock3d(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv3d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv3d(features, features, kernel_size=3, padding=1)
        self.norm1 = nn.BatchNorm3d(features, affine=True)
        self.norm2 = nn.BatchNorm3d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


class AppearanceFeatureExtractor(nn.Module):
    """Image -> (B, reshape_channel, reshape_depth, H / 2^n, W / 2^n) appearance volume."""

    def __init__(self, image_channel: int = 3, block_expansion: int = 64, num_down_blocks: int = 2, max_features: int = 512,
                 reshape_channel: int = 32, reshape_depth: int = 16, num_resblocks: int = 6):
        super().__init__()
        if max_features != reshape_channel * reshape_depth:
            raise ValueError(f"max_features ({max_features}) must equal reshape_channel x reshape_depth ({reshape_channel} x {reshape_depth})")
        self.first = SameBlock(image_channel, block_expansion)
        self.down_blocks = nn.ModuleList(
            DownBlock(min(max_features, block_expansion * 2**i), min(max_features, block_expansion * 2 ** (i + 1))) for i in range(num_down_blocks)
        )
        self.second = nn.Conv2d(min(max_features, block_expansion * 2**num_down_blocks), max_features, kernel_size=1)
        self.reshape_channel, self.reshape_depth = reshape_channel, reshape_depth
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        return self.resblocks_3d(out.view(b, self.reshape_channel, self.reshape_depth, h, w))


MOTION_OUTPUTS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")


class MotionExtractor(nn.Module):
    """Image -> head-pose logits, translation, expression, scale and canonical keypoints (a dict of (B, n) tensors,
    in :data:`MOTION_OUTPUTS` order). ``backbone``: a timm ConvNeXt-V2 variant, built without pretrained weights;
    ``depths`` / ``dims`` override its stages (the release's layout has linear MLPs, as ``convnextv2_tiny``)."""

    def __init__(self, backbone: str = "convnextv2_tiny", num_kp: int = 21, num_bins: int = 66, depths: list[int] | None = None,
                 dims: list[int] | None = None):
        super().__init__()
        import timm

        stages = {key: tuple(value) for key, value in (("depths", depths), ("dims", dims)) if value is not None}
        self.detector = timm.create_model(backbone, pretrained=False, num_classes=0, **stages)
        width = self.detector.num_features
        self.fc_kp = nn.Linear(width, 3 * num_kp)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, num_bins)
        self.fc_yaw = nn.Linear(width, num_bins)
        self.fc_roll = nn.Linear(width, num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, 3 * num_kp)
        self.num_kp = num_kp

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.detector(image)
        return {name: getattr(self, f"fc_{name}")(features) for name in MOTION_OUTPUTS}

    def motion(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The motion of ``image`` in keypoint terms: ``rotation`` (B, 3, 3), ``angles`` (B, 3) degrees (pitch, yaw,
        roll), ``translation`` (B, 3), ``expression`` and ``canonical`` (B, K, 3), ``scale`` (B, 1)."""
        out = self.forward(image)
        angles = torch.stack([bins_to_degrees(out[name]) for name in ("pitch", "yaw", "roll")], dim=1)
        b = image.shape[0]
        return {"rotation": rotation_matrix(*angles.unbind(1)), "angles": angles, "translation": out["t"],
                "expression": out["exp"].view(b, self.num_kp, 3), "canonical": out["kp"].view(b, self.num_kp, 3), "scale": out["scale"]}


class Hourglass3d(nn.Module):
    """3-D U-Net over (B, C, D, H, W), pooling H and W only; H and W must be divisible by ``2 ** num_blocks``."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.down_blocks = nn.ModuleList(
            DownBlock(in_features if i == 0 else min(max_features, block_expansion * 2**i), min(max_features, block_expansion * 2 ** (i + 1)), dims=3)
            for i in range(num_blocks)
        )
        self.decoder = nn.Module()
        self.decoder.up_blocks = nn.ModuleList(
            UpBlock3d((1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * 2 ** (i + 1)), min(max_features, block_expansion * 2**i))
            for i in reversed(range(num_blocks))
        )
        self.out_filters = block_expansion + in_features
        self.decoder.conv = nn.Conv3d(self.out_filters, self.out_filters, kernel_size=3, padding=1)
        self.decoder.norm = nn.BatchNorm3d(self.out_filters, affine=True)
        self.factor = 2**num_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"hourglass input H, W must be divisible by {self.factor}, got {tuple(x.shape[-2:])}")
        skips = [x]
        for block in self.encoder.down_blocks:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.decoder.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return F.relu(self.decoder.norm(self.decoder.conv(out)))


class DenseMotionNetwork3d(nn.Module):
    """Sparse 3-D keypoint motions -> K + 1 soft masks -> dense backward deformation (B, D, H, W, 3), plus an
    occlusion map (B, 1, H, W) from the depth-flattened hourglass features."""

    def __init__(self, num_kp: int = 21, feature_channel: int = 32, block_expansion: int = 32, max_features: int = 1024,
                 num_blocks: int = 5, reshape_depth: int = 16, compress: int = 4, estimate_occlusion_map: bool = True,
                 kp_variance: float = 0.01, mask_kernel: int = 7):
        super().__init__()
        self.hourglass = Hourglass3d(block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        # the release's 7x7x7 mask convolution is most of a small model's training step; toy scales shrink it
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, kernel_size=mask_kernel, padding=mask_kernel // 2)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress, affine=True)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, kernel_size=7, padding=3) if estimate_occlusion_map else None
        self.num_kp, self.kp_variance = num_kp, kp_variance

    def forward(self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor, depth_sliced: bool = False) -> dict[str, torch.Tensor]:
        feature = F.relu(self.norm(self.compress(feature)))
        b, c, d, h, w = feature.shape
        k = self.num_kp + 1
        identity = coordinate_grid_3d(d, h, w, feature.device, feature.dtype).view(1, 1, d, h, w, 3)
        driving_to_source = identity - kp_driving.view(b, self.num_kp, 1, 1, 1, 3) + kp_source.view(b, self.num_kp, 1, 1, 1, 3)
        motions = torch.cat([identity.expand(b, 1, d, h, w, 3), driving_to_source], dim=1)
        repeated = feature.unsqueeze(1).expand(b, k, c, d, h, w).reshape(b * k, c, d, h, w)
        deformed = sample_volume(repeated, motions.reshape(b * k, d, h, w, 3), depth_sliced).view(b, k, c, d, h, w)
        gaussians = keypoints_to_gaussian_3d(kp_driving, d, h, w, self.kp_variance) - keypoints_to_gaussian_3d(kp_source, d, h, w, self.kp_variance)
        heatmaps = torch.cat([gaussians.new_zeros(b, 1, d, h, w), gaussians], dim=1).unsqueeze(2)
        prediction = self.hourglass(torch.cat([heatmaps, deformed], dim=2).view(b, -1, d, h, w))
        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * mask.unsqueeze(2)).sum(dim=1).permute(0, 2, 3, 4, 1)
        out = {"mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))
        return out


class WarpingNetwork(nn.Module):
    """Warp the appearance volume from source to driving keypoints and flatten it to a 2-D feature map.

    ``forward(feature_3d, kp_source, kp_driving)`` returns ``out`` (B, 256, H, W), ``occlusion_map`` (B, 1, H, W) and
    ``deformation`` (B, D, H, W, 3); keypoints are (B, K, 3). ``depth_sliced`` samples the volume with 4-D
    grid_samples only (same result; for runtimes without 5-D GridSample).
    """

    def __init__(self, num_kp: int = 21, block_expansion: int = 64, max_features: int = 512, num_down_blocks: int = 2,
                 reshape_channel: int = 32, estimate_occlusion_map: bool = True, dense_motion_params: dict | None = None):
        super().__init__()
        params = dict(dense_motion_params or {})
        self.dense_motion_network = DenseMotionNetwork3d(num_kp=num_kp, feature_channel=reshape_channel,
                                                         estimate_occlusion_map=estimate_occlusion_map, **params)
        width = block_expansion * 2**num_down_blocks
        self.third = SameBlock(max_features, width, lrelu=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1)

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor, depth_sliced: bool = False) -> dict[str, torch.Tensor]:
        motion = self.dense_motion_network(feature_3d, kp_driving=kp_driving, kp_source=kp_source, depth_sliced=depth_sliced)
        warped = sample_volume(feature_3d, motion["deformation"], depth_sliced)
        b, c, d, h, w = warped.shape
        out = self.fourth(self.third(warped.view(b, c * d, h, w)))
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            out = out * occlusion
        return {"out": out, "occlusion_map": occlusion, "deformation": motion["deformation"]}


class SPADE(nn.Module):
    """Spatially-adaptive instance norm: ``norm(x) * (1 + gamma(seg)) + beta(seg)``, seg resized to x (nearest)."""

    def __init__(self, norm_nc: int, label_nc: int, hidden: int = 128):
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, kernel_size=3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        if seg.shape[2:] != x.shape[2:]:
            seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        shared = self.mlp_shared(seg)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(shared)) + self.mlp_beta(shared)


class SPADEResnetBlock(nn.Module):
    """SPADE residual block with spectral-normalised convolutions (legacy hook API: the release's keys)."""

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int = 128):
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        sn = nn.utils.spectral_norm
        self.conv_0 = sn(nn.Conv2d(fin, fmiddle, kernel_size=3, padding=1))
        self.conv_1 = sn(nn.Conv2d(fmiddle, fout, kernel_size=3, padding=1))
        self.norm_0 = SPADE(fin, label_nc, hidden)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden)
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(fin, fout, kernel_size=1, bias=False))
            self.norm_s = SPADE(fin, label_nc, hidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 2e-1))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 2e-1))
        return shortcut + dx


class SPADEDecoder(nn.Module):
    """Warped feature (B, C, H, W) -> image (B, 3, 2^u upscale H, 2^u upscale W) in [0, 1]: the up blocks ``up_0``,
    ``up_1``, the first ``upsample_blocks`` (u, 2 in the release) of them after a 2x upsampling, then a pixel shuffle
    by ``upscale``. C = ``block_expansion * 2 ** num_down_blocks``; the feature also conditions every SPADE norm.
    Fewer upsamplings render from a finer feature (toy scales: 64 px from a 32 px volume); the parameters stay the
    release's."""

    def __init__(self, upscale: int = 2, block_expansion: int = 64, max_features: int = 512, num_down_blocks: int = 2,
                 num_middle_blocks: int = 6, spade_hidden: int = 128, upsample_blocks: int = 2):
        super().__init__()
        if upsample_blocks not in (0, 1, 2):
            raise ValueError(f"upsample_blocks must be 0, 1 or 2 (of the two up blocks), got {upsample_blocks}")
        self.upsample_blocks = upsample_blocks
        channels = min(max_features, block_expansion * 2**num_down_blocks)
        self.fc = nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1)
        for i in range(num_middle_blocks):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * channels, 2 * channels, channels, spade_hidden))
        self.num_middle_blocks = num_middle_blocks
        self.up_0 = SPADEResnetBlock(2 * channels, channels, channels, spade_hidden)
        self.up_1 = SPADEResnetBlock(channels, block_expansion, channels, spade_hidden)
        self.conv_img = nn.Sequential(nn.Conv2d(block_expansion, 3 * upscale**2, kernel_size=3, padding=1), nn.PixelShuffle(upscale))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.fc(feature)
        for i in range(self.num_middle_blocks):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        for i, block in enumerate((self.up_0, self.up_1)):
            x = block(F.interpolate(x, scale_factor=2.0) if i < self.upsample_blocks else x, feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 2e-1)))


class MLP(nn.Module):
    """Linear layers with ReLU between them (the release's ``StitchingRetargetingNetwork``)."""

    def __init__(self, input_size: int, hidden_sizes: list[int], output_size: int):
        super().__init__()
        sizes = [input_size, *hidden_sizes, output_size]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class StitchingRetargeting(nn.Module):
    """Stitching (``retarget_shoulder``), lip (``retarget_mouth``) and eye (``retarget_eye``) MLPs over flattened
    (B, K, 3) keypoints; the release's names."""

    def __init__(self, num_kp: int = 21, stitching_hidden: list[int] = (128, 128, 64), lip_hidden: list[int] = (128, 128, 64),
                 eye_hidden: list[int] = (256, 256, 128, 128, 64)):
        super().__init__()
        n = 3 * num_kp
        self.retarget_shoulder = MLP(2 * n, list(stitching_hidden), n + 2)
        self.retarget_mouth = MLP(n + 2, list(lip_hidden), n)
        self.retarget_eye = MLP(n + 3, list(eye_hidden), n)

    def stitch(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """Driving keypoints corrected so the animated face stays stitched to the portrait: a per-keypoint offset
        plus a shared (t_x, t_y) offset, predicted from both keypoint sets."""
        b, k, _ = kp_source.shape
        delta = self.retarget_shoulder(torch.cat([kp_source.reshape(b, -1), kp_driving.reshape(b, -1)], dim=1))
        shift = torch.cat([delta[:, 3 * k :], torch.zeros_like(delta[:, :1])], dim=1)
        return kp_driving + delta[:, : 3 * k].view(b, k, 3) + shift[:, None, :]

    def retarget_eyes(self, kp_source: torch.Tensor, eye_ratios: torch.Tensor) -> torch.Tensor:
        """(B, K, 3) keypoint offset opening / closing the eyes; ``eye_ratios`` (B, 3): the source's two eye
        openness ratios and the wanted one."""
        b, k, _ = kp_source.shape
        return self.retarget_eye(torch.cat([kp_source.reshape(b, -1), eye_ratios], dim=1)).view(b, k, 3)

    def retarget_lips(self, kp_source: torch.Tensor, lip_ratios: torch.Tensor) -> torch.Tensor:
        """(B, K, 3) keypoint offset opening / closing the mouth; ``lip_ratios`` (B, 2): the source's and the wanted."""
        b, k, _ = kp_source.shape
        return self.retarget_mouth(torch.cat([kp_source.reshape(b, -1), lip_ratios], dim=1)).view(b, k, 3)


class PatchDiscriminator(nn.Module):
    """Image (B, 3, H, W) -> patch realness logits (B, 1, H / 2^n, W / 2^n): ``num_blocks`` (n) spectral-normalised
    4x4 stride-2 convolutions with LeakyReLU 0.2, then a 3x3 convolution to one channel (pix2pix / face-vid2vid)."""

    def __init__(self, in_channels: int = 3, block_expansion: int = 64, num_blocks: int = 4, max_features: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(num_blocks):
            width = min(max_features, block_expansion * 2**i)
            layers += [nn.utils.spectral_norm(nn.Conv2d(channels, width, kernel_size=4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            channels = width
        layers.append(nn.utils.spectral_norm(nn.Conv2d(channels, 1, kernel_size=3, padding=1)))
        self.layers = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


class LivePortraitDiscriminator(nn.Module):
    """The stage-1 GAN's critics (training only; the release published none): one :class:`PatchDiscriminator` for
    the whole face and one each for eye and mouth crops (the community recipe), the crops ``crop_fraction`` of the
    image's side. ``views`` take what the crops are: :func:`motionlab.losses.landmarks.part_views`."""

    PARTS = ("face", "eyes", "mouth")

    def __init__(self, block_expansion: int = 64, max_features: int = 512, num_blocks: int = 4, part_blocks: int = 3, crop_fraction: float = 0.25):
        super().__init__()
        self.critics = nn.ModuleDict({part: PatchDiscriminator(3, block_expansion, num_blocks if part == "face" else part_blocks, max_features)
                                      for part in self.PARTS})
        self.crop_fraction = crop_fraction

    def forward(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Patch logits of each view ({part: (B, 3, h, w)}; parts without a view are left out)."""
        return {part: self.critics[part](image) for part, image in views.items()}


class LivePortrait(nn.Module):
    """The five LivePortrait modules. ``forward(source, driving)`` reconstructs ``driving`` from ``source``
    (training: the driving frame's posed keypoints, no stitching); inference lives in its predictor."""

    def __init__(self, appearance_feature_extractor: dict, motion_extractor: dict, warping_module: dict, spade_generator: dict,
                 stitching_retargeting_module: dict):
        super().__init__()
        self.appearance_feature_extractor = AppearanceFeatureExtractor(**appearance_feature_extractor)
        self.motion_extractor = MotionExtractor(**motion_extractor)
        self.warping_module = WarpingNetwork(**warping_module)
        self.spade_generator = SPADEDecoder(**spade_generator)
        self.stitching_retargeting_module = StitchingRetargeting(**stitching_retargeting_module)

    def keypoints(self, motion: dict[str, torch.Tensor], canonical: torch.Tensor | None = None) -> torch.Tensor:
        """Posed keypoints of a :meth:`MotionExtractor.motion` (its own canonical keypoints unless given)."""
        return pose_keypoints(motion["canonical"] if canonical is None else canonical, motion["rotation"], motion["expression"],
                              motion["scale"], motion["translation"])

    def render(self, volume: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> dict[str, torch.Tensor]:
        """W then G: the image (B, 3, S', S') of ``volume`` moved from ``kp_source`` to ``kp_driving``."""
        warped = self.warping_module(volume, kp_source=kp_source, kp_driving=kp_driving)
        return {**warped, "image": self.spade_generator(warped["out"])}

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict[str, torch.Tensor]:
        motion_source, motion_driving = self.motion_extractor.motion(source), self.motion_extractor.motion(driving)
        kp_source = self.keypoints(motion_source)
        kp_driving = self.keypoints(motion_driving, canonical=motion_source["canonical"])
        out = self.render(self.appearance_feature_extractor(source), kp_source, kp_driving)
        return {**out, "kp_source": kp_source, "kp_driving": kp_driving, "motion_source": motion_source, "motion_driving": motion_driving}


# Module settings of the v1 release (human; the animals release uses the same).
LIVEPORTRAIT_SETTINGS: dict[str, dict] = {
    "appearance_feature_extractor": {"image_channel": 3, "block_expansion": 64, "num_down_blocks": 2, "max_features": 512,
                                     "reshape_channel": 32, "reshape_depth": 16, "num_resblocks": 6},
    "motion_extractor": {"backbone": "convnextv2_tiny", "num_kp": 21, "num_bins": 66},
    "warping_module": {"num_kp": 21, "block_expansion": 64, "max_features": 512, "num_down_blocks": 2, "reshape_channel": 32,
                       "estimate_occlusion_map": True,
                       "dense_motion_params": {"block_expansion": 32, "max_features": 1024, "num_blocks": 5, "reshape_depth": 16, "compress": 4}},
    "spade_generator": {"upscale": 2, "block_expansion": 64, "max_features": 512, "num_down_blocks": 2},
    "stitching_retargeting_module": {"num_kp": 21},
}

# release ConvNeXt-V2 key (after "detector.") -> timm key
_CONVNEXT_KEYS = [
    (re.compile(r"^downsample_layers\.0\.(\d)\."), r"stem.\1."),
    (re.compile(r"^downsample_layers\.(\d)\.(\d)\."), r"stages.\1.downsample.\2."),
    (re.compile(r"^stages\.(\d)\.(\d+)\.dwconv\."), r"stages.\1.blocks.\2.conv_dw."),
    (re.compile(r"^stages\.(\d)\.(\d+)\.norm\."), r"stages.\1.blocks.\2.norm."),
    (re.compile(r"^stages\.(\d)\.(\d+)\.pwconv1\."), r"stages.\1.blocks.\2.mlp.fc1."),
    (re.compile(r"^stages\.(\d)\.(\d+)\.pwconv2\."), r"stages.\1.blocks.\2.mlp.fc2."),
    (re.compile(r"^stages\.(\d)\.(\d+)\.grn\.gamma$"), r"stages.\1.blocks.\2.mlp.grn.weight"),
    (re.compile(r"^stages\.(\d)\.(\d+)\.grn\.beta$"), r"stages.\1.blocks.\2.mlp.grn.bias"),
    (re.compile(r"^norm\."), r"head.norm."),
]


def _motion_extractor_keys(state: dict) -> dict:
    """The release's motion extractor (ConvNeXt-V2 as ``detector.*`` with its heads inside) in this layout (timm's
    ConvNeXt-V2 as ``detector.*``, heads beside it); GRN's (1, 1, 1, C) parameters become timm's (C,)."""
    mapped = {}
    for key, value in state.items():
        name = key.removeprefix("detector.")
        if name.startswith("fc_"):
            mapped[name] = value
            continue
        for pattern, replacement in _CONVNEXT_KEYS:
            if pattern.search(name):
                name = pattern.sub(replacement, name)
                value = value.reshape(-1) if ".grn." in name else value
                break
        mapped[f"detector.{name}"] = value
    return mapped


def liveportrait_checkpoint_filter(state: dict, source: str) -> dict:
    """The release's five state dicts (``{file stem: state dict}``, as a release folder is read) as one flat state
    dict of this layout: ConvNeXt-V2 keys mapped to timm's, the stitching file's ``module.`` (DDP) prefix removed.
    Flat state dicts (motionlab's ``net``) pass through."""
    if not any(isinstance(value, dict) for value in state.values()):
        return state
    missing = [part for part in PARTS if not isinstance(state.get(part), dict)]
    if missing:
        raise WeightMismatchError(f"{source} is not a LivePortrait release: files {', '.join(p + '.pth' for p in missing)} are missing "
                                  f"(found {', '.join(sorted(state))}); give the folder holding the five .pth files")
    flat = {}
    for part in PARTS:
        part_state = state[part]
        if part == "motion_extractor":
            part_state = _motion_extractor_keys(part_state)
        elif part == "stitching_retargeting_module":
            part_state = {f"{mlp}.{key.removeprefix('module.')}": value for mlp, weights in part_state.items() if isinstance(weights, dict)
                          for key, value in weights.items()}
        flat.update({f"{part}.{key}": value for key, value in part_state.items()})
    return flat


class _MotionOutputs(nn.Module):
    def __init__(self, motion_extractor: MotionExtractor):
        super().__init__()
        self.motion_extractor = motion_extractor

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.motion_extractor(image)
        return tuple(out[name] for name in MOTION_OUTPUTS)


class _WarpOutputs(nn.Module):
    def __init__(self, warping_module: WarpingNetwork, depth_sliced: bool):
        super().__init__()
        self.warping_module, self.depth_sliced = warping_module, depth_sliced

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.warping_module(feature_3d, kp_source, kp_driving, self.depth_sliced)
        return out["out"], out["occlusion_map"], out["deformation"]


class _Method(nn.Module):
    """A method of the stitching / retargeting module as a graph of its own."""

    def __init__(self, module: StitchingRetargeting, method: str):
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.module, self.method)(*inputs)


# 5-D GridSample exists in ONNX from opset 20; the other graphs (and the depth-sliced warp) need 17
WARP_OPSET, OPSET = 20, 17


@torch.no_grad()
def export_graphs(model: LivePortrait, batch: int = 1, generator: torch.Generator | None = None) -> dict[str, ExportGraph]:
    """The graphs a LivePortrait model exports as, with image-like example inputs: a random image through F and M
    gives the volume and keypoints W sees, and W's output is G's input. ``warping_module_4d`` is W with its
    volume sampling depth-sliced into 4-D grid_samples (:func:`motionlab.geometry.head_pose.sample_volume`)."""
    model = model.eval()
    size = model.model_info.input_size[0]
    image = torch.rand(batch, 3, size, size, generator=generator)
    volume = model.appearance_feature_extractor(image)
    kp_source = model.keypoints(model.motion_extractor.motion(image))
    kp_driving = kp_source + 0.05 * torch.randn(kp_source.shape, generator=generator)
    feature = model.warping_module(volume, kp_source, kp_driving)["out"]
    stitching = model.stitching_retargeting_module
    warp_inputs = {"feature_3d": volume, "kp_source": kp_source, "kp_driving": kp_driving}
    return {
        "appearance_feature_extractor": ExportGraph(model.appearance_feature_extractor, {"image": image}, ("feature_3d",), OPSET),
        "motion_extractor": ExportGraph(_MotionOutputs(model.motion_extractor), {"image": image}, MOTION_OUTPUTS, OPSET),
        "warping_module": ExportGraph(_WarpOutputs(model.warping_module, False), warp_inputs, ("out", "occlusion_map", "deformation"), WARP_OPSET),
        "warping_module_4d": ExportGraph(_WarpOutputs(model.warping_module, True), warp_inputs, ("out", "occlusion_map", "deformation"), OPSET),
        "spade_generator": ExportGraph(model.spade_generator, {"feature": feature}, ("image",), OPSET),
        "stitching": ExportGraph(_Method(stitching, "stitch"), {"kp_source": kp_source, "kp_driving": kp_driving}, ("kp_driving_stitched",), OPSET),
        "retarget_eye": ExportGraph(_Method(stitching, "retarget_eyes"), {"kp_source": kp_source, "eye_ratios": torch.rand(batch, 3, generator=generator) * 0.5},
                                    ("delta",), OPSET),
        "retarget_lip": ExportGraph(_Method(stitching, "retarget_lips"), {"kp_source": kp_source, "lip_ratios": torch.rand(batch, 2, generator=generator) * 0.5},
                                    ("delta",), OPSET),
    }


def liveportrait_int8_modules(model: LivePortrait) -> tuple[str, ...]:
    """What ``precision=int8`` quantizes: W's 3-D hourglass and its 7x7x7 mask convolution (W's heaviest parts; with
    subnormal-free heatmaps W takes 2.4 s a frame in fp32 at the release's size on a 2-core AMX CPU, and int8 gains
    little on it: 1.49x the pipeline against fp32's 1.47x, docs/benchmarks.md). G stays fp32: its SPADE blocks
    instance-normalise every convolution's output, which magnifies per-tensor activation rounding (28 dB from fp32 with
    G quantized, on release-size random weights with data statistics; 62 dB with W's parts alone on a small random
    LivePortrait, tests/models/test_liveportrait.py). F and M (once per portrait; the keypoints), the volume warps and
    the stitching MLPs stay fp32 too."""
    return ("warping_module.dense_motion_network.hourglass", "warping_module.dense_motion_network.mask")


def liveportrait_float32_modules(model: LivePortrait) -> tuple[str, ...]:
    """What ``precision=bf16`` leaves in float32: all but G. F's appearance volume and W's warp of it move with bf16's
    rounding (with data statistics on real frames: 29 dB from fp32 with F and W in bf16, 45 dB with G alone), M and
    the stitching MLP make the keypoints; G, the SPADE decoder, is near half a frame's time on a CPU."""
    return ("appearance_feature_extractor", "motion_extractor", "warping_module", "stitching_retargeting_module")


def _recognizes_release(checkpoint: dict) -> bool:
    return all(isinstance(checkpoint.get(part), dict) for part in PARTS)


@register_model(family="liveportrait", input_size=256, checkpoint_filter=liveportrait_checkpoint_filter, recognizes=_recognizes_release,
                # LoRA adapts the generator's SPADE modulation and output (plain convolutions; the
                # spectral-normalised ones keep their hooks)
                lora_targets=r"spade_generator\.(G_middle_\d|up_\d)\.norm_[01s]\.mlp_(gamma|beta)|spade_generator\.conv_img\.0",
                published_settings={"output_size": 512, "quantize": "floor"}, export_graphs=export_graphs, int8_modules=liveportrait_int8_modules,
                float32_modules=liveportrait_float32_modules)
def liveportrait(input_size: int = 256, num_kp: int | None = None, appearance_feature_extractor: dict | None = None,
                 motion_extractor: dict | None = None, warping_module: dict | None = None, spade_generator: dict | None = None,
                 stitching_retargeting_module: dict | None = None) -> LivePortrait:
    """LivePortrait v1 (human and animals releases share it); ``num_kp`` sets the keypoint count of M, W and S; each
    dict overrides single arguments of one module (``dense_motion_params`` merged key by key). Its graphs export
    through :func:`export_graphs`. Load a release with ``create_model("liveportrait", ckpt=DIR)``."""
    overrides = {"appearance_feature_extractor": appearance_feature_extractor, "motion_extractor": motion_extractor,
                 "warping_module": warping_module, "spade_generator": spade_generator,
                 "stitching_retargeting_module": stitching_retargeting_module}
    args = {part: {**LIVEPORTRAIT_SETTINGS[part], **(overrides[part] or {})} for part in PARTS}
    args["warping_module"]["dense_motion_params"] = {**LIVEPORTRAIT_SETTINGS["warping_module"]["dense_motion_params"],
                                                     **(warping_module or {}).get("dense_motion_params", {})}
    if num_kp is not None:
        for part in ("motion_extractor", "warping_module", "stitching_retargeting_module"):
            args[part]["num_kp"] = num_kp
    return LivePortrait(**args)
