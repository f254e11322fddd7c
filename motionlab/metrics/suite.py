"""The evaluation suite: every animation metric fed from (portrait, driver clip, generated clip).

Validation uses it on frame pairs (T = 2: a driver frame and its neighbour); ``motionlab-eval`` on
whole clips. Metric names say what they are computed with (``fd_effnetlite0`` is not Inception-FID;
``aed_effnetlite0`` is the L2 distance of EfficientNet-Lite0 features).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError

from motionlab.data.images import to_uint8
from motionlab.metrics.colour import ColourDrift
from motionlab.metrics.descriptor import AverageKeypointDistance
from motionlab.metrics.features import ImageFeatures
from motionlab.metrics.frechet import ClipFrechetDistance, FrechetDistance, KernelDistance
from motionlab.metrics.identity import ArcFaceSimilarity, IdentityDistance
from motionlab.metrics.lip_motion import LipMotion
from motionlab.metrics.perceptual import LearnedPerceptualSimilarity
from motionlab.metrics.pose_evaluation import FanKeypointDistance, OpenFaceIdentityDistance
from motionlab.metrics.reconstruction import ResidualMagnitude, reconstruction_metrics
from motionlab.metrics.sync import SyncNetScores
from motionlab.metrics.temporal import Flicker, MotionSmoothness, TemporalDifferenceConsistency
from motionlab.metrics.video_distance import FrechetVideoDistance

# The metrics a suite can be asked for, by a name that states what it is computed with (the name it reports under).
# Reconstruction (l1, psnr, ssim against the driver, l1_copy_baseline, l1_ratio_to_copy, residual_magnitude) is always
# computed, and akd / motion_smoothness whenever the suite is given a keypoint detector.
SUITE_METRICS = {
    "fd_effnetlite0": "Fréchet distance of frame features of the offline EfficientNet-Lite0 (FID-style, not comparable "
                      "with published FID)",
    "fid_inception": "FID: Fréchet distance of the FID Inception's pool features (suite.features.backbone=inception_v3 and "
                     "its weights file, suite.features.weights_path); equals torchmetrics' FrechetInceptionDistance",
    "kd_effnetlite0": "kernel distance (KID's unbiased polynomial-kernel MMD) of EfficientNet-Lite0 frame features (KID-style, "
                      "not comparable with published KID)",
    "kid_inception": "KID on the FID Inception's pool features (with its weights file); torchmetrics' KernelInceptionDistance "
                     "with subsets of up to 1000 images",
    "fvd_effnetlite0": "Fréchet distance of per-clip (mean, std) EfficientNet-Lite0 frame features (FVD-style, not I3D FVD); "
                       "clips of T >= 2",
    "fvd_inception": "the same on the FID Inception's features",
    "aed_effnetlite0": "identity distance: L2 between EfficientNet-Lite0 features of generated frames and the portrait",
    "aed_inception": "the same on the FID Inception's features",
    "lpips_alex": "LPIPS v0.1 of generated frames against the driver's, AlexNet backbone from your torchvision file "
                  "(suite.networks.lpips_alex=alexnet-owt-7be5be79.pth)",
    "lpips_vgg": "LPIPS v0.1, VGG-16 backbone (suite.networks.lpips_vgg=vgg16-397923af.pth)",
    "csim_arcface": "CSIM: cosine of ArcFace embeddings of generated frames and the portrait (suite.networks.csim_arcface="
                    "w600k_r50.onnx, InsightFace buffalo_l), faces aligned on five points from dlib's 68",
    "lse_syncnet": "lse_d_syncnet / lse_c_syncnet: LSE-D and LSE-C of the generated frames against the clip's audio, by the VGG "
                   "SyncNet (suite.networks.lse_syncnet=syncnet_v2.model), +-15 frames at 25 fps; clips with audio only",
    "fvd_i3d": "FVD: Fréchet distance of I3D logits of the first 16 frames of real and generated clips (suite.networks.fvd_i3d="
               "i3d_torchscript.pt, StyleGAN-V's), clips of T >= 16",
    "akd_fan": "AKD: mean |real - generated| of face-alignment's 68 FAN landmarks, in pixels, frame by frame (suite.networks."
               "akd_fan=2DFAN4-11f355bf06.pth.tar; faces by face-alignment's S3FD with suite.networks.s3fd=s3fd-619a316812.pth, "
               "else dlib's HOG detector), as FOMM's pose-evaluation computes it",
    "aed_openface": "AED: mean squared L2 distance of OpenFace embeddings of real and generated frames (suite.networks.aed_openface="
                    "openface.pth, OpenFacePytorch's nn4.small2.v1), as FOMM's pose-evaluation computes it",
    "lip_motion": "lip_opening_ccc / lip_opening_amplitude (the mouth's opening against the real video's: Lin's CCC, std ratio) "
                  "and lip_motion_in_silence (mouth change per frame where the audio is silent), by dlib's 68 points; clips with audio only",
    "temporal": "temporal_difference (mean |Δgenerated − Δdriver|) and flicker (high-pass energy where the driver is static)",
    "colour": "delta_e76, delta_e2000: Lab colour difference from the portrait; delta_e76_slope: its drift per frame",
}
# the feature metrics: (kind, the feature backbone's metric suffix)
FEATURE_METRICS = {"fd_effnetlite0": ("fd", "effnetlite0"), "fid_inception": ("fd", "inception"), "kd_effnetlite0": ("kd", "effnetlite0"),
                   "kid_inception": ("kd", "inception"), "fvd_effnetlite0": ("fvd", "effnetlite0"),
                   "fvd_inception": ("fvd", "inception"), "aed_effnetlite0": ("aed", "effnetlite0"), "aed_inception": ("aed", "inception")}
# the metrics computed with a standard network read from the user's file (suite.networks.<name>)
NETWORK_METRICS = ("lpips_alex", "lpips_vgg", "csim_arcface", "lse_syncnet", "fvd_i3d", "akd_fan", "aed_openface")
# what training validates with (the feature metrics cost tens of ms per image on a CPU core)
TRAINING_METRICS = ("temporal", "colour")


def check_metric_names(names) -> tuple[str, ...]:
    """``names`` as a tuple, each one of :data:`SUITE_METRICS`; otherwise an error listing them."""
    from motionlab.utils.config import ConfigError

    names = tuple(names)
    unknown = [name for name in names if name not in SUITE_METRICS]
    if unknown:
        listed = "; ".join(f"{name}: {text}" for name, text in SUITE_METRICS.items())
        raise ConfigError(f"unknown metric {unknown[0]!r}; the suite's metrics are {', '.join(SUITE_METRICS)} ({listed})")
    return names


class EvaluationSuite(nn.Module):
    """Owns the metrics of one evaluation and updates each from clips.

    Args:
        names: the metrics to compute, by name (:data:`SUITE_METRICS`); reconstruction is always computed.
        features: the feature backbone of the feature metrics (built as ``ImageFeatures()``, EfficientNet-Lite0, when
            one is asked for); every feature metric named must be computed on it.
        keypoint_detector: a detector mapping (N, 3, H, W) images to :class:`Keypoints` (a descriptor model's
            ``kp_detector``); enables AKD and motion smoothness. It is evaluation equipment, not part of the suite:
            it is neither registered as a sub-module nor moved with it.
        flicker_threshold: driver change below which a pixel counts as static for flicker.
        networks: the weights file of each standard metric network asked for (:data:`NETWORK_METRICS`: metric name ->
            path; :mod:`motionlab.metrics.standard` says which file each is), ``s3fd``, the face detector whose
            boxes ``akd_fan``'s landmarks start from, and ``sfd_face``, syncnet_python's, which cuts clips into the
            face tracks ``lse_syncnet`` scores (without it the whole frame is scored, as for LRS2's face-centred clips).
        standard_sha256: hashes you pinned for standard files published without one (metric name -> SHA-256).
        lse_min_track: with ``sfd_face``, the frames a face track must exceed to be scored (the reference's 100).
    """

    def __init__(
        self,
        names: list[str] | tuple[str, ...] = TRAINING_METRICS,
        features: ImageFeatures | None = None,
        keypoint_detector: nn.Module | None = None,
        flicker_threshold: float = 0.02,
        networks: dict | None = None,
        standard_sha256: dict | None = None,
        lse_min_track: int | None = None,
    ):
        super().__init__()
        self.names = check_metric_names(names)
        networks = {key: value for key, value in (networks or {}).items() if value is not None}
        missing = [name for name in self.names if name in NETWORK_METRICS and name not in networks]
        if missing:
            from motionlab.metrics.standard import STANDARD_WEIGHTS
            from motionlab.utils.config import ConfigError

            standard = STANDARD_WEIGHTS[missing[0]]
            raise ConfigError(f"metric {missing[0]!r} needs its network's weights file: suite.networks.{missing[0]}=<path to "
                              f"{standard.file}> (published at {standard.published}; nothing is downloaded)")
        kinds = {FEATURE_METRICS[name][0]: FEATURE_METRICS[name][1] for name in self.names if name in FEATURE_METRICS}
        if features is None and kinds:
            features = ImageFeatures()
        for name in self.names:
            if name in FEATURE_METRICS and FEATURE_METRICS[name][1] != features.metric_suffix:
                from motionlab.utils.config import ConfigError

                raise ConfigError(f"metric {name!r} is computed on {FEATURE_METRICS[name][1]} features, but the suite's are "
                                  f"{features.metric_suffix} ({SUITE_METRICS[name]}); choose the metrics of one backbone")
        self.features = features
        self.reconstruction = reconstruction_metrics()
        self.copy_baseline = MeanAbsoluteError()
        self.residual = ResidualMagnitude()
        self.frechet = FrechetDistance(features) if "fd" in kinds else None
        self.kernel = KernelDistance(features) if "kd" in kinds else None
        self.clip_frechet = ClipFrechetDistance(features) if "fvd" in kinds else None
        self.identity = IdentityDistance() if "aed" in kinds else None
        temporal = "temporal" in self.names
        self.temporal_difference = TemporalDifferenceConsistency() if temporal else None
        self.flicker = Flicker(static_threshold=flicker_threshold) if temporal else None
        self.colour = ColourDrift() if "colour" in self.names else None
        object.__setattr__(self, "keypoint_detector", keypoint_detector)  # unregistered: see the docstring
        self.akd = AverageKeypointDistance() if keypoint_detector is not None else None
        self.lpips = nn.ModuleDict({name: LearnedPerceptualSimilarity(name.removeprefix("lpips_"), networks[name])
                                    for name in self.names if name.startswith("lpips_")})
        self.csim = ArcFaceSimilarity(networks["csim_arcface"]) if "csim_arcface" in self.names else None
        self.sync = (SyncNetScores(networks["lse_syncnet"], face_detector=networks.get("sfd_face"), min_track=lse_min_track)
                     if "lse_syncnet" in self.names else None)
        self.lip_motion = LipMotion() if "lip_motion" in self.names else None
        self.video_distance = FrechetVideoDistance(networks["fvd_i3d"]) if "fvd_i3d" in self.names else None
        self.fan_keypoints = FanKeypointDistance(networks["akd_fan"], networks.get("s3fd")) if "akd_fan" in self.names else None
        self.openface = OpenFaceIdentityDistance(networks["aed_openface"]) if "aed_openface" in self.names else None
        self.networks, self.standard_sha256 = networks, dict(standard_sha256 or {})
        self.motion_smoothness = MotionSmoothness() if keypoint_detector is not None else None

    def weights_records(self) -> dict[str, dict]:
        """Per metric computed with a standard network, its weights file, SHA-256 and whether it is the standard one
        (:func:`motionlab.metrics.standard.weights_record`)."""
        from motionlab.metrics.standard import weights_record

        files = {name: self.networks[name] for name in self.names if name in NETWORK_METRICS}
        if self.features is not None and self.features.backbone_name == "inception_v3":
            files.update({name: self.features.weights_path for name in self.names if FEATURE_METRICS.get(name, ("", ""))[1] == "inception"})
        records = {name: weights_record("fid_inception" if name in FEATURE_METRICS else name, path, self.standard_sha256.get(name))
                   for name, path in files.items()}
        # LSE on face tracks and AKD's landmarks depend on their face detector's file too: its record joins theirs
        for metric, detector, what in (("lse_syncnet", "sfd_face", "face tracks"), ("akd_fan", "s3fd", "face boxes")):
            if metric in records and detector in self.networks:
                found = weights_record(detector, self.networks[detector], self.standard_sha256.get(detector))
                records[metric] = {**records[metric], "detector": found, "standard": records[metric]["standard"] and found["standard"],
                                   "reason": f"{records[metric]['reason']}; {what}: {found['reason']}"}
        if "akd_fan" in records and "s3fd" not in self.networks:  # AKD's landmarks are the protocol's only on face-alignment's boxes
            records["akd_fan"] = {**records["akd_fan"], "standard": False, "reason": f"{records['akd_fan']['reason']}; face boxes from dlib's "
                                  "HOG detector, not face-alignment's S3FD (give suite.networks.s3fd=s3fd-619a316812.pth)"}
        return records

    @torch.no_grad()
    def update(self, portrait: torch.Tensor, driver: torch.Tensor, generated: torch.Tensor, audio: list | None = None) -> None:
        """portrait (B, 3, H, W); driver and generated (B, T, 3, H, W), all in [0, 1]; ``audio``: per clip, (16 kHz
        samples, the frames' fps) for LSE, or None."""
        if driver.shape != generated.shape or driver.ndim != 5 or portrait.shape != driver.shape[:1] + driver.shape[2:]:
            raise ValueError(
                f"EvaluationSuite.update expects portrait (B, 3, H, W) and driver / generated (B, T, 3, H, W), "
                f"got {tuple(portrait.shape)}, {tuple(driver.shape)}, {tuple(generated.shape)}"
            )
        b, t = driver.shape[:2]
        # contiguous: torchmetrics' MeanAbsoluteError views its inputs flat
        frames_driver, frames_generated = driver.flatten(0, 1).contiguous(), generated.flatten(0, 1).contiguous()
        portraits = portrait.repeat_interleave(t, dim=0)
        self.reconstruction.update(frames_generated, frames_driver)
        self.copy_baseline.update(portraits, frames_driver)
        self.residual.update(frames_generated, portraits)
        computed: dict[bool, torch.Tensor] = {}

        def frame_features(real: bool) -> torch.Tensor:
            """The frames' backbone features, computed once for every feature metric."""
            if real not in computed:
                computed[real] = self.features(frames_driver if real else frames_generated)
            return computed[real]

        for metric in (self.frechet, self.kernel):
            if metric is not None:
                for real in (True, False):
                    metric.add_features(frame_features(real), real)
        if self.clip_frechet is not None and t >= 2:
            for real in (True, False):
                self.clip_frechet.add_frame_features(frame_features(real).view(b, t, -1), real)
        if self.video_distance is not None and t >= self.video_distance.frames:
            self.video_distance.update(driver, real=True)
            self.video_distance.update(generated, real=False)
        if self.identity is not None:
            self.identity.update(frame_features(False), self.features(portrait).repeat_interleave(t, dim=0))
        if self.temporal_difference is not None and t >= 2:
            self.temporal_difference.update(generated, driver)
            self.flicker.update(generated, driver)
        if self.colour is not None:
            self.colour.update(portrait, generated)
        for metric in self.lpips.values():
            metric.update(frames_generated, frames_driver)
        if self.csim is not None:
            self.csim.update(portrait, generated)
        for real, clip, sound in zip(driver, generated, audio or [None] * b):
            if sound is None:
                continue
            if self.sync is not None:
                self.sync.update(to_uint8(clip), *sound)
            if self.lip_motion is not None:
                self.lip_motion.update(to_uint8(real), to_uint8(clip), *sound)
        for metric in (self.fan_keypoints, self.openface):
            if metric is not None:
                for real, clip in zip(driver, generated):
                    metric.update(to_uint8(real), to_uint8(clip))
        if self.keypoint_detector is not None:
            kp_generated, kp_driver = self.keypoint_detector(frames_generated), self.keypoint_detector(frames_driver)
            self.akd.update(kp_generated, kp_driver)
            if t >= 3:
                pixels = kp_generated.to_pixels().value
                self.motion_smoothness.update(pixels.view(b, t, *pixels.shape[1:]))

    def compute(self) -> dict[str, torch.Tensor]:
        """Flat dict of metric values (only those that received data)."""
        values = {name: value for name, value in self.reconstruction.compute().items()}
        values["l1_copy_baseline"] = self.copy_baseline.compute()
        values["l1_ratio_to_copy"] = values["l1"] / values["l1_copy_baseline"].clamp_min(1e-12)
        values["residual_magnitude"] = self.residual.compute()
        backbone = self.features.metric_suffix if self.features is not None else None
        if self.frechet is not None and self.frechet.real_count >= 2:
            values[self.frechet.name] = self.frechet.compute()
        if self.kernel is not None and self.kernel.real_count >= 2:
            values[self.kernel.name] = self.kernel.compute()
        if self.clip_frechet is not None and self.clip_frechet.real_count >= 2:
            values[self.clip_frechet.name] = self.clip_frechet.compute()
        if self.identity is not None:
            values[f"aed_{backbone}"] = self.identity.compute()
        if self.temporal_difference is not None and self.temporal_difference.count > 0:
            values["temporal_difference"] = self.temporal_difference.compute()
            values["flicker"] = self.flicker.compute()
        if self.colour is not None:
            values.update({k: v for k, v in self.colour.compute().items() if torch.isfinite(v)})
        values.update({name: metric.compute() for name, metric in self.lpips.items()})
        if self.csim is not None and self.csim.count > 0:
            values["csim_arcface"] = self.csim.compute()
            values["csim_arcface_frames_missed"] = self.csim.missed.clone()
        if self.video_distance is not None and self.video_distance.real_count >= 2:
            values["fvd_i3d"] = self.video_distance.compute()
        if self.sync is not None and self.sync.clips > 0:
            values.update(self.sync.compute())
        if self.lip_motion is not None:
            values.update(self.lip_motion.compute())
        if self.fan_keypoints is not None and self.fan_keypoints.frames > 0:
            values["akd_fan"] = self.fan_keypoints.compute()
            values["akd_fan_frames_missed"] = self.fan_keypoints.missed_generated.clone()
        if self.openface is not None and self.openface.frames > 0:
            values["aed_openface"] = self.openface.compute()
        if self.akd is not None:
            values["akd"] = self.akd.compute()
            if self.motion_smoothness.count > 0:
                values["motion_smoothness"] = self.motion_smoothness.compute()
        return values

    def reset(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset") and callable(module.reset):
                module.reset()
