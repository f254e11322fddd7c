"""The field's metric networks, from the user's own weight files, and whether a number computed with them can be set
beside a paper's.

Every library that wraps these networks downloads their weights at run time; motionlab never does. Researchers hold
the files already (they come with the papers' evaluation code): each metric here names the standard file, where it
is published, and what pins it. A result is ``comparable_to_papers`` only when the file is the standard one (its
SHA-256 matches what pins it) *and* the evaluation ran under a paper's protocol (``conf/protocol/``, as
``motionlab-eval protocol=<name>`` records it); otherwise it says why not. The file's SHA-256 is always recorded with the result.

What pins a file: torchvision's and pytorch-fid's published names carry the first 8 hex digits of the file's SHA-256
(``alexnet-owt-7be5be79.pth``), which their loaders check; that prefix is what is checked here. For files published
without a hash (InsightFace's ``w600k_r50.onnx``, SyncNet's ``syncnet_v2.model``, StyleGAN-V's ``i3d_torchscript.pt``,
OpenFacePytorch's ``openface.pth``; face-alignment's names carry digits its loader does not check by default)
motionlab pins nothing it could not verify offline: give the SHA-256 you checked against the paper's code as
``standard_sha256`` and the result says the pin is yours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from motionlab.utils.errors import InputError
from motionlab.utils.io import file_digest


@dataclass(frozen=True)
class StandardWeights:
    """The standard weights file of a metric: ``file`` (its published name), ``sha256_prefix`` (what its published
    name pins, or None), ``published`` (where it is), ``used_by`` (whose numbers are computed with it)."""

    file: str
    sha256_prefix: str | None
    published: str
    used_by: str


STANDARD_WEIGHTS = {
    "fid_inception": StandardWeights(
        "pt_inception-2015-12-05-6726825d.pth", "6726825d",
        "github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "FID / KID of pytorch-fid, torch-fidelity, torchmetrics (the TF Inception of the FID paper, ported)"),
    "lpips_alex": StandardWeights(
        "alexnet-owt-7be5be79.pth", "7be5be79", "download.pytorch.org/models/alexnet-owt-7be5be79.pth (torchvision IMAGENET1K_V1)",
        "LPIPS v0.1, AlexNet (lpips / torchmetrics; its linear heads ship inside torchmetrics)"),
    "lpips_vgg": StandardWeights(
        "vgg16-397923af.pth", "397923af", "download.pytorch.org/models/vgg16-397923af.pth (torchvision IMAGENET1K_V1)",
        "LPIPS v0.1, VGG-16 (lpips / torchmetrics; its linear heads ship inside torchmetrics)"),
    "csim_arcface": StandardWeights(
        "w600k_r50.onnx", None, "InsightFace model zoo, buffalo_l.zip (models/buffalo_l/w600k_r50.onnx)",
        "CSIM of LivePortrait, X-Portrait, AniPortrait-style tables (ArcFace R50 on WebFace600K)"),
    "lse_syncnet": StandardWeights(
        "syncnet_v2.model", None, "www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model (joonson/syncnet_python)",
        "LSE-C / LSE-D of Wav2Lip's evaluation and the lip-sync papers after it"),
    "sfd_face": StandardWeights(
        "sfd_face.pth", None, "www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth (joonson/syncnet_python download_model.sh)",
        "the face tracks of syncnet_python's run_pipeline.py, hence LSE of videos that are not face-centred (Wav2Lip's "
        "calculate_scores_real_videos.sh)"),
    "akd_fan": StandardWeights(
        "2DFAN4-11f355bf06.pth.tar", None, "www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar (face-alignment's 2D-FAN)",
        "AKD of FOMM's protocol (AliaksandrSiarohin/pose-evaluation) and the reenactment papers that reuse it"),
    "s3fd": StandardWeights(
        "s3fd-619a316812.pth", None, "www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth (face-alignment's S3FD; "
        "Wav2Lip ships it as s3fd.pth)", "the face boxes of face-alignment, hence of AKD's landmarks"),
    "aed_openface": StandardWeights(
        "openface.pth", None, "github.com/thnkim/OpenFacePytorch (openface.pth: OpenFace nn4.small2.v1, ported)",
        "AED of FOMM's protocol (AliaksandrSiarohin/pose-evaluation, --type face_id)"),
    "fvd_i3d": StandardWeights(
        "i3d_torchscript.pt", None, "StyleGAN-V's FVD detector (universome/stylegan-v, src/metrics/frechet_video_distance.py: its Dropbox link)",
        "FVD of StyleGAN-V and the video-generation / talking-head papers that reuse its code"),
}


def weights_record(metric: str, path: str | os.PathLike, standard_sha256: str | None = None) -> dict:
    """What a result records of the weights file ``path`` of ``metric``: the file, its SHA-256, whether it is the
    standard file (``standard``) and why (``reason``). ``standard_sha256``: a hash the user pinned for files published
    without one."""
    if metric not in STANDARD_WEIGHTS:
        raise KeyError(f"no standard weights are known for metric {metric!r}; known: {', '.join(STANDARD_WEIGHTS)}")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{metric}: weights file {path} does not exist (it is the standard {STANDARD_WEIGHTS[metric].file}; "
                         f"published at {STANDARD_WEIGHTS[metric].published}; nothing is downloaded)")
    standard = STANDARD_WEIGHTS[metric]
    digest = file_digest(path)
    if standard_sha256 is not None:
        matches = digest == standard_sha256.lower()
        reason = (f"SHA-256 equals the hash you pinned for {standard.file}" if matches
                  else f"SHA-256 {digest[:12]}... differs from the hash you pinned ({standard_sha256[:12]}...)")
    elif standard.sha256_prefix is not None:
        matches = digest.startswith(standard.sha256_prefix)
        reason = (f"SHA-256 starts with {standard.sha256_prefix}, as the published {standard.file} pins" if matches
                  else f"SHA-256 {digest[:12]}... is not the published {standard.file}'s ({standard.sha256_prefix}...)")
    else:
        matches = False
        reason = (f"{standard.file} is published without a hash and none was pinned: give standard_sha256 once you have "
                  "checked the file against the paper's code")
    return {"file": str(path), "sha256": digest, "standard": matches, "reason": reason}


def comparability(weights: dict | None, protocol: dict | None) -> dict:
    """``{"comparable_to_papers": bool, "reason": str}`` for a metric computed with ``weights`` (:func:`weights_record`,
    None for metrics without a standard network) under ``protocol`` (its ``name`` and ``paper``, None when the run
    followed none)."""
    reasons = []
    if weights is None:
        reasons.append("not a paper's metric (motionlab's own, or an offline stand-in for a paper's network)")
    elif not weights["standard"]:
        reasons.append(weights["reason"])
    if protocol is None or not protocol.get("paper"):
        reasons.append("no paper's protocol (give protocol=<name>: conf/protocol/)")
    if reasons:
        return {"comparable_to_papers": False, "reason": "; ".join(reasons)}
    return {"comparable_to_papers": True, "reason": f"{weights['reason']}; protocol {protocol['name']} ({protocol['paper']})"}
