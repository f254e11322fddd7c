"""The toy world's second domain: human-style faces seen through a landmark detector, paired with the cartoon
characters by construction (the same per-frame motion parameters drive both).

A human identity has its own proportions (a longer nose, smaller and narrower eyes, a lower mouth, a jaw that
drops as the mouth opens, a different expression gain), sits at its own place, size and camera roll in a
``frame_size`` x ``frame_size`` picture, and is observed as 68 points in the dlib / iBUG-300W order with
detector-like noise: per-point jitter, per-frame shake and occasional frames without a face. Optionally the head
also turns out of the image plane (:class:`HeadTurn`: yaw and pitch, which the cartoon never shows), so that an
adapter learns to ignore what real drivers do and the cartoon cannot. A simple human-style render of the landmarks
serves previews.

Coordinates are the cartoon's (see :mod:`motionlab.data.synthetic`): a face-local point p lands on the canvas at
``scale * BASE_SCALE * R(rotation) p + (tx, ty)``, then at the identity's framing in the picture.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from motionlab.data.synthetic import BASE_SCALE, MOTION_FIELDS, RENDERERS, Renderer, neutral_motion
from motionlab.geometry.landmarks import IBUG68


@dataclass(frozen=True)
class HumanStyle:
    """Proportions (face-local units), expression gains and framing of one human identity."""

    face_width: float
    face_height: float
    eye_spacing: float
    eye_half_width: float
    eye_open: float
    eye_height: float
    brow_gap: float
    nose_tip: float
    mouth_height: float
    mouth_half_width: float
    mouth_gain: float
    brow_gain: float
    jaw_drop: float
    skin: tuple[float, float, float]
    centre: tuple[float, float]
    zoom: float
    camera_roll: float


@dataclass(frozen=True)
class DetectorNoise:
    """Landmark-detector noise in inter-ocular distances: per-point ``jitter``, per-frame ``shake`` of the whole
    face, and the probability ``lost`` that a frame has no detection."""

    jitter: float = 0.012
    shake: float = 0.006
    lost: float = 0.03


@dataclass(frozen=True)
class HeadTurn:
    """Largest out-of-plane head turns, in radians: each identity turns by a slow sinusoid in ``yaw`` (about the
    vertical axis) and one in ``pitch`` (about the horizontal one), with its own amplitude up to these, period
    (``period`` frames, a range) and phase. The landmarks have depth (:func:`_local_depth`) and are seen
    orthographically. The cartoon does not turn: for an adapter the turns are nuisance."""

    yaw: float = 0.0
    pitch: float = 0.0
    period: tuple[float, float] = (15.0, 60.0)


def sample_human_style(rng: np.random.Generator) -> HumanStyle:
    face_width = float(rng.uniform(0.36, 0.44))
    eye_spacing = face_width * float(rng.uniform(0.40, 0.48))
    eye_half_width = eye_spacing * float(rng.uniform(0.38, 0.46))
    eye_height = float(rng.uniform(-0.06, 0.0))
    nose_tip = eye_height + float(rng.uniform(0.22, 0.28))
    return HumanStyle(
        face_width=face_width,
        face_height=float(rng.uniform(0.52, 0.62)),
        eye_spacing=eye_spacing,
        eye_half_width=eye_half_width,
        eye_open=eye_half_width * float(rng.uniform(0.55, 0.75)),
        eye_height=eye_height,
        brow_gap=float(rng.uniform(0.07, 0.11)),
        nose_tip=nose_tip,
        mouth_height=nose_tip + float(rng.uniform(0.11, 0.15)),
        mouth_half_width=eye_spacing * float(rng.uniform(0.75, 0.95)),
        mouth_gain=float(rng.uniform(0.06, 0.10)),
        brow_gain=float(rng.uniform(0.03, 0.05)),
        jaw_drop=float(rng.uniform(0.3, 0.6)),
        skin=tuple(float(v) for v in np.clip(rng.uniform(0.35, 0.95) * np.array([1.0, 0.8, 0.66]) + rng.normal(0, 0.03, 3), 0.1, 1.0)),
        centre=(float(rng.uniform(-0.15, 0.15)), float(rng.uniform(-0.1, 0.1))),
        zoom=float(rng.uniform(0.75, 1.1)),
        camera_roll=float(rng.uniform(-0.15, 0.15)),
    )


def human_style_for(identity: str, seed: int = 0) -> HumanStyle:
    """The human identity paired with a toy clip: a pure function of the clip's identity name and ``seed``."""
    return sample_human_style(np.random.default_rng(_seed_of(identity, seed, "style")))


def _seed_of(identity: str, seed: int, purpose: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{identity}/{seed}/{purpose}".encode()).digest()[:8], "little")


def head_turn_track(identity: str, frames: int, turn: HeadTurn, seed: int = 0) -> np.ndarray:
    """(T, 2) yaw and pitch, radians, of the human paired with toy clip ``identity`` (deterministic in its arguments)."""
    rng = np.random.default_rng(_seed_of(identity, seed, "turn"))
    amplitude = rng.uniform(0.0, 1.0, 2) * np.array([turn.yaw, turn.pitch])
    period, phase = rng.uniform(*turn.period, 2), rng.uniform(0.0, 2 * np.pi, 2)
    t = np.arange(frames)[:, None]
    return amplitude * np.sin(2 * np.pi * t / period + phase)


def _local_depth(style: HumanStyle, local: np.ndarray) -> np.ndarray:
    """(68,) depth of a frame's face-local points towards the camera, zero in the plane of the eye corners: a coarse
    human head (nose tip ~0.2 face widths out, jaw angles ~0.45 back, the eyes set in), enough for yaw and pitch to
    foreshorten the face as they do."""
    width = style.face_width
    x = local[:, 0]
    depth = -0.3 * x**2 / width  # the face curves back away from its centre line
    jaw_angles = np.linspace(np.pi, 0.0, 17)
    depth[IBUG68["jaw"]] = width * (0.05 - 0.5 * np.abs(np.cos(jaw_angles)) ** 1.5)
    depth[IBUG68["left_brow"]] += 0.05 * width
    depth[IBUG68["right_brow"]] += 0.05 * width
    depth[IBUG68["nose_bridge"]] = np.linspace(0.03, 0.2, 4) * width
    depth[IBUG68["nostrils"]] += 0.13 * width
    depth[IBUG68["outer_lips"]] += 0.1 * width
    depth[IBUG68["inner_lips"]] += 0.08 * width
    return depth


def _turned(local: np.ndarray, depth: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Face-local (68, 2) points turned by ``yaw`` then ``pitch`` about the eye plane and seen orthographically."""
    x, y, z = local[:, 0], local[:, 1], depth
    x, z = x * np.cos(yaw) + z * np.sin(yaw), -x * np.sin(yaw) + z * np.cos(yaw)
    y = y * np.cos(pitch) - z * np.sin(pitch)
    return np.stack([x, y], axis=1)


def _local_landmarks(style: HumanStyle, mouth: float, blink: float, brow: float) -> np.ndarray:
    """(68, 2) face-local points in the iBUG order for one frame's expression values."""
    opening = style.mouth_gain * mouth
    centre_y = 0.05
    jaw_angles = np.linspace(np.pi, 0.0, 17)
    # the lower face stretches as the jaw drops with the mouth
    lower = style.face_height + style.jaw_drop * opening
    jaw = np.stack([style.face_width * np.cos(jaw_angles), centre_y + lower * np.sin(jaw_angles)], axis=1)
    jaw[:, 1] = np.maximum(jaw[:, 1], style.eye_height)
    ex, ey, hw = style.eye_spacing, style.eye_height, style.eye_half_width
    brow_y = ey - style.brow_gap - style.brow_gain * brow
    brows = [(side * ex + dx * 1.3 * hw, brow_y - 0.025 * (1 - dx * dx)) for side in (-1.0, 1.0) for dx in np.linspace(-1, 1, 5)]
    nose = [(0.0, y) for y in np.linspace(ey, style.nose_tip, 4)]
    nose += [(dx, style.nose_tip + 0.02 - 0.01 * (1 - abs(dx) / 0.06)) for dx in np.linspace(-0.06, 0.06, 5)]
    lid = 0.004 + style.eye_open * max(1.0 - blink, 0.0)
    eye_angles = np.array([np.pi, 2 * np.pi / 3, np.pi / 3, 0.0, -np.pi / 3, -2 * np.pi / 3])
    eyes = [(side * ex + hw * np.cos(a), ey - (lid if np.sin(a) > 0 else 0.6 * lid) * np.sin(a)) for side in (-1.0, 1.0) for a in eye_angles]
    my, mw = style.mouth_height + 0.5 * opening, style.mouth_half_width
    lip = 0.025
    outer_angles = np.pi - np.arange(12) * 2 * np.pi / 12
    outer = [(mw * np.cos(a), my - (lip + opening / 2) * np.sin(a)) for a in outer_angles]
    inner_angles = np.pi - np.arange(8) * 2 * np.pi / 8
    inner = [(0.85 * mw * np.cos(a), my - (opening / 2) * np.sin(a)) for a in inner_angles]
    return np.concatenate([jaw, np.array(brows), np.array(nose), np.array(eyes), np.array(outer), np.array(inner)])


def human_landmarks(style: HumanStyle, motion: dict[str, np.ndarray], frame_size: int = 256, turn: np.ndarray | None = None) -> np.ndarray:
    """(T, 68, 2) float32 noise-free pixel landmarks of ``style`` performing ``motion`` (``MOTION_FIELDS`` arrays),
    the head turned out of the image plane by ``turn`` ((T, 2) yaw and pitch, :func:`head_turn_track`) if given."""
    missing = set(MOTION_FIELDS) - set(motion)
    if missing:
        raise ValueError(f"motion lacks fields {sorted(missing)}")
    frames = len(motion["tx"])
    out = np.empty((frames, 68, 2), np.float32)
    c, s = np.cos(style.camera_roll), np.sin(style.camera_roll)
    camera = np.array([[c, -s], [s, c]])
    for t in range(frames):
        local = _local_landmarks(style, float(motion["mouth"][t]), float(motion["blink"][t]), float(motion["brow"][t]))
        if turn is not None:
            local = _turned(local, _local_depth(style, local), float(turn[t, 0]), float(turn[t, 1]))
        angle = float(motion["rotation"][t])
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        canvas = float(motion["scale"][t]) * BASE_SCALE * local @ rotation.T + np.array([motion["tx"][t], motion["ty"][t]])
        canvas = style.zoom * canvas @ camera.T + np.array(style.centre)
        out[t] = (canvas + 1.0) * frame_size / 2.0 - 0.5
    return out


def detector_view(points: np.ndarray, noise: DetectorNoise, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """What a landmark detector reports for (T, 68, 2) true points: noisy points and a (T,) ``found`` mask
    (frames without a face are NaN; at least one frame is always found)."""
    iod = np.linalg.norm(points[:, IBUG68["right_eye"]].mean(1) - points[:, IBUG68["left_eye"]].mean(1), axis=-1)[:, None, None]
    noisy = points + iod * (noise.jitter * rng.standard_normal(points.shape) + noise.shake * rng.standard_normal((len(points), 1, 2)))
    found = rng.random(len(points)) >= noise.lost
    found[rng.integers(len(points))] = True
    noisy[~found] = np.nan
    return noisy.astype(np.float32), found


def render_human(points: np.ndarray, style: HumanStyle, frame_size: int) -> np.ndarray:
    """A simple human-style (H, W, 3) uint8 picture of one frame's (68, 2) landmarks, for previews."""
    image = Image.new("RGB", (frame_size, frame_size), (200, 206, 214))
    draw = ImageDraw.Draw(image)
    skin = tuple(int(255 * v) for v in style.skin)
    shade = tuple(int(0.7 * v) for v in skin)
    jaw = points[IBUG68["jaw"]]
    top = jaw[[-1, 0]].mean(0)
    width = np.linalg.norm(jaw[-1] - jaw[0])
    axis_up = np.array([(jaw[-1] - jaw[0])[1], -(jaw[-1] - jaw[0])[0]]) / max(width, 1e-6)
    forehead = [tuple(top + 0.5 * width * (np.cos(a) * (jaw[-1] - jaw[0]) / max(width, 1e-6) + 0.9 * np.sin(a) * axis_up))
                for a in np.linspace(0.0, np.pi, 12)]
    draw.polygon([tuple(p) for p in jaw] + forehead, fill=skin, outline=shade)
    for part in ("left_brow", "right_brow"):
        draw.line([tuple(p) for p in points[IBUG68[part]]], fill=(70, 45, 30), width=max(1, frame_size // 100))
    for part in ("left_eye", "right_eye"):
        eye = points[IBUG68[part]]
        draw.polygon([tuple(p) for p in eye], fill=(245, 245, 245), outline=(40, 30, 30))
        radius = 0.3 * np.linalg.norm(eye[3] - eye[0]) * min(1.0, np.linalg.norm(eye[1] - eye[5]) / max(np.linalg.norm(eye[3] - eye[0]) * 0.3, 1e-6))
        cx, cy = eye.mean(0)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=(60, 40, 25))
    draw.line([tuple(p) for p in points[IBUG68["nose_bridge"]]] + [tuple(p) for p in points[IBUG68["nostrils"]]], fill=shade, width=1)
    draw.polygon([tuple(p) for p in points[IBUG68["outer_lips"]]], fill=(170, 70, 70))
    draw.polygon([tuple(p) for p in points[IBUG68["inner_lips"]]], fill=(60, 15, 20))
    return np.asarray(image)


def paired_human_clip(identity: str, motion: dict[str, np.ndarray], seed: int = 0, frame_size: int = 256,
                      noise: DetectorNoise | None = DetectorNoise(), turn: HeadTurn | None = None) -> tuple[np.ndarray, np.ndarray, HumanStyle]:
    """The human performance paired with toy clip ``identity``: detector-view landmarks (T, 68, 2) (NaN where no
    face was found), the (T,) found mask and the human identity; deterministic in (identity, seed). With ``turn``
    the head also turns out of the image plane."""
    style = human_style_for(identity, seed)
    track = head_turn_track(identity, len(motion["tx"]), turn, seed) if turn is not None else None
    points = human_landmarks(style, motion, frame_size, track)
    if noise is None:
        return points, np.ones(len(points), bool), style
    noisy, found = detector_view(points, noise, np.random.default_rng(_seed_of(identity, seed, "noise")))
    return noisy, found, style


def write_human_identity(root: Path, name: str, style: HumanStyle, motion: dict[str, np.ndarray], size: int) -> None:
    """Write one human-style identity in the seed layout under ``root``: its neutral portrait, the rendered frames of
    ``motion`` and their noise-free 68 landmarks (``landmarks.npy``; no descriptor keypoints: a different face)."""
    Image.fromarray(render_human(human_landmarks(style, neutral_motion(), size)[0], style, size)).save(root / f"{name}.png")
    clip_dir = root / f"{name}_video"
    clip_dir.mkdir(parents=True, exist_ok=True)
    points = human_landmarks(style, motion, size)
    for t, frame_points in enumerate(points):
        Image.fromarray(render_human(frame_points, style, size)).save(clip_dir / f"{t:04d}.png")
    np.save(clip_dir / "landmarks.npy", points)


RENDERERS["human"] = Renderer(sample_human_style, write_human_identity)
