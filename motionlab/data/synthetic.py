"""The toy world: procedural Live2D-like characters, the embedded default data of motionlab.

Every character is a stack of anti-aliased shapes (back hair, face, fringe, eyes with irises, brows,
nose, mouth) drawn from signed distances, so frames are smooth at any size and bit-identical for a
given seed. Identities differ in colours and proportions; clips move the head (translation, in-plane
rotation, scale) smoothly and animate blinks, brows and the mouth.

On disk it writes the seed layout::

    <root>/<name>.png                     the portrait: the character in its neutral pose
    <root>/<name>_video/0000.png ...      the driver clip
    <root>/<name>_video/keypoints.npy     (T, K, 2) float32 named facial points, pixels (x, y)
    <root>/<name>_video/motion.npz        per-frame motion parameters, keypoint names,
                                          and the portrait's keypoints
    <root>/toy_world.json                 the generation settings (a cache manifest)

Coordinates: the canvas spans [-1, 1] in x (right) and y (down); a pixel centre (i, j) of an S x S
image lies at x = (2 j + 1) / S - 1. A character's local point p maps to the canvas as
``scale * BASE_SCALE * R(rotation) p + (tx, ty)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from motionlab.utils.errors import InputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
BASE_SCALE = 0.9
KEYPOINT_NAMES = (
    "left_eye",
    "right_eye",
    "left_brow",
    "right_brow",
    "nose_tip",
    "mouth_left",
    "mouth_right",
    "mouth_top",
    "mouth_bottom",
    "chin",
    "left_jaw",
    "right_jaw",
    "forehead",
)
MOTION_FIELDS = ("tx", "ty", "rotation", "scale", "blink", "mouth", "brow")


@dataclass(frozen=True)
class CharacterStyle:
    """Colours (RGB in [0, 1]) and proportions (local units) of one identity."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    background_top: tuple[float, float, float]
    background_bottom: tuple[float, float, float]
    face_width: float
    face_height: float
    hair_width: float
    hair_height: float
    fringe_depth: float
    eye_spacing: float
    eye_height: float
    eye_radius: float
    mouth_width: float


@dataclass(frozen=True)
class MotionRange:
    """Amplitudes of the random head motion (canvas units, radians, relative scale)."""

    translation: float = 0.14
    rotation: float = 0.30
    scale: float = 0.12
    blink_rate_hz: float = 0.35
    fps: float = 25.0


def sample_style(rng: np.random.Generator) -> CharacterStyle:
    """Draw an identity: hue-varied skin and hair, proportions within a plausible range."""

    def colour(low: float, high: float) -> tuple[float, float, float]:
        return tuple(float(v) for v in rng.uniform(low, high, size=3))

    skin_base = rng.uniform(0.45, 0.98)
    skin = tuple(float(np.clip(skin_base * f + rng.normal(0, 0.05), 0.1, 1.0)) for f in (1.0, 0.82, 0.68))
    return CharacterStyle(
        skin=skin,
        hair=colour(0.02, 0.9),
        iris=colour(0.05, 0.7),
        lips=(float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.1, 0.35)), float(rng.uniform(0.15, 0.4))),
        background_top=colour(0.15, 0.95),
        background_bottom=colour(0.15, 0.95),
        face_width=float(rng.uniform(0.40, 0.52)),
        face_height=float(rng.uniform(0.50, 0.62)),
        hair_width=float(rng.uniform(1.05, 1.35)),
        hair_height=float(rng.uniform(1.0, 1.3)),
        fringe_depth=float(rng.uniform(0.12, 0.26)),
        eye_spacing=float(rng.uniform(0.15, 0.22)),
        eye_height=float(rng.uniform(-0.06, 0.04)),
        eye_radius=float(rng.uniform(0.07, 0.11)),
        mouth_width=float(rng.uniform(0.10, 0.18)),
    )


def neutral_motion(frames: int = 1) -> dict[str, np.ndarray]:
    """The portrait's pose: centred, upright, unit scale, eyes open, mouth closed."""
    motion = {name: np.zeros(frames, np.float32) for name in MOTION_FIELDS}
    motion["scale"] = np.ones(frames, np.float32)
    return motion


def _smooth_signal(rng: np.random.Generator, frames: int, fps: float, low_hz: float, high_hz: float) -> np.ndarray:
    """A sum of three sinusoids with random frequencies and phases, scaled to [-1, 1]."""
    t = np.arange(frames) / fps
    signal = np.zeros(frames)
    for _ in range(3):
        freq = rng.uniform(low_hz, high_hz)
        signal += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return signal / 2.25


def sample_motion(rng: np.random.Generator, frames: int, motion_range: MotionRange = MotionRange()) -> dict[str, np.ndarray]:
    """Smooth random head motion and facial actions for a clip of ``frames`` frames.

    Returns a dict of (T,) float32 arrays keyed by ``MOTION_FIELDS``; blink, mouth in [0, 1], brow in [-1, 1].
    """
    fps = motion_range.fps
    motion = {
        "tx": motion_range.translation * _smooth_signal(rng, frames, fps, 0.1, 0.6),
        "ty": motion_range.translation * _smooth_signal(rng, frames, fps, 0.1, 0.6),
        "rotation": motion_range.rotation * _smooth_signal(rng, frames, fps, 0.1, 0.5),
        "scale": 1.0 + motion_range.scale * _smooth_signal(rng, frames, fps, 0.05, 0.3),
        "mouth": np.clip(_smooth_signal(rng, frames, fps, 0.5, 2.0) * 1.2 + 0.1, 0.0, 1.0),
        "brow": _smooth_signal(rng, frames, fps, 0.2, 0.8),
    }
    blink = np.zeros(frames)
    t = rng.exponential(fps / motion_range.blink_rate_hz) * 0.5
    profile = np.array([0.35, 0.8, 1.0, 0.8, 0.35])
    while t < frames:
        start = int(t)
        span = blink[start : start + len(profile)]
        span[:] = np.maximum(span, profile[: len(span)])
        t += max(len(profile) + 2, rng.exponential(fps / motion_range.blink_rate_hz))
    motion["blink"] = blink
    return {name: np.asarray(motion[name], np.float32) for name in MOTION_FIELDS}


def _local_keypoints(style: CharacterStyle, mouth: float, brow: float) -> np.ndarray:
    """(K, 2) named facial points in the character's local frame."""
    ex, ey = style.eye_spacing, style.eye_height
    brow_y = ey - style.eye_radius - 0.07 - 0.05 * brow
    mouth_y = 0.30
    mouth_half_height = 0.015 + 0.09 * mouth
    return np.array(
        [
            (-ex, ey),
            (ex, ey),
            (-ex, brow_y),
            (ex, brow_y),
            (0.0, 0.14),
            (-style.mouth_width, mouth_y),
            (style.mouth_width, mouth_y),
            (0.0, mouth_y - mouth_half_height),
            (0.0, mouth_y + mouth_half_height),
            (0.0, 0.05 + style.face_height),
            (-style.face_width * 0.85, 0.05 + style.face_height * 0.5),
            (style.face_width * 0.85, 0.05 + style.face_height * 0.5),
            (0.0, 0.05 - style.face_height * 0.75),
        ],
        np.float64,
    )


def _local_to_canvas(points: np.ndarray, frame: dict[str, float]) -> np.ndarray:
    c, s = np.cos(frame["rotation"]), np.sin(frame["rotation"])
    rotation = np.array([[c, -s], [s, c]])
    return frame["scale"] * BASE_SCALE * points @ rotation.T + np.array([frame["tx"], frame["ty"]])


def canvas_to_pixels(points: np.ndarray, size: int) -> np.ndarray:
    """Canvas coordinates in [-1, 1] to pixel coordinates (x, y) of an ``size`` x ``size`` image."""
    return (points + 1.0) * size / 2.0 - 0.5


def keypoints(style: CharacterStyle, frame: dict[str, float], size: int) -> np.ndarray:
    """(K, 2) float32 pixel positions of ``KEYPOINT_NAMES`` for one frame's motion values."""
    local = _local_keypoints(style, frame["mouth"], frame["brow"])
    return canvas_to_pixels(_local_to_canvas(local, frame), size).astype(np.float32)


def landmarks68(style: CharacterStyle, frame: dict[str, float], size: int) -> np.ndarray:
    """(68, 2) float32 pixel landmarks in dlib's 68-point convention, from the character's geometry.

    Jaw 0-16 along the lower face outline (left to right), brows 17-26, nose bridge 27-30 down to the
    tip, nostrils 31-35, eyes 36-47 (six points on each eye outline), outer lips 48-59, inner lips 60-67.
    """
    fw, fh, cy = style.face_width, style.face_height, 0.05
    jaw_angles = np.linspace(np.pi, 0.0, 17)  # from the left side at eye height, round the chin, to the right
    jaw = np.stack([fw * np.cos(jaw_angles), cy + fh * np.sin(jaw_angles)], axis=1)
    jaw[:, 1] = np.maximum(jaw[:, 1], style.eye_height)
    ex, ey, r = style.eye_spacing, style.eye_height, style.eye_radius
    brow_y = ey - r - 0.07 - 0.05 * frame["brow"]
    brows = [(side * ex + dx * 1.2 * r, brow_y) for side in (-1.0, 1.0) for dx in np.linspace(-1, 1, 5)]
    nose = [(0.0, y) for y in np.linspace(ey, 0.14, 4)] + [(dx, 0.16) for dx in np.linspace(-0.05, 0.05, 5)]
    eye_open = 0.005 + 0.8 * r * max(1.0 - frame["blink"], 0.0)
    eye_angles = np.array([np.pi, 2 * np.pi / 3, np.pi / 3, 0.0, -np.pi / 3, -2 * np.pi / 3])
    eyes = [(side * ex + r * np.cos(a), ey - eye_open * np.sin(a)) for side in (-1.0, 1.0) for a in eye_angles]
    half_height = 0.015 + 0.09 * frame["mouth"]
    outer_angles = np.pi - np.arange(12) * 2 * np.pi / 12
    outer = [(style.mouth_width * np.cos(a), 0.30 - half_height * np.sin(a)) for a in outer_angles]
    inner_angles = np.pi - np.arange(8) * 2 * np.pi / 8
    inner_height = max(half_height - 0.022, 0.0)
    inner = [(0.8 * style.mouth_width * np.cos(a), 0.30 - inner_height * np.sin(a)) for a in inner_angles]
    local = np.concatenate([jaw, np.array(brows), np.array(nose), np.array(eyes), np.array(outer), np.array(inner)])
    return canvas_to_pixels(_local_to_canvas(local, frame), size).astype(np.float32)


def _ellipse_sdf(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Signed distance to an axis-aligned ellipse along the ray from its centre (negative inside).

    Exact for circles and along the axes, an upper bound elsewhere; unlike the first-order estimate
    f / |grad f| it stays correct far from thin ellipses (a closed eye, a closed mouth).
    """
    dx, dy = x - cx, y - cy
    distance = np.sqrt(dx**2 + dy**2)
    normalised = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
    return distance * (1.0 - 1.0 / np.maximum(normalised, 1e-9))


def render_frame(style: CharacterStyle, frame: dict[str, float], size: int) -> np.ndarray:
    """Render one frame as an (S, S, 3) uint8 image.

    ``frame`` holds one value per ``MOTION_FIELDS`` name. Shapes are composited with coverage
    ``clip(0.5 - distance / pixel, 0, 1)``, which anti-aliases every edge by one pixel.
    """
    centres = (np.arange(size) * 2.0 + 1.0) / size - 1.0
    canvas_x, canvas_y = np.meshgrid(centres, centres)
    image = np.empty((size, size, 3))
    blend = np.linspace(0.0, 1.0, size)[:, None, None]
    image[:] = (1 - blend) * np.array(style.background_top) + blend * np.array(style.background_bottom)

    # Pixel grid in the character's local frame.
    c, s = np.cos(frame["rotation"]), np.sin(frame["rotation"])
    unit = frame["scale"] * BASE_SCALE
    px, py = canvas_x - frame["tx"], canvas_y - frame["ty"]
    x = (c * px + s * py) / unit
    y = (-s * px + c * py) / unit
    pixel = 2.0 / size / unit  # one pixel in local units

    def paint(distance: np.ndarray, rgb) -> None:
        alpha = np.clip(0.5 - distance / pixel, 0.0, 1.0)[..., None]
        image[:] = image * (1.0 - alpha) + np.asarray(rgb) * alpha

    dark = tuple(0.6 * v for v in style.skin)
    face_top = 0.05 - style.face_height
    paint(_ellipse_sdf(x, y, 0.0, -0.05, style.face_width * style.hair_width, style.face_height * style.hair_height), style.hair)
    paint(_ellipse_sdf(x, y, 0.0, 0.05, style.face_width, style.face_height), style.skin)
    fringe = np.maximum(
        _ellipse_sdf(x, y, 0.0, face_top + 0.1, style.face_width * 1.05, style.fringe_depth + 0.1),
        _ellipse_sdf(x, y, 0.0, -0.05, style.face_width * style.hair_width, style.face_height * style.hair_height),
    )
    paint(fringe, style.hair)
    eye_open = max(1.0 - float(frame["blink"]), 0.0)
    for side in (-1.0, 1.0):
        ex, ey, r = side * style.eye_spacing, style.eye_height, style.eye_radius
        white = _ellipse_sdf(x, y, ex, ey, r, 0.005 + 0.8 * r * eye_open)
        paint(white, (0.97, 0.97, 0.97))
        paint(np.maximum(white, _ellipse_sdf(x, y, ex, ey, 0.55 * r, 0.55 * r)), style.iris)
        paint(np.maximum(white, _ellipse_sdf(x, y, ex, ey, 0.25 * r, 0.25 * r)), (0.03, 0.03, 0.05))
        brow_y = ey - r - 0.07 - 0.05 * float(frame["brow"])
        paint(_ellipse_sdf(x, y, ex, brow_y, 1.2 * r, 0.028), style.hair)
    paint(_ellipse_sdf(x, y, 0.0, 0.14, 0.035, 0.028), dark)
    mouth_half_height = 0.015 + 0.09 * float(frame["mouth"])
    paint(_ellipse_sdf(x, y, 0.0, 0.30, style.mouth_width, mouth_half_height), style.lips)
    inner = _ellipse_sdf(x, y, 0.0, 0.30, style.mouth_width * 0.8, max(mouth_half_height - 0.022, 1e-3))
    paint(inner, (0.25, 0.04, 0.06))
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _frame(motion: dict[str, np.ndarray], index: int) -> dict[str, float]:
    return {name: float(motion[name][index]) for name in MOTION_FIELDS}


@dataclass(frozen=True)
class Renderer:
    """How a toy world's identities look: ``sample_style(rng)`` draws one, ``write(root, name, style, motion, size)``
    writes it in the seed layout (portrait, frames, and ground truth where the renderer has it)."""

    sample_style: Callable[[np.random.Generator], object]
    write: Callable[[Path, str, object, dict, int], None]


# renderer name -> Renderer; motionlab.data.toy_human adds "human" (motionlab.data imports it)
RENDERERS: dict[str, Renderer] = {}


@dataclass(frozen=True)
class ToyWorldSpec:
    """Everything that determines a generated toy world (and so its cache key)."""

    identities: int = 48
    frames: int = 40
    size: int = 64
    seed: int = 0
    translation: float = MotionRange.translation
    rotation: float = MotionRange.rotation
    scale: float = MotionRange.scale
    # how identities look: "character" (the Live2D-like characters) or "human" (motionlab.data.toy_human's faces)
    renderer: str = "character"

    def __post_init__(self) -> None:
        for name in ("identities", "frames", "size"):
            if getattr(self, name) < 1:
                raise InputError(f"toy world: {name} must be >= 1, got {getattr(self, name)}")
        if self.size < 16:
            raise InputError(f"toy world: size must be >= 16 pixels to draw a face, got {self.size}")
        if self.renderer not in RENDERERS:
            raise InputError(f"toy world: renderer must be one of {sorted(RENDERERS)}, got {self.renderer!r}")

    def cache_key(self) -> str:
        settings = asdict(self)
        if self.renderer == "character":  # worlds generated before renderers existed keep their key
            del settings["renderer"]
        payload = json.dumps({"version": FORMAT_VERSION, **settings}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def motion_range(self) -> MotionRange:
        return MotionRange(translation=self.translation, rotation=self.rotation, scale=self.scale)


def load_character(clip_dir: str | os.PathLike) -> tuple[CharacterStyle, dict[str, np.ndarray]] | None:
    """The character style and (T,) motion arrays a toy clip was rendered from (its ``motion.npz``); ``None`` for clips
    without them (other renderers, other layouts)."""
    path = Path(clip_dir) / "motion.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if "style" not in data or any(name not in data for name in MOTION_FIELDS):
            return None
        style = json.loads(str(data["style"]))
        motion = {name: data[name] for name in MOTION_FIELDS}
    if set(style) != {field.name for field in fields(CharacterStyle)}:
        return None
    return CharacterStyle(**style), motion


def toy_face_labels(clip_dir: Path, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A toy clip's face labels from its stored style and motion: (T, 68, 2) pixel landmarks at ``size`` and
    (T, 3) head pose (pitch, yaw, roll) in degrees, LivePortrait's convention (the characters turn in the image
    plane only, so pitch and yaw are 0; positive roll turns clockwise on screen, as ``rotation`` does). ``None``
    for clips without a character's ``motion.npz`` (other renderers, other layouts)."""
    character = load_character(clip_dir)
    if character is None:
        return None
    style, motion = character
    frames = len(motion["tx"])
    landmarks = np.stack([landmarks68(style, _frame(motion, t), size) for t in range(frames)])
    pose = np.zeros((frames, 3), np.float32)
    pose[:, 2] = np.degrees(motion["rotation"])
    return landmarks, pose


def identity_name(index: int) -> str:
    return f"id_{index:04d}"


def write_identity(root: Path, name: str, style: CharacterStyle, motion: dict[str, np.ndarray], size: int) -> None:
    """Write one identity in the seed layout under ``root``."""
    neutral = _frame(neutral_motion(), 0)
    Image.fromarray(render_frame(style, neutral, size)).save(root / f"{name}.png")
    clip_dir = root / f"{name}_video"
    clip_dir.mkdir(parents=True, exist_ok=True)
    frames = len(motion["tx"])
    points = np.empty((frames, len(KEYPOINT_NAMES), 2), np.float32)
    for t in range(frames):
        frame = _frame(motion, t)
        Image.fromarray(render_frame(style, frame, size)).save(clip_dir / f"{t:04d}.png")
        points[t] = keypoints(style, frame, size)
    np.save(clip_dir / "keypoints.npy", points)
    np.savez(
        clip_dir / "motion.npz",
        keypoint_names=np.array(KEYPOINT_NAMES),
        portrait_keypoints=keypoints(style, neutral, size),
        style=np.array(json.dumps(asdict(style))),
        **motion,
    )


RENDERERS["character"] = Renderer(sample_style, write_identity)


def generate_toy_world(out: str | os.PathLike, spec: ToyWorldSpec, progress: bool = False) -> Path:
    """Write a toy world to ``out`` (created; must be empty or absent). Deterministic in ``spec``."""
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"toy world: output folder {root} is not empty; choose a new folder or delete it")
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    iterator = range(spec.identities)
    if progress:
        from rich.progress import track

        iterator = track(iterator, description=f"rendering {spec.identities} identities")
    renderer = RENDERERS[spec.renderer]
    for index in iterator:
        style = renderer.sample_style(rng)
        motion = sample_motion(rng, spec.frames, spec.motion_range)
        renderer.write(root, identity_name(index), style, motion, spec.size)
    manifest = {"format_version": FORMAT_VERSION, "keypoint_names": list(KEYPOINT_NAMES), **asdict(spec)}
    (root / "toy_world.json").write_text(json.dumps(manifest, indent=2))
    return root


def ensure_toy_world(cache_dir: str | os.PathLike, spec: ToyWorldSpec) -> Path:
    """Return the folder of ``spec``'s toy world under ``cache_dir``, generating it on first use.

    Generation goes to a temporary sibling folder that is renamed into place, so an interrupted run
    never leaves a half-written world that later runs would trust.
    """
    cache = Path(cache_dir)
    target = cache / f"toy_world_{spec.cache_key()}"
    manifest = target / "toy_world.json"
    if manifest.is_file():
        stored = json.loads(manifest.read_text())
        if all(stored.get(f.name, f.default) == getattr(spec, f.name) for f in fields(spec)):
            return target
        raise InputError(f"toy world cache {target} holds other settings than {spec}; delete the folder")
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".toy_world_tmp_", dir=cache))
    try:
        log.info("generating toy world %s into %s", spec, target)
        generate_toy_world(scratch / "world", spec)
        try:
            os.replace(scratch / "world", target)
        except OSError:
            if not (target / "toy_world.json").is_file():  # a concurrent writer did not finish either
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
