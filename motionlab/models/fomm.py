"""FOMM-compatible keypoint detector, dense motion network and occlusion-aware generator, and the FOMM
release format (``*.pth.tar`` with ``kp_detector`` and ``generator`` state dicts) beside them.

Module and parameter names follow the First Order Motion Model release, so ``state_dict()`` of the
``fomm_vox256`` / ``fomm_taichi256`` / ``fomm_mgif256`` variants matches the published checkpoints key for
key and shape for shape; :func:`fomm_checkpoint_filter` reads those files, :func:`save_fomm_checkpoint`
writes them.

Keypoints are :class:`~motionlab.geometry.Keypoints`, normalised (corner-aligned [-1, 1]); every
``grid_sample`` uses ``align_corners=True``: the published weights were trained with that (PyTorch 1.0) behaviour.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from motionlab.geometry import Keypoints, heatmap_to_keypoints, keypoints_to_gaussian, sparse_motions
from motionlab.models.registry import register_model
from motionlab.utils.checkpoint import WeightMismatchError, atomic_torch_save


def batch_norm(features: int) -> nn.Module:
    """FOMM's normalisation (the release used synchronised batch norm: the same parameters and statistics)."""
    return nn.BatchNorm2d(features, affine=True)


def instance_norm(features: int) -> nn.Module:
    """TPSMM's normalisation: affine, no running statistics (so no such keys in its release files)."""
    return nn.InstanceNorm2d(features, affine=True)


Norm = Callable[[int], nn.Module]


class SameBlock2d(nn.Module):
    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1, norm: Norm = batch_norm):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = norm(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(SameBlock2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), 2)


class UpBlock2d(SameBlock2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock2d(nn.Module):
    def __init__(self, features: int, kernel_size: int = 3, padding: int = 1, norm: Norm = batch_norm):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.norm1 = norm(features)
        self.norm2 = norm(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


class Encoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int, norm: Norm = batch_norm):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else min(max_features, block_expansion * 2**i), min(max_features, block_expansion * 2 ** (i + 1)), norm=norm)
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int, norm: Norm = batch_norm):
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock2d((1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * 2 ** (i + 1)), min(max_features, block_expansion * 2**i),
                      norm=norm)
            for i in reversed(range(num_blocks))
        )
        self.out_filters = block_expansion + in_features
        # channels of each level's output, coarsest first (the last is out_filters)
        self.level_filters = [2 * min(max_features, block_expansion * 2 ** (i + 1)) for i in reversed(range(num_blocks - 1))] + [self.out_filters]

    def levels(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every level's output (up-sampled features concatenated with the encoder's skip), coarsest first."""
        skips = list(skips)
        out, outs = skips.pop(), []
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
            outs.append(out)
        return outs

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        return self.levels(skips)[-1]


class Hourglass(nn.Module):
    """FOMM's hourglass; H and W must be divisible by ``2 ** num_blocks``."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256, norm: Norm = batch_norm):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features, norm)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features, norm)
        self.out_filters = self.decoder.out_filters
        self.factor = 2**num_blocks

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"hourglass input H, W must be divisible by {self.factor}, got {tuple(x.shape[-2:])}")
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._encode(x))

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The decoder's output at every level, coarsest first (TPSMM's occlusion masks read several)."""
        return self.decoder.levels(self._encode(x))


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then subsampling by ``1 / scale`` (FOMM's ``down`` with its 13x13 kernel at 0.25)."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        grid = torch.arange(size, dtype=torch.float32)
        profile = torch.exp(-(((grid - (size - 1) / 2) / (2 * sigma)) ** 2))
        kernel = torch.outer(profile, profile)
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1))
        self.groups, self.step = channels, int(1 / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the release blurs every pixel, then keeps every step-th: a strided convolution computes only those, to the
        # same bits, 3.5-6x faster (FOMM's 256 px frames at 0.25: 7.2 -> 1.2 ms contiguous)
        return F.conv2d(F.pad(x, (self.ka, self.kb, self.ka, self.kb)), self.weight, groups=self.groups, stride=self.step)


class KPDetector(nn.Module):
    """Unsupervised keypoints: hourglass -> K heatmaps -> softmax(./temperature) -> soft-argmax, with
    optional 2x2 local Jacobians (heatmap-weighted sums of a 4-channel map per keypoint).

    Returns normalised :class:`Keypoints` of the (B, 3, H, W) input: ``value`` (B, K, 2), ``jacobian`` (B, K, 2, 2).
    """

    def __init__(self, block_expansion: int = 32, num_kp: int = 10, num_channels: int = 3, max_features: int = 1024,
                 num_blocks: int = 5, temperature: float = 0.1, estimate_jacobian: bool = True, scale_factor: float = 0.25,
                 single_jacobian_map: bool = False, pad: int = 0):
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels, max_features=max_features, num_blocks=num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=7, padding=pad)
        self.num_kp, self.temperature, self.scale_factor = num_kp, temperature, scale_factor
        self.num_jacobian_maps = (1 if single_jacobian_map else num_kp) if estimate_jacobian else 0
        if estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps, kernel_size=7, padding=pad)
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps))
        else:
            self.jacobian = None
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, image: torch.Tensor) -> Keypoints:
        size = tuple(image.shape[-2:])
        if self.scale_factor != 1:
            image = self.down(image)
        features = self.predictor(image)
        logits = self.kp(features)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        jacobian = None
        if self.jacobian is not None:
            maps = self.jacobian(features).view(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * maps).view(b, k, 4, -1).sum(-1).view(b, k, 2, 2)
        return Keypoints(heatmap_to_keypoints(heatmap), size=size, jacobian=jacobian)


class DenseMotionNetwork(nn.Module):
    """Sparse keypoint motions -> K + 1 soft masks -> dense backward deformation, plus an occlusion map."""

    def __init__(self, block_expansion: int = 64, num_blocks: int = 5, max_features: int = 1024, num_kp: int = 10,
                 num_channels: int = 3, estimate_occlusion_map: bool = True, scale_factor: float = 0.25, kp_variance: float = 0.01):
        super().__init__()
        self.hourglass = Hourglass(block_expansion, in_features=(num_kp + 1) * (num_channels + 1), max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3) if estimate_occlusion_map else None
        self.num_kp, self.scale_factor, self.kp_variance = num_kp, scale_factor, kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> dict[str, torch.Tensor]:
        if self.scale_factor != 1:
            source = self.down(source)
        b, c, h, w = source.shape
        gaussians = keypoints_to_gaussian(kp_driving.value, h, w, self.kp_variance) - keypoints_to_gaussian(kp_source.value, h, w, self.kp_variance)
        heatmaps = torch.cat([gaussians.new_zeros(b, 1, h, w), gaussians], dim=1).unsqueeze(2)
        motions = sparse_motions(h, w, kp_driving, kp_source)
        repeated = source.unsqueeze(1).expand(b, self.num_kp + 1, c, h, w).reshape(b * (self.num_kp + 1), c, h, w)
        deformed = F.grid_sample(repeated, motions.view(b * (self.num_kp + 1), h, w, 2), align_corners=True).view(b, self.num_kp + 1, c, h, w)
        prediction = self.hourglass(torch.cat([heatmaps, deformed], dim=2).view(b, -1, h, w))
        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (motions.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1).permute(0, 2, 3, 1)
        out = {"sparse_deformed": deformed, "mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out


def deform(features: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Backward-warp (B, C, H, W) by a (B, h, w, 2) corner-aligned sampling grid (resized to H x W)."""
    if deformation.shape[1:3] != features.shape[2:]:
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=features.shape[2:], mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    return F.grid_sample(features, deformation, align_corners=True)


class OcclusionAwareGenerator(nn.Module):
    """Encode the source, warp its features by the dense motion, mask by occlusion, decode.

    ``forward(source, kp_driving, kp_source)`` returns ``prediction`` (B, 3, H, W) in [0, 1], plus
    ``deformed`` (the warped source image), ``mask``, ``sparse_deformed`` and ``occlusion_map``;
    ``source_features`` (from :meth:`encode_source`, batch 1 or B) skips the source's encoder.

    ``skip_connections`` (off in the FOMM release, whose weights have no place for it) also warps and masks the
    encoder's features at every finer resolution and adds them to the decoder's output of the same resolution, as
    the later keypoint animators (MRAA, TPSMM) do: without them the decoder must rebuild every detail from the
    bottleneck (H / 2**d), which a model trained for minutes does not learn (a blur, worse than copying the source).
    """

    def __init__(self, num_channels: int = 3, num_kp: int = 10, block_expansion: int = 64, max_features: int = 512,
                 num_down_blocks: int = 2, num_bottleneck_blocks: int = 6, estimate_occlusion_map: bool = True,
                 dense_motion_params: dict | None = None, estimate_jacobian: bool = True, skip_connections: bool = False):
        super().__init__()
        self.skip_connections = skip_connections
        self.dense_motion_network = (
            DenseMotionNetwork(num_kp=num_kp, num_channels=num_channels, estimate_occlusion_map=estimate_occlusion_map, **dense_motion_params)
            if dense_motion_params is not None else None
        )
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(min(max_features, block_expansion * 2**i), min(max_features, block_expansion * 2 ** (i + 1))) for i in range(num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(min(max_features, block_expansion * 2 ** (num_down_blocks - i)), min(max_features, block_expansion * 2 ** (num_down_blocks - i - 1)))
            for i in range(num_down_blocks)
        )
        width = min(max_features, block_expansion * 2**num_down_blocks)
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)

    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor]:
        """The source's features before warping, finest first: (B, C_i, H / 2**i, W / 2**i) for i = 0 .. d. They
        depend on the source alone, so inference computes them once per portrait and passes them to :meth:`forward`."""
        features = [self.first(source)]
        for block in self.down_blocks:
            features.append(block(features[-1]))
        return features

    def forward(self, source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints,
                source_features: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        if source_features is None:
            features = self.encode_source(source)
        else:
            features = [feature.expand(source.shape[0], -1, -1, -1) for feature in source_features]
        if not self.skip_connections:
            features = features[-1:]
        result: dict[str, torch.Tensor] = {}
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network(source, kp_driving, kp_source)
            result.update(mask=motion["mask"], sparse_deformed=motion["sparse_deformed"])
            features = [deform(feature, motion["deformation"]) for feature in features]
            if "occlusion_map" in motion:
                result["occlusion_map"] = motion["occlusion_map"]
                features = [feature * _resized(motion["occlusion_map"], feature.shape[2:]) for feature in features]
            result["deformed"] = deform(source, motion["deformation"])
        out = self.bottleneck(features.pop())
        for block in self.up_blocks:
            out = block(out)
            if features:
                out = out + features.pop()
        result["prediction"] = torch.sigmoid(self.final(out))
        return result


def _resized(occlusion: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if occlusion.shape[2:] == size:
        return occlusion
    return F.interpolate(occlusion, size=size, mode="bilinear", align_corners=False)


# Published FOMM model settings (config/*.yaml of the release): detector and generator arguments.
FOMM_SETTINGS: dict[str, dict[str, dict]] = {
    name: {
        "kp_detector": {"block_expansion": 32, "num_kp": 10, "num_channels": 3, "max_features": 1024, "num_blocks": 5,
                        "temperature": 0.1, "estimate_jacobian": True, "scale_factor": 0.25, "single_jacobian_map": name == "mgif-256"},
        "generator": {"num_channels": 3, "num_kp": 10, "block_expansion": 64, "max_features": 512, "num_down_blocks": 2,
                      "num_bottleneck_blocks": 6, "estimate_occlusion_map": True, "estimate_jacobian": True,
                      "dense_motion_params": {"block_expansion": 64, "max_features": 1024, "num_blocks": 5, "scale_factor": 0.25}},
    }
    for name in ("vox-256", "taichi-256", "mgif-256")
}


class FOMM(nn.Module):
    """Keypoint detector + occlusion-aware generator: animate ``source`` with the keypoints of ``driving``.

    The keypoint-animator interface (shared with :class:`~motionlab.models.tpsmm.TPSMM`; predictors, adapters and
    cross-domain inference use only it): ``kp_detector(images) -> Keypoints``, :meth:`encode_source` and :meth:`animate`.
    """

    def __init__(self, kp_detector: dict, generator: dict):
        super().__init__()
        if kp_detector.get("num_kp") != generator.get("num_kp"):
            raise ValueError(f"kp_detector.num_kp ({kp_detector.get('num_kp')}) and generator.num_kp ({generator.get('num_kp')}) differ")
        self.kp_detector = KPDetector(**kp_detector)
        self.generator = OcclusionAwareGenerator(**generator)

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict[str, torch.Tensor]:
        kp_source, kp_driving = self.kp_detector(source), self.kp_detector(driving)
        out = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        return {**out, "image": out["prediction"], "kp_source": kp_source, "kp_driving": kp_driving}

    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor]:
        """What depends on the source alone, computed once per portrait and passed to :meth:`animate`."""
        return self.generator.encode_source(source)

    def animate(self, source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints,
                source_features: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) source frames moved to ``kp_driving``: ``prediction`` in [0, 1] and the motion's diagnostics."""
        return self.generator(source, kp_driving=kp_driving, kp_source=kp_source, source_features=source_features)


FOMM_PARTS = ("kp_detector", "generator")


def _fomm(setting: str, num_kp: int | None, kp_detector: dict | None, generator: dict | None) -> FOMM:
    """A FOMM model with a published ``setting``; ``num_kp`` sets both parts' keypoint count; ``kp_detector`` /
    ``generator`` dicts override single arguments (``dense_motion_params`` is merged key by key)."""
    detector_args = {**FOMM_SETTINGS[setting]["kp_detector"], **(kp_detector or {})}
    generator_args = {**FOMM_SETTINGS[setting]["generator"], **(generator or {})}
    generator_args["dense_motion_params"] = {**FOMM_SETTINGS[setting]["generator"]["dense_motion_params"], **(generator or {}).get("dense_motion_params", {})}
    if num_kp is not None:
        detector_args["num_kp"] = generator_args["num_kp"] = num_kp
    return FOMM(detector_args, generator_args)


def fomm_checkpoint_filter(state: dict, source: str) -> dict:
    """FOMM release files (``kp_detector`` and ``generator`` state dicts next to ``discriminator``, optimisers and
    ``epoch``) as one flat state dict; flat state dicts (motionlab's ``net``) pass through."""
    if not any(isinstance(value, dict) for value in state.values()):
        return state
    missing = [part for part in FOMM_PARTS if not isinstance(state.get(part), dict)]
    if missing:
        hint = " (its entries are a TPSMM release file's: use arch=tpsmm_vox256, or the tpsmm variant of its config)" if "inpainting_network" in state else ""
        raise WeightMismatchError(f"{source} is not a FOMM checkpoint: entries {missing} are missing (it has {sorted(state)}); "
                                  f"expected the release format with 'kp_detector' and 'generator' state dicts{hint}")
    return {f"{part}.{key}": value for part in FOMM_PARTS for key, value in state[part].items()}


def save_fomm_checkpoint(model: FOMM, path, epoch: int = 0):
    """Write ``model`` in the FOMM release format (readable by the original ``demo.py``); returns the path."""
    if model.generator.skip_connections:
        # the file would load key for key into the release code, which has no skips, and render something else
        raise WeightMismatchError("this model's generator uses skip_connections, which the FOMM release format and code do not have: "
                                  "the original demo.py would load the file and render different frames; keep the motionlab checkpoint")
    payload = {part: getattr(model, part).state_dict() for part in FOMM_PARTS}
    payload["epoch"] = epoch
    atomic_torch_save(payload, path)
    return path


def fomm_int8_modules(model: FOMM) -> tuple[str, ...]:
    """What ``precision=int8`` quantizes: the dense-motion hourglass, the bottleneck and the decoder's up blocks (~95 % of
    a vox-256 frame's convolutions); the detector (keypoints), the 7x7 mask / occlusion / output heads and the warps
    stay fp32."""
    generator = model.generator
    names = [f"generator.up_blocks.{i}" for i in range(len(generator.up_blocks))]
    if len(generator.bottleneck):
        names.insert(0, "generator.bottleneck")
    if generator.dense_motion_network is not None:
        names.insert(0, "generator.dense_motion_network.hourglass")
    return tuple(names)


def fomm_float32_modules(model: FOMM) -> tuple[str, ...]:
    """What ``precision=bf16`` leaves in float32: the keypoint detector (a keypoint and its Jacobian are means over a
    heatmap at temperature 0.1, so bf16's rounding moves them and every pixel with them: 32 dB from fp32 with it in
    bf16, 43 dB without, on real frames through a vox-256 FOMM with data statistics; docs/benchmarks.md)."""
    return ("kp_detector",)


# input_size: the side the model is trained and run at (inference resizes to it)
# LoRA by default adapts the generator's appearance path (bottleneck, decoder, output)
_FOMM_INFO = dict(family="keypoint_animator", input_size=256, checkpoint_filter=fomm_checkpoint_filter,
                  lora_targets=r"generator\.(bottleneck\.r\d+\.conv[12]|up_blocks\.\d+\.conv|final)", int8_modules=fomm_int8_modules,
                  float32_modules=fomm_float32_modules)


@register_model(**_FOMM_INFO)
def fomm_vox256(input_size: int = 256, num_kp: int | None = None, kp_detector: dict | None = None, generator: dict | None = None) -> FOMM:
    """FOMM with the published vox-256 settings (faces; ``vox-cpk.pth.tar``)."""
    return _fomm("vox-256", num_kp, kp_detector, generator)


@register_model(**_FOMM_INFO)
def fomm_taichi256(input_size: int = 256, num_kp: int | None = None, kp_detector: dict | None = None, generator: dict | None = None) -> FOMM:
    """FOMM with the published taichi-256 settings (full bodies; ``taichi-cpk.pth.tar``)."""
    return _fomm("taichi-256", num_kp, kp_detector, generator)


@register_model(**_FOMM_INFO)
def fomm_mgif256(input_size: int = 256, num_kp: int | None = None, kp_detector: dict | None = None, generator: dict | None = None) -> FOMM:
    """FOMM with the published mgif-256 settings (one shared Jacobian map; ``mgif-cpk.pth.tar``)."""
    return _fomm("mgif-256", num_kp, kp_detector, generator)
