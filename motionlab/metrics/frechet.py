"""Fréchet distances between feature distributions (FID-style and clip-level FVD-style), and the kernel distance.

Feature sums and outer-product sums are accumulated in float64 (torchmetrics' FID states) and summed across
processes, so the value under DDP equals the single-process value on the same data.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance

from motionlab.metrics.features import ImageFeatures


class PrecomputedFeatures(nn.Module):
    """The feature extractor of a Fréchet distance fed features already computed: (N, D) in, the same out."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class FeatureFrechetDistance(FrechetInceptionDistance):
    """Fréchet distance between two sets of precomputed (N, D) features (``real`` and ``generated``):
    torchmetrics' ``FrechetInceptionDistance`` (its float64 moment sums and ``_compute_fid``) with a pass-through
    feature extractor, so each Fréchet distance here is computed one way, by torchmetrics. ``real_count`` is the
    number of real samples added."""

    def __init__(self, dim: int, **kwargs):
        super().__init__(feature=PrecomputedFeatures(dim), **kwargs)

    def add_features(self, features: torch.Tensor, real: bool) -> None:
        """Add (N, D) features (of this metric's backbone, where it has one)."""
        FrechetInceptionDistance.update(self, features.double(), real)

    def update(self, features: torch.Tensor, real: bool) -> None:
        self.add_features(features, real)

    @property
    def real_count(self) -> int:
        return int(self.real_features_num_samples)


class FrechetDistance(FeatureFrechetDistance):
    """Fréchet distance between features of real and generated images.

    ``update(images, real)`` takes (B, 3, H, W) images in [0, 1]. With ``efficientnet_lite0`` features
    the value is logged as ``fd_effnetlite0`` (not comparable with published FID); with the FID
    Inception weights it is ``fid_inception`` and equals torchmetrics' ``FrechetInceptionDistance``.
    """

    def __init__(self, features: ImageFeatures | None = None, **kwargs):
        features = features if features is not None else ImageFeatures()
        super().__init__(features.dim, **kwargs)
        self.features: nn.Module = features
        self.name = "fid_inception" if features.backbone_name == "inception_v3" else f"fd_{features.metric_suffix}"

    def update(self, images: torch.Tensor, real: bool) -> None:
        self.add_features(self.features(images), real)


class ClipFrechetDistance(FeatureFrechetDistance):
    """FVD-style Fréchet distance over clips: each clip is the concatenated mean and standard deviation
    of its frames' features, so appearance and its variation over time both count.

    ``update(clips, real)`` takes (B, T, 3, H, W) clips in [0, 1] (T >= 2). Logged as ``fvd_<backbone>``.
    """

    def __init__(self, features: ImageFeatures | None = None, **kwargs):
        features = features if features is not None else ImageFeatures()
        super().__init__(2 * features.dim, **kwargs)
        self.features: nn.Module = features
        self.name = f"fvd_{features.metric_suffix}"

    def update(self, clips: torch.Tensor, real: bool) -> None:
        if clips.ndim != 5 or clips.shape[1] < 2:
            raise ValueError(f"ClipFrechetDistance expects (B, T>=2, 3, H, W) clips, got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        self.add_frame_features(self.features(clips.flatten(0, 1)).view(b, t, -1), real)

    def add_frame_features(self, per_frame: torch.Tensor, real: bool) -> None:
        """Add (B, T, D) frame features already computed by this metric's backbone (T >= 2)."""
        self.add_features(torch.cat([per_frame.mean(1), per_frame.std(1)], dim=1), real)


class KernelDistance(Metric):
    """KID: the unbiased squared MMD of real and generated image features under the cubic polynomial kernel
    ``(x.y / d + 1)^3``, averaged over ``subsets`` random subsets of ``subset_size`` (torchmetrics'
    ``KernelInceptionDistance`` and its ``poly_mmd``; the subset size shrinks to the smaller set when the evaluation
    has fewer images, and the subsets are drawn from a seeded generator so a run repeats). ``update(images, real)``
    takes (B, 3, H, W) images in [0, 1]; ``compute`` returns the mean (logged as ``kid_inception`` with the FID
    Inception, ``kd_<backbone>`` otherwise)."""

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, features: ImageFeatures | None = None, subsets: int = 100, subset_size: int = 1000, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.features: nn.Module = features if features is not None else ImageFeatures()
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        self.name = "kid_inception" if self.features.backbone_name == "inception_v3" else f"kd_{self.features.metric_suffix}"
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("generated_features", default=[], dist_reduce_fx="cat")

    def update(self, images: torch.Tensor, real: bool) -> None:
        self.add_features(self.features(images), real)

    def add_features(self, features: torch.Tensor, real: bool) -> None:
        """Add (N, D) features already computed by this metric's backbone."""
        (self.real_features if real else self.generated_features).append(features.double())

    @property
    def real_count(self) -> int:
        return sum(len(part) for part in self.real_features) if isinstance(self.real_features, list) else len(self.real_features)

    def compute(self) -> torch.Tensor:
        from torchmetrics.image.kid import poly_mmd
        from torchmetrics.utilities import dim_zero_cat

        real, generated = dim_zero_cat(self.real_features), dim_zero_cat(self.generated_features)
        size = min(self.subset_size, len(real), len(generated))
        if size < 2:
            raise ValueError(f"KID needs at least 2 real and 2 generated images, got {len(real)} and {len(generated)}")
        generator = torch.Generator().manual_seed(self.seed)
        scores = [poly_mmd(real[torch.randperm(len(real), generator=generator)[:size]],
                           generated[torch.randperm(len(generated), generator=generator)[:size]]) for _ in range(self.subsets)]
        return torch.stack(scores).mean()
