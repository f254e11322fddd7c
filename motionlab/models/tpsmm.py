"""Thin-Plate Spline Motion Model (TPSMM, Zhao & Zhang, CVPR 2022) and its release format beside it.

Module and parameter names follow the release, so ``state_dict()`` of ``tpsmm_vox256`` / ``tpsmm_taichi256`` /
``tpsmm_mgif256`` / ``tpsmm_ted384`` matches ``vox.pth.tar`` / ``taichi.pth.tar`` / ``mgif.pth.tar`` / ``ted.pth.tar``
key for key (the five networks ``kp_detector``, ``dense_motion_network``, ``inpainting_network``, ``avd_network``,
``bg_predictor``); :func:`tpsmm_checkpoint_filter` reads those files.

Convention: keypoints are :class:`~motionlab.geometry.Keypoints`, (B, num_tps * 5, 2), normalised corner-aligned
[-1, 1]; consecutive groups of 5 are the control points of one thin-plate spline (driving -> source). Every
``grid_sample`` and every resize of a sampling grid uses ``align_corners=True``, as the release does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from motionlab.geometry import Keypoints, coordinate_grid, keypoints_to_gaussian
from motionlab.models.fomm import (
    AntiAliasInterpolation2d,
    DownBlock2d,
    Hourglass,
    ResBlock2d,
    SameBlock2d,
    UpBlock2d,
    instance_norm,
)
from motionlab.models.registry import ExportGraph, register_model
from motionlab.utils.checkpoint import WeightMismatchError

POINTS_PER_TPS = 5


def tps_parameters(kp_driving: torch.Tensor, kp_source: torch.Tensor, regularisation: float = 0.01) -> torch.Tensor:
    """The K thin-plate splines that carry each group of driving control points onto the source's.

    Convention: ``kp_driving`` / ``kp_source`` (B, K, 5, 2), x first, normalised. Returns (B, K, 8, 2): 5 radial weights,
    then the x, y and 1 coefficients, the solution of ``[[U, P], [P^T, 0]] + regularisation * I`` with
    ``U_ij = r^2 log r^2`` (TPSMM's Eq. 2, its ridge of 0.01).
    """
    b, k, n, _ = kp_driving.shape
    squared = (kp_driving.unsqueeze(3) - kp_driving.unsqueeze(2)).square().sum(-1)
    kernel = squared * torch.log(squared + 1e-9)
    homogeneous = torch.cat([kp_driving, kp_driving.new_ones(b, k, n, 1)], dim=3)
    system = torch.cat([torch.cat([kernel, homogeneous], dim=3),
                        torch.cat([homogeneous.transpose(2, 3), kp_driving.new_zeros(b, k, 3, 3)], dim=3)], dim=2)
    system = system + regularisation * torch.eye(n + 3, dtype=system.dtype, device=system.device)
    targets = torch.cat([kp_source, kp_source.new_zeros(b, k, 3, 2)], dim=2)
    # the explicit inverse, as the release computes it: with clustered control points the system is ill-conditioned,
    # and a solver's answer differs from it by ~1e-4
    return torch.inverse(system) @ targets


def tps_apply(points: torch.Tensor, kp_driving: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """(B, K, P, 2): where driving-frame ``points`` ((P, 2) or (B, P, 2)) sample the source under each spline of
    ``params`` (:func:`tps_parameters`) on the control points ``kp_driving`` (B, K, 5, 2). No matrix inverse: this part
    exports to ONNX."""
    b, k, n, _ = kp_driving.shape
    if points.dim() == 2:
        points = points.unsqueeze(0).expand(b, -1, -1)
    affine = points.unsqueeze(1) @ params[:, :, n:n + 2] + params[:, :, n + 2:]
    distances = (points.view(b, 1, -1, 1, 2) - kp_driving.view(b, k, 1, n, 2)).square().sum(-1)
    return affine + (distances * torch.log(distances + 1e-9)) @ params[:, :, :n]


def tps_warp(points: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor, regularisation: float = 0.01) -> torch.Tensor:
    """(B, K, P, 2): ``points`` under the K splines carrying ``kp_driving`` onto ``kp_source`` (both (B, K, 5, 2))."""
    return tps_apply(points, kp_driving, tps_parameters(kp_driving, kp_source, regularisation))


def _resnet18(outputs: int) -> nn.Module:
    # torchvision.models imports torchvision.ops and with it torch._dynamo (~2 s): only when a TPSMM network is built
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=outputs)


class TPSKeypointDetector(nn.Module):
    """A ResNet-18 regressing ``num_tps`` groups of 5 control points, squashed into [-1, 1] (TPSMM's KPDetector)."""

    def __init__(self, num_tps: int = 10, num_channels: int = 3):
        super().__init__()
        if num_channels != 3:
            raise ValueError("TPSMM's keypoint detector is a 3-channel ResNet-18")
        self.num_tps = num_tps
        self.fg_encoder = _resnet18(num_tps * POINTS_PER_TPS * 2)

    def forward(self, image: torch.Tensor) -> Keypoints:
        points = torch.sigmoid(self.fg_encoder(image)) * 2 - 1
        return Keypoints(points.view(image.shape[0], self.num_tps * POINTS_PER_TPS, 2), size=tuple(image.shape[-2:]))


class BackgroundPredictor(nn.Module):
    """A ResNet-18 on source and driving frames stacked: the 3x3 affine map (last row 0 0 1) of the background."""

    def __init__(self):
        super().__init__()
        self.bg_encoder = _resnet18(6)
        self.bg_encoder.conv1 = nn.Conv2d(6, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.zeros_(self.bg_encoder.fc.weight)
        with torch.no_grad():
            self.bg_encoder.fc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        b = source.shape[0]
        affine = self.bg_encoder(torch.cat([source, driving], dim=1)).view(b, 2, 3)
        return torch.cat([affine, affine.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], dim=1)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(width_out), nn.ReLU()]
    return nn.Sequential(*layers)


class AVDNetwork(nn.Module):
    """Animation via disentanglement: the source's identity code and the driver's pose code decoded into keypoints
    (the demo's ``avd`` mode, for drivers whose shape differs from the source's)."""

    def __init__(self, num_tps: int = 10, id_bottle_size: int = 64, pose_bottle_size: int = 64):
        super().__init__()
        size = num_tps * POINTS_PER_TPS * 2
        self.id_encoder = _mlp([size, 256, 512, 1024, id_bottle_size])
        self.pose_encoder = _mlp([size, 256, 512, 1024, pose_bottle_size])
        self.decoder = _mlp([pose_bottle_size + id_bottle_size, 1024, 512, 256, size])

    def forward(self, kp_source: Keypoints, kp_driving: Keypoints) -> Keypoints:
        b = kp_source.value.shape[0]
        pose = self.pose_encoder(kp_driving.value.reshape(b, -1))
        identity = self.id_encoder(kp_source.value.reshape(b, -1))
        return Keypoints(self.decoder(torch.cat([pose, identity], dim=1)).view_as(kp_driving.value), size=kp_driving.size)


class TPSDenseMotion(nn.Module):
    """K TPS warps + the background's affine map -> per-pixel contribution maps -> one backward flow, and occlusion
    masks at four resolutions (``multi_mask``; one otherwise), coarsest first."""

    def __init__(self, block_expansion: int = 64, num_blocks: int = 5, max_features: int = 1024, num_tps: int = 10, num_channels: int = 3,
                 scale_factor: float = 0.25, multi_mask: bool = True, kp_variance: float = 0.01):
        super().__init__()
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)
        self.scale_factor, self.multi_mask, self.num_tps, self.kp_variance = scale_factor, multi_mask, num_tps, kp_variance
        in_features = num_channels * (num_tps + 1) + num_tps * POINTS_PER_TPS + 1
        self.hourglass = Hourglass(block_expansion, in_features=in_features, max_features=max_features, num_blocks=num_blocks, norm=instance_norm)
        levels = self.hourglass.decoder.level_filters
        self.maps = nn.Conv2d(levels[-1], num_tps + 1, kernel_size=7, padding=3)
        if multi_mask:
            self.up_nums, occlusion_num = int(math.log2(1 / scale_factor)), 4
            widths = [levels[-1] // 2**i for i in range(self.up_nums + 1)]
            self.up = nn.ModuleList(UpBlock2d(widths[i], widths[i + 1], norm=instance_norm) for i in range(self.up_nums))
            channels = levels[len(levels) - (occlusion_num - self.up_nums):] + widths[1:]
        else:
            channels = [levels[-1]]
        self.occlusion = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=7, padding=3) for c in channels)

    def transformations(self, height: int, width: int, kp_driving: Keypoints, kp_source: Keypoints,
                        bg_param: torch.Tensor | None, tps_params: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K + 1, H, W, 2) sampling grids: the background's (identity, or ``bg_param``'s affine map) then each TPS
        (its parameters solved here, or given as ``tps_params``: :func:`tps_parameters`)."""
        b = kp_driving.value.shape[0]
        grid = coordinate_grid(height, width, kp_driving.value.device, kp_driving.value.dtype)
        driving = kp_driving.value.view(b, -1, POINTS_PER_TPS, 2)
        if tps_params is None:
            tps_params = tps_parameters(driving, kp_source.value.view(b, -1, POINTS_PER_TPS, 2))
        splines = tps_apply(grid.view(-1, 2), driving, tps_params).view(b, -1, height, width, 2)
        background = grid.expand(b, 1, height, width, 2)
        if bg_param is not None:
            homogeneous = torch.cat([background, torch.ones_like(background[..., :1])], dim=-1)
            mapped = (bg_param.view(b, 1, 1, 1, 3, 3) @ homogeneous.unsqueeze(-1)).squeeze(-1)
            background = mapped[..., :2] / mapped[..., 2:3]
        return torch.cat([background, splines], dim=1)

    @staticmethod
    def dropout_softmax(logits: torch.Tensor, p: float) -> torch.Tensor:
        """TPSMM's Eq. 7-8: a softmax over the contribution maps with each TPS's map dropped with probability ``p`` (the
        background's never). The release divides the logits by 1 - p only after taking their exponentials, so that
        scaling never reaches the result; this computes what the release computes."""
        keep = (torch.rand(logits.shape[:2], device=logits.device) < (1 - p)).to(logits.dtype)
        keep[:, 0] = 1
        exp = (logits - logits.max(dim=1, keepdim=True).values).exp() * keep[:, :, None, None]
        return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)

    def forward(self, source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints, bg_param: torch.Tensor | None = None,
                dropout_p: float = 0.0, tps_params: torch.Tensor | None = None) -> dict:
        if self.scale_factor != 1:
            source = self.down(source)
        b, c, h, w = source.shape
        heatmaps = keypoints_to_gaussian(kp_driving.value, h, w, self.kp_variance) - keypoints_to_gaussian(kp_source.value, h, w, self.kp_variance)
        heatmaps = torch.cat([heatmaps.new_zeros(b, 1, h, w), heatmaps], dim=1)
        grids = self.transformations(h, w, kp_driving, kp_source, bg_param, tps_params)
        k = grids.shape[1]
        repeated = source.unsqueeze(1).expand(b, k, c, h, w).reshape(b * k, c, h, w)
        deformed = F.grid_sample(repeated, grids.reshape(b * k, h, w, 2), align_corners=True).view(b, k, c, h, w)
        levels = self.hourglass.levels(torch.cat([heatmaps, deformed.view(b, -1, h, w)], dim=1))
        logits = self.maps(levels[-1])
        contribution = self.dropout_softmax(logits, dropout_p) if dropout_p > 0 else F.softmax(logits, dim=1)
        deformation = (grids.permute(0, 1, 4, 2, 3) * contribution.unsqueeze(2)).sum(dim=1).permute(0, 2, 3, 1)
        if self.multi_mask:
            direct = len(self.occlusion) - self.up_nums
            occlusion = [torch.sigmoid(self.occlusion[i](levels[len(levels) - direct + i])) for i in range(direct)]
            feature = levels[-1]
            for i, block in enumerate(self.up):
                feature = block(feature)
                occlusion.append(torch.sigmoid(self.occlusion[direct + i](feature)))
        else:
            occlusion = [torch.sigmoid(self.occlusion[0](levels[-1]))]
        return {"deformed_source": deformed, "contribution_maps": contribution, "deformation": deformation, "occlusion_map": occlusion}


def _warp(features: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Backward-warp (B, C, H, W) by a (B, h, w, 2) sampling grid, the grid resized to H x W (corner-aligned, as TPSMM)."""
    if deformation.shape[1:3] != features.shape[2:]:
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=features.shape[2:], mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
    return F.grid_sample(features, deformation, align_corners=True)


def _occlude(features: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
    if occlusion.shape[2:] != features.shape[2:]:
        occlusion = F.interpolate(occlusion, size=features.shape[2:], mode="bilinear", align_corners=True)
    return features * occlusion


class InpaintingNetwork(nn.Module):
    """Encode the source, warp and occlusion-mask its features at every resolution, decode with those as skips, and
    blend the result with the warped source image by the finest occlusion mask (TPSMM's generator)."""

    def __init__(self, num_channels: int = 3, block_expansion: int = 64, max_features: int = 512, num_down_blocks: int = 3, multi_mask: bool = True):
        super().__init__()
        self.num_down_blocks, self.multi_mask = num_down_blocks, multi_mask
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3, norm=instance_norm)
        down, up, res = [], [], []
        for i in range(num_down_blocks):
            width_in, width_out = min(max_features, block_expansion * 2**i), min(max_features, block_expansion * 2 ** (i + 1))
            down.append(DownBlock2d(width_in, width_out, norm=instance_norm))
            decoder_in = width_out if i == num_down_blocks - 1 else 2 * width_out
            up.append(UpBlock2d(decoder_in, width_in, norm=instance_norm))
            res += [ResBlock2d(decoder_in, norm=instance_norm), ResBlock2d(decoder_in, norm=instance_norm)]
        self.down_blocks = nn.ModuleList(down)
        self.up_blocks = nn.ModuleList(up[::-1])
        self.resblock = nn.ModuleList(res[::-1])
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's features, finest first: (B, C_i, H / 2**i, W / 2**i) for i = 0 .. num_down_blocks."""
        features = [self.first(image)]
        for block in self.down_blocks:
            features.append(block(features[-1]))
        return features

    def forward(self, source: torch.Tensor, motion: dict, source_features: list[torch.Tensor] | None = None,
                warped_maps: bool = False) -> dict:
        """``motion``: :class:`TPSDenseMotion`'s output. ``warped_maps`` adds the warped, masked encoder features
        (gradients stopped, coarsest first) that the warp loss compares with the driver's own (:meth:`driver_maps`)."""
        features = self.encode(source) if source_features is None else [f.expand(source.shape[0], -1, -1, -1) for f in source_features]
        deformation, occlusion = motion["deformation"], motion["occlusion_map"]
        mask = lambda level: occlusion[level if self.multi_mask else 0]  # noqa: E731
        out = _occlude(_warp(features[-1], deformation), mask(0))
        maps = [_occlude(_warp(features[-1].detach(), deformation), mask(0).detach())] if warped_maps else []
        for i in range(self.num_down_blocks):
            out = self.up_blocks[i](self.resblock[2 * i + 1](self.resblock[2 * i](out)))
            skip = _occlude(_warp(features[-(i + 2)], deformation), mask(i + 1))
            if warped_maps:
                maps.append(_occlude(_warp(features[-(i + 2)].detach(), deformation), mask(i + 1).detach()))
            if i < self.num_down_blocks - 1:
                out = torch.cat([out, skip], dim=1)
        deformed = _warp(source, deformation)
        last = occlusion[-1]
        if last.shape[2:] != out.shape[2:]:
            last = F.interpolate(last, size=out.shape[2:], mode="bilinear", align_corners=True)
        out = torch.sigmoid(self.final(out * (1 - last) + skip))
        result = {"prediction": out * (1 - last) + deformed * last, "deformed": deformed, **motion}
        if warped_maps:
            result["warped_encoder_maps"] = maps
        return result

    def driver_maps(self, driving: torch.Tensor, occlusion: list[torch.Tensor]) -> list[torch.Tensor]:
        """The driver's own encoder features masked like :meth:`forward`'s warped maps (finest first; no gradients
        reach the encoder through them, as in the release's warp loss)."""
        out = self.first(driving)
        maps = [_occlude(out.detach(), occlusion[-1].detach())]
        for i, block in enumerate(self.down_blocks):
            out = block(out.detach())
            maps.append(_occlude(out.detach(), occlusion[len(occlusion) - 2 - i].detach()))
        return maps


# The release configs' model_params (config/{vox-256,taichi-256,mgif-256,ted-384}.yaml) and training schedules
# (train_params: TPS dropout while epoch < dropout_epoch, rising from dropout_startp by dropout_maxp per
# dropout_inc_epoch epochs up to dropout_maxp; the background predictor from epoch bg_start).
TPSMM_SETTINGS: dict[str, dict] = {
    name: {
        "num_tps": 10, "bg": name != "mgif-256", "multi_mask": True,
        "generator": {"block_expansion": 64, "max_features": 512, "num_down_blocks": 3},
        "dense_motion": {"block_expansion": 64, "max_features": 1024, "num_blocks": 5, "scale_factor": 0.25},
        "avd": {"id_bottle_size": 128, "pose_bottle_size": 128},
        "schedule": {"dropout_epoch": 35, "dropout_maxp": 0.5 if name == "ted-384" else 0.3, "dropout_startp": 0.0 if name == "ted-384" else 0.1,
                     "dropout_inc_epoch": 10, "bg_start": 0 if name == "ted-384" else 10},
    }
    for name in ("vox-256", "taichi-256", "mgif-256", "ted-384")
}


class TPSMM(nn.Module):
    """TPSMM: keypoint detector, TPS dense motion, inpainting generator, AVD network and (``bg``) background predictor.

    ``forward(source, driving)`` is the training pass (TPS dropout and background motion by the schedule and the
    epoch set with :meth:`set_epoch`); inference uses the keypoint-animator interface it shares with
    :class:`~motionlab.models.fomm.FOMM`: ``kp_detector``, :meth:`encode_source`, :meth:`animate`.
    """

    def __init__(self, num_tps: int = 10, num_channels: int = 3, bg: bool = True, multi_mask: bool = True, generator: dict | None = None,
                 dense_motion: dict | None = None, avd: dict | None = None, schedule: dict | None = None):
        super().__init__()
        self.num_tps = num_tps
        self.kp_detector = TPSKeypointDetector(num_tps, num_channels)
        self.dense_motion_network = TPSDenseMotion(num_tps=num_tps, num_channels=num_channels, multi_mask=multi_mask, **(dense_motion or {}))
        self.inpainting_network = InpaintingNetwork(num_channels, multi_mask=multi_mask, **(generator or {}))
        self.avd_network = AVDNetwork(num_tps, **(avd or {}))
        # every release file carries one (the manifests list it for all four configs); only ``bg`` configs use it
        self.bg_predictor = BackgroundPredictor()
        self.bg = bg
        self.schedule = dict(schedule or {})
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The training epoch the schedule's dropout probability and background start are read at."""
        self.epoch = epoch

    @property
    def dropout_p(self) -> float:
        s = self.schedule
        if not self.training or not s or self.epoch >= s["dropout_epoch"]:
            return 0.0
        return min(self.epoch / s["dropout_inc_epoch"] * s["dropout_maxp"] + s["dropout_startp"], s["dropout_maxp"])

    @property
    def background_active(self) -> bool:
        return self.bg and self.training and self.epoch >= self.schedule.get("bg_start", 0)

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        kp_source, kp_driving = self.kp_detector(source), self.kp_detector(driving)
        bg_param = self.bg_predictor(source, driving) if self.background_active else None
        motion = self.dense_motion_network(source, kp_driving, kp_source, bg_param=bg_param, dropout_p=self.dropout_p)
        out = self.inpainting_network(source, motion, warped_maps=self.training)
        return {**out, "image": out["prediction"], "kp_source": kp_source, "kp_driving": kp_driving, "bg_param": bg_param}

    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor]:
        """What depends on the source alone (the inpainting encoder's features), computed once per portrait."""
        return self.inpainting_network.encode(source)

    def animate(self, source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints,
                source_features: list[torch.Tensor] | None = None, tps_params: torch.Tensor | None = None) -> dict:
        """(B, 3, H, W) source frames moved to ``kp_driving`` (no background motion, as the release demo):
        ``prediction`` in [0, 1], ``deformation``, ``occlusion_map`` ... ``tps_params``: the splines solved beforehand
        (:func:`tps_parameters`; the exported generator takes them as an input, since ONNX has no matrix inverse)."""
        motion = self.dense_motion_network(source, kp_driving, kp_source, tps_params=tps_params)
        return self.inpainting_network(source, motion, source_features=source_features)


TPSMM_PARTS = ("kp_detector", "dense_motion_network", "inpainting_network", "avd_network", "bg_predictor")


def tpsmm_checkpoint_filter(state: dict, source: str) -> dict:
    """TPSMM release files (the five networks' state dicts next to optimisers and ``epoch``) as one flat state dict;
    flat state dicts (motionlab's ``net``) pass through. A file without ``bg_predictor`` (the release's training code
    builds it only for configs with a background, and its demo never loads it) gets a fresh one, whose zero output
    layer gives the identity map: no background motion, which is what such a file's model did."""
    if not any(isinstance(value, dict) for value in state.values()):
        return state
    required = TPSMM_PARTS[:4]
    missing = [part for part in required if not isinstance(state.get(part), dict)]
    if missing:
        hint = " (its entries are a FOMM release file's: use arch=fomm_vox256, or the fomm variant of its config)" if "generator" in state else ""
        raise WeightMismatchError(f"{source} is not a TPSMM checkpoint: entries {missing} are missing (it has {sorted(state)}); expected the "
                                  f"release format with 'kp_detector', 'dense_motion_network', 'inpainting_network' and 'avd_network' state dicts{hint}")
    parts = {part: state[part] for part in TPSMM_PARTS[:4]}
    parts["bg_predictor"] = state["bg_predictor"] if isinstance(state.get("bg_predictor"), dict) else BackgroundPredictor().state_dict()
    return {f"{part}.{key}": value for part, values in parts.items() for key, value in values.items()}


def _tpsmm(setting: str, overrides: dict) -> TPSMM:
    settings = TPSMM_SETTINGS[setting]
    args = {key: ({**value, **overrides.get(key, {})} if isinstance(value, dict) else overrides.get(key, value)) for key, value in settings.items()}
    unknown = sorted(set(overrides) - set(settings))
    if unknown:
        raise TypeError(f"unknown TPSMM arguments {unknown}; known: {sorted(settings)}")
    return TPSMM(**args)


class _KeypointGraph(nn.Module):
    def __init__(self, model: TPSMM):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.kp_detector(image).value


class _GeneratorGraph(_KeypointGraph):
    def forward(self, source: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor, tps_params: torch.Tensor) -> torch.Tensor:
        size = tuple(source.shape[-2:])
        return self.model.animate(source, Keypoints(kp_driving, size), Keypoints(kp_source, size), tps_params=tps_params)["prediction"]


class _AVDGraph(_KeypointGraph):
    def forward(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        return self.model.avd_network(Keypoints(kp_source, (1, 1)), Keypoints(kp_driving, (1, 1))).value


def tpsmm_export_graphs(model: TPSMM, batch: int, generator: torch.Generator | None) -> dict[str, ExportGraph]:
    """TPSMM as three graphs: ``kp_detector`` (image -> keypoints), ``generator`` (source, driving and source keypoints,
    and the splines' parameters from :func:`tps_parameters`, solved outside the graph -> prediction) and
    ``avd_network``. Example keypoints are spread over the frame, so the splines are well-conditioned."""
    height, width = model.model_info.input_size
    image = torch.rand(batch, 3, height, width, generator=generator)
    points = model.num_tps * POINTS_PER_TPS
    kp_driving, kp_source = (torch.rand(batch, points, 2, generator=generator) * 1.6 - 0.8 for _ in range(2))
    params = tps_parameters(kp_driving.view(batch, -1, POINTS_PER_TPS, 2), kp_source.view(batch, -1, POINTS_PER_TPS, 2))
    return {"kp_detector": ExportGraph(_KeypointGraph(model), {"image": image}, ("keypoints",)),
            # 256 px through a 5-level hourglass and instance norms: 1.4e-4 measured on random release-size weights (0.04 of
            # a uint8 level), above the exporter's default of 1e-4
            "generator": ExportGraph(_GeneratorGraph(model), {"source": image, "kp_driving": kp_driving, "kp_source": kp_source,
                                                              "tps_params": params}, ("prediction",), tolerance=5e-4),
            "avd_network": ExportGraph(_AVDGraph(model), {"kp_source": kp_source, "kp_driving": kp_driving}, ("keypoints",))}


# LoRA by default adapts the inpainting decoder (residual blocks, up-sampling, output): the appearance path
# a release file runs as the release demo's relative mode does: motion scaled by the ratio of keypoint hull areas
def tpsmm_int8_modules(model: TPSMM) -> tuple[str, ...]:
    """What ``precision=int8`` quantizes: the dense-motion hourglass (its encoder and up blocks: TPSMM reads every
    level of it) and the inpainting decoder's residual and up blocks; the keypoint ResNet, the thin-plate solve, the
    warps, the occlusion heads and the output convolution stay fp32."""
    hourglass, inpainting = model.dense_motion_network.hourglass, model.inpainting_network
    return ("dense_motion_network.hourglass.encoder",
            *(f"dense_motion_network.hourglass.decoder.up_blocks.{i}" for i in range(len(hourglass.decoder.up_blocks))),
            *(f"inpainting_network.resblock.{i}" for i in range(len(inpainting.resblock))),
            *(f"inpainting_network.up_blocks.{i}" for i in range(len(inpainting.up_blocks))))


def tpsmm_float32_modules(model: TPSMM) -> tuple[str, ...]:
    """What ``precision=bf16`` leaves in float32: everything that places pixels (the keypoint ResNet, the dense motion
    with its thin-plate warps and contribution maps, the AVD and background-motion networks); the inpainting network,
    most of a frame's time, runs in bf16 (on real frames with data statistics: 31 dB from fp32 with only the inpainting
    left out, 60 dB this way, at the same speed; docs/benchmarks.md)."""
    return tuple(name for name in ("kp_detector", "dense_motion_network", "avd_network", "bg_predictor")
                 if isinstance(getattr(model, name, None), nn.Module))


_TPSMM_INFO = dict(family="keypoint_animator", checkpoint_filter=tpsmm_checkpoint_filter, published_settings={"adapt_movement_scale": True},
                   export_graphs=tpsmm_export_graphs, int8_modules=tpsmm_int8_modules, float32_modules=tpsmm_float32_modules,
                   lora_targets=r"inpainting_network\.(resblock\.\d+\.conv[12]|up_blocks\.\d+\.conv|final)")


@register_model(input_size=256, **_TPSMM_INFO)
def tpsmm_vox256(input_size: int = 256, **overrides) -> TPSMM:
    """TPSMM with the release's vox-256 settings (faces; ``vox.pth.tar``)."""
    return _tpsmm("vox-256", overrides)


@register_model(input_size=256, **_TPSMM_INFO)
def tpsmm_taichi256(input_size: int = 256, **overrides) -> TPSMM:
    """TPSMM with the release's taichi-256 settings (full bodies; ``taichi.pth.tar``)."""
    return _tpsmm("taichi-256", overrides)


@register_model(input_size=256, **_TPSMM_INFO)
def tpsmm_mgif256(input_size: int = 256, **overrides) -> TPSMM:
    """TPSMM with the release's mgif-256 settings (no background predictor; ``mgif.pth.tar``)."""
    return _tpsmm("mgif-256", overrides)


@register_model(input_size=384, **_TPSMM_INFO)
def tpsmm_ted384(input_size: int = 384, **overrides) -> TPSMM:
    """TPSMM with the release's ted-384 settings (upper bodies at 384 px; ``ted.pth.tar``)."""
    return _tpsmm("ted-384", overrides)
