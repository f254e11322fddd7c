"""Domain adapters: small networks from normalised face-landmark motion to the motion of a descriptor model's
keypoints (and back), so another domain (a human video's landmarks) drives a keypoint generator.

Convention: inputs are landmarks in the reference frame's face frame (:func:`motionlab.geometry.landmarks.
normalize_landmarks`, inter-ocular units), given as ``window`` (B, W, P, 2) displacements from the reference frame
(frame centred in the window: the one being mapped), ``reference`` (B, P, 2), the reference frame itself (the
face's proportions), and ``keypoints`` (B, K, 2), the descriptor keypoints the motion will be applied to (the
portrait's at inference; how far a keypoint moves under a head turn depends on where it sits). Outputs are FOMM-style relative motion in the descriptor space (corner-aligned normalised
image units): ``value`` (B, K, 2) keypoint displacements since the reference frame and ``jacobian`` (B, K, 2, 2)
the ratio ``J_t J_ref^-1``; :func:`apply_motion` puts them on a portrait's keypoints.

With ``rigid_roll`` the head's roll is carried explicitly rather than learnt: each frame's roll relative to the
reference (the angle of its eye line, as :func:`motionlab.geometry.landmarks.face_frame` measures it) is taken out of
the landmarks (each frame rotated about its own eye midpoint) and joins the input as a number, and the predicted
keypoints are turned by the mapped frame's roll about a centre the adapter picks as a convex combination of them (the
centroid at initialisation). How a descriptor model answers a turned head is its own: the guided toy model's keypoint
constellation turns by 0.79 of the head's roll and its Jacobians by 0.41 (experiments/README.md), so the adapter adds
a learnt correction to the angle (zero at initialisation) and predicts the Jacobians itself, from the roll it is
given. Its landmarks carry no roll, so a pose the training domain never shows (a real head's yaw and pitch, which the
toy human lacks) cannot be read as roll from their shape.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from motionlab.geometry import Keypoints
from motionlab.geometry.checks import check_shape
from motionlab.geometry.landmarks import FRAME_ANCHORS
from motionlab.models.registry import register_model


def _mlp(inputs: int, hidden: int, depth: int, outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(inputs, hidden), nn.LayerNorm(hidden), nn.GELU()]
        inputs = hidden
    head = nn.Linear(inputs, outputs)
    nn.init.zeros_(head.weight)  # start at "no motion": zero displacement, identity Jacobian ratio
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers, head)


class LandmarkAdapter(nn.Module):
    """Landmark motion -> descriptor motion; ``window`` > 1 adds a temporal convolution over neighbouring frames.

    Args:
        num_landmarks: P (68 for dlib / iBUG-300W).
        num_kp: K of the descriptor model it maps into.
        window: W frames of context (odd); 1 maps each frame alone.
        hidden, depth: width and number of hidden layers of the MLP.
        jacobians: predict Jacobian ratios (else identity).
        rigid_roll: carry the head's roll explicitly (module docstring).
    """

    def __init__(self, num_landmarks: int = 68, num_kp: int = 10, window: int = 1, hidden: int = 256, depth: int = 3, jacobians: bool = True,
                 rigid_roll: bool = False):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"adapter window must be odd and >= 1 (the mapped frame sits in its centre), got {window}")
        if rigid_roll and num_landmarks not in FRAME_ANCHORS:
            raise ValueError(f"rigid_roll needs eye anchors; known for {sorted(FRAME_ANCHORS)} landmarks, not {num_landmarks}")
        self.num_landmarks, self.num_kp, self.window, self.jacobians, self.rigid_roll = num_landmarks, num_kp, window, jacobians, rigid_roll
        reference_features = 2 * num_landmarks
        features = reference_features + (1 if rigid_roll else 0)  # per frame: displacements (and the roll)
        self.temporal = None
        if window > 1:
            self.temporal = nn.Sequential(nn.Conv1d(features, hidden, 3, padding=1), nn.GELU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU())
            motion_features = window * hidden
        else:
            motion_features = features
        outputs = num_kp * (6 if jacobians else 2) + (num_kp + 1 if rigid_roll else 0)  # motion (and the turn's centre, angle)
        self.mlp = _mlp(motion_features + reference_features + 2 * num_kp, hidden, depth, outputs)

    def forward(self, window: torch.Tensor, reference: torch.Tensor, keypoints: torch.Tensor) -> dict[str, torch.Tensor]:
        check_shape(window, ["B", self.window, self.num_landmarks, 2], "adapter window")
        check_shape(reference, [window.shape[0], self.num_landmarks, 2], "adapter reference")
        check_shape(keypoints, [window.shape[0], self.num_kp, 2], "adapter keypoints")
        b = window.shape[0]
        if self.rigid_roll:
            upright, roll = self._unroll(window, reference)
            motion = torch.cat([upright.reshape(b, self.window, -1), roll.unsqueeze(-1)], dim=2)
        else:
            motion = window.reshape(b, self.window, -1)
        if self.temporal is not None:
            motion = self.temporal(motion.transpose(1, 2))
        out = self.mlp(torch.cat([motion.reshape(b, -1), reference.reshape(b, -1), keypoints.reshape(b, -1)], dim=1))
        value = out[:, : 2 * self.num_kp].view(b, self.num_kp, 2)
        eye = torch.eye(2, device=out.device, dtype=out.dtype).expand(b, self.num_kp, 2, 2)
        jacobian = eye + out[:, 2 * self.num_kp : 6 * self.num_kp].view(b, self.num_kp, 2, 2) if self.jacobians else eye
        if self.rigid_roll:
            turn = _rotation(roll[:, self.window // 2] + out[:, -1])[:, None]  # (B, 1, 2, 2): the mapped frame's roll, corrected
            moved = keypoints + value
            weights = torch.softmax(out[:, -self.num_kp - 1 : -1], dim=1).unsqueeze(-1)
            centre = (weights * moved).sum(dim=1, keepdim=True)
            value = ((moved - centre).unsqueeze(-2) @ turn.transpose(-1, -2)).squeeze(-2) + centre - keypoints
        return {"value": value, "jacobian": jacobian}

    def _unroll(self, window: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Window displacements with each frame's roll taken out (about its eye midpoint), and that roll (B, W)."""
        faces = reference.unsqueeze(1) + window
        left_ids, right_ids = FRAME_ANCHORS[self.num_landmarks]
        left, right = faces[:, :, left_ids].mean(dim=2), faces[:, :, right_ids].mean(dim=2)
        axis, middle = right - left, ((left + right) / 2).unsqueeze(2)
        roll = torch.atan2(axis[..., 1], axis[..., 0])  # relative to the reference, whose eye line is horizontal
        upright = ((faces - middle).unsqueeze(-2) @ _rotation(-roll).unsqueeze(2).transpose(-1, -2)).squeeze(-2) + middle
        return upright - reference.unsqueeze(1), roll


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    """(..., 2, 2) matrices turning +x towards +y by ``angle`` (radians; clockwise on screen, y pointing down)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


class DescriptorToLandmarks(nn.Module):
    """The inverse adapter for cycle losses: keypoint displacements (B, K, 2) and the human reference face (B, P, 2)
    -> landmark displacements (B, P, 2) of the mapped frame."""

    def __init__(self, num_landmarks: int = 68, num_kp: int = 10, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.num_landmarks, self.num_kp = num_landmarks, num_kp
        self.mlp = _mlp(2 * num_kp + 2 * num_landmarks, hidden, depth, 2 * num_landmarks)

    def forward(self, value: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        check_shape(value, ["B", self.num_kp, 2], "inverse adapter keypoint displacements")
        b = value.shape[0]
        return self.mlp(torch.cat([value.reshape(b, -1), reference.reshape(b, -1)], dim=1)).view(b, self.num_landmarks, 2)


def apply_motion(kp_reference: Keypoints, motion: dict[str, torch.Tensor]) -> Keypoints:
    """Keypoints moved by an adapter's relative motion: ``value = ref + delta``, ``jacobian = ratio @ J_ref``
    (FOMM's relative transfer, :func:`motionlab.geometry.relative_motion`, with the driver's side predicted)."""
    kp_reference = kp_reference.to_normalized()
    jacobian = None if kp_reference.jacobian is None else motion["jacobian"] @ kp_reference.jacobian
    return replace(kp_reference, value=kp_reference.value + motion["value"], jacobian=jacobian)


_ADAPTER_INFO = dict(family="landmark_adapter", output_names=("value", "jacobian"))


@register_model(**_ADAPTER_INFO)
def landmark_adapter_mlp(num_landmarks: int = 68, num_kp: int = 10, hidden: int = 256, depth: int = 3, jacobians: bool = True,
                         rigid_roll: bool = False) -> LandmarkAdapter:
    """Per-frame MLP adapter."""
    return LandmarkAdapter(num_landmarks, num_kp, 1, hidden, depth, jacobians, rigid_roll)


@register_model(**_ADAPTER_INFO)
def landmark_adapter_temporal(num_landmarks: int = 68, num_kp: int = 10, window: int = 5, hidden: int = 256, depth: int = 3,
                              jacobians: bool = True, rigid_roll: bool = False) -> LandmarkAdapter:
    """Temporal adapter: a two-layer temporal convolution over ``window`` frames before the MLP."""
    return LandmarkAdapter(num_landmarks, num_kp, window, hidden, depth, jacobians, rigid_roll)


@register_model(family="landmark_decoder", output_names=("landmarks",))
def descriptor_to_landmarks_mlp(num_landmarks: int = 68, num_kp: int = 10, hidden: int = 256, depth: int = 3) -> DescriptorToLandmarks:
    """The inverse adapter (descriptor motion -> landmark motion) of the cycle losses."""
    return DescriptorToLandmarks(num_landmarks, num_kp, hidden, depth)
