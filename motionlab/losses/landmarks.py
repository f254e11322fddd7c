"""Landmark guidance of keypoints (LivePortrait's stage-1 term): chosen keypoints pulled towards named dlib-68
landmarks of the driver frame, so that they follow the eyelids, eye corners, mouth corners and lips that
unsupervised keypoints, trained for minutes, barely see.

Convention: keypoints are (B, K, 2) (x, y) in [-1, 1], -1 and 1 at the first and last pixel centres (FOMM's and
LivePortrait's ``make_coordinate_grid``); landmarks are (B, 68, 2) pixels of ``size`` x ``size`` frames (the centre of the
top-left pixel at (0, 0)).
"""

from __future__ import annotations

import torch

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
