"""Landmark guidance of keypoints (LivePortrait's stage-1 term): chosen keypoints pulled towards named dlib-68
landmarks of the driver frame, so that they follow the eyelids, eye corners, mouth corners and lips that
unsupervised keypoints, trained for minutes, barely see; and the eye and mouth crops (:func:`part_views`) that
part losses and LivePortrait's part critics judge.

Convention: keypoints are (B, K, 2) (x, y) in [-1, 1], -1 and 1 at the first and last pixel centres (FOMM's and
LivePortrait's ``make_coordinate_grid``); landmarks are (B, 68, 2) pixels of ``size`` x ``size`` frames (the centre of the
top-left pixel at (0, 0)).
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align

# dlib-68 indices paired, in order, with the first keypoints (eye corners and upper lids, mouth corners and lips),
# from LivePortrait's community recipe
GUIDANCE_LANDMARKS = (36, 39, 37, 42, 45, 43, 48, 54, 51, 57)


def normalized_landmarks(landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """The guided landmarks (:data:`GUIDANCE_LANDMARKS`) of (B, 68, 2) pixel landmarks in the keypoints' space."""
    return landmarks[:, list(GUIDANCE_LANDMARKS)] * (2.0 / (size - 1)) - 1.0


def landmark_guidance(keypoints: torch.Tensor, landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """Mean L1 between the first keypoints of (B, K, >=2) ``keypoints`` and their guidance landmarks of (B, 68, 2)
    pixel ``landmarks``; models with fewer than 10 keypoints guide all of theirs, to the first guidance landmarks."""
    guided = keypoints[:, : len(GUIDANCE_LANDMARKS), :2]
    return (guided - normalized_landmarks(landmarks, size)[:, : guided.shape[1]]).abs().mean()


def guided_keypoint_motion(landmark_motion: torch.Tensor, reference_keypoints: torch.Tensor) -> torch.Tensor:
    """The motion landmark guidance implies for the guided keypoints of another face: (B, 68, 2) landmark
    displacements in a face frame (:func:`motionlab.geometry.landmarks.normalize_landmarks`: inter-ocular units, eye
    line along +x) -> (B, N, 2) displacements of the first N = min(K, 10) of (B, K, 2) ``reference_keypoints`` (a
    landmark-guided descriptor model's, normalised units), carried into their face frame: scaled by the distance
    between their eye centres (the means of keypoints 0-1 and 3-4) and rotated to their eye line.

    A prior that needs no pairs: the guided keypoints and the landmarks name the same points of a face. It ignores
    differences of proportion and expression gain between the two faces."""
    n = min(reference_keypoints.shape[1], len(GUIDANCE_LANDMARKS))
    if n < 5:
        raise ValueError(f"the eye line of guided keypoints needs keypoints 0-4, got {reference_keypoints.shape[1]} keypoints")
    axis = reference_keypoints[:, 3:5].mean(dim=1) - reference_keypoints[:, 0:2].mean(dim=1)  # inter-ocular vector
    motion = landmark_motion[:, list(GUIDANCE_LANDMARKS[:n])]
    ax, ay = axis[:, None, 0], axis[:, None, 1]
    return torch.stack([ax * motion[..., 0] - ay * motion[..., 1], ay * motion[..., 0] + ax * motion[..., 1]], dim=-1)


# dlib-68 points of the face parts that part losses and critics look at
PART_LANDMARKS = {"eyes": slice(36, 48), "mouth": slice(48, 68)}


def part_views(images: torch.Tensor, landmarks: torch.Tensor | None, crop_fraction: float, margin: float = 1.5) -> dict[str, torch.Tensor]:
    """What part losses and critics see of (B, 3, S, S) images: ``face`` (the image) and, with (B, 68, 2) pixel landmarks, the
    ``eyes`` and ``mouth`` crops: squares ``margin`` times the part's larger extent around its landmarks' box,
    resampled (bilinear, pixel centres aligned) to ``crop_fraction`` of S. Differentiable in the images."""
    views = {"face": images}
    if landmarks is None:
        return views
    size = max(8, round(crop_fraction * images.shape[-1]))
    index = torch.arange(images.shape[0], device=images.device, dtype=images.dtype)[:, None]
    for part, points in PART_LANDMARKS.items():
        low, high = landmarks[:, points].amin(dim=1), landmarks[:, points].amax(dim=1)
        centre, half = (low + high) / 2.0, ((high - low).amax(dim=1, keepdim=True) * margin / 2.0).clamp_min(4.0)
        boxes = torch.cat([index, centre - half, centre + half], dim=1).to(images.dtype)
        views[part] = roi_align(images, boxes, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return views
