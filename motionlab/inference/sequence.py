"""Generated sequences as files a viewer can scrub: portrait, driver and generated frames at the network's size,
the points and boxes drawn over them as named layers, and per-frame metric traces (``motionlab-animate
sequence_out=``, ``motionlab-lipsync sequence_out=``).

Convention: one ``.npz`` (read with ``allow_pickle=False``: nothing in it can run code) holding
- ``portrait`` (H, W, 3), ``driver`` and ``generated`` (T, H, W, 3) uint8 RGB, ``fps`` and ``format``;
- ``layer.<panel>.<name>``: (T, K, 2) float32 points in pixels of that panel's frames (x right, y down, the centre
  of the top-left pixel at (0, 0)); ``panel`` is ``driver`` or ``generated``; a ``*_box`` layer holds two corners
  (x0, y0), (x1, y1) per frame;
- ``trace.<name>``: (T,) float64 per-frame metrics (:func:`motionlab.metrics.traces.frame_traces`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from motionlab.data.images import to_tensor
from motionlab.data.video_io import input_limits
from motionlab.metrics.traces import frame_traces
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_path

FORMAT = "motionlab-sequence-1"
PANELS = ("driver", "generated")
# layers drawn in one colour (keypoint layers use KEYPOINT_COLOURS, one per index, so correspondences show)
LAYER_COLOURS = {"driver_landmarks": (0, 255, 0), "crop_box": (255, 225, 25), "mask_box": (230, 25, 75)}
KEYPOINT_COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                             [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], dtype=np.uint8)


class SequenceError(InputError):
    """A file that is not a readable sequence, with the path in the message."""


def draw_keypoints(frames: np.ndarray, points: np.ndarray, radius: int = 1, colour: tuple[int, int, int] | None = None) -> np.ndarray:
    """Copies of (T, H, W, 3) uint8 frames with (T, K, 2) pixel points drawn as squares: point k in the k-th keypoint
    colour (correspondences stay visible across panels), or all in ``colour``."""
    out = frames.copy()
    height, width = frames.shape[1:3]
    for t, frame_points in enumerate(points):
        for k, (x, y) in enumerate(np.round(np.nan_to_num(frame_points, nan=-1e6)).astype(int)):
            if 0 <= x < width and 0 <= y < height:
                out[t, max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = (
                    colour if colour is not None else KEYPOINT_COLOURS[k % len(KEYPOINT_COLOURS)])
    return out


def draw_box(image: np.ndarray, corners: np.ndarray, colour: tuple[int, int, int], thickness: int = 1) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 image with the rectangle of (2, 2) pixel ``corners`` ((x0, y0), (x1, y1)) outlined."""
    out = image.copy()
    height, width = image.shape[:2]
    (x0, y0), (x1, y1) = np.clip(np.round(corners).astype(int), 0, [width - 1, height - 1])
    for y in (y0, y1 - thickness + 1):
        out[max(0, y) : y + thickness, x0 : x1 + 1] = colour
    for x in (x0, x1 - thickness + 1):
        out[y0 : y1 + 1, max(0, x) : x + thickness] = colour
    return out


@dataclass
class Sequence:
    portrait: np.ndarray
    driver: np.ndarray
    generated: np.ndarray
    fps: float
    layers: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # name -> (panel, (T, K, 2) points)
    traces: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.generated)

    def render(self, index: int, layers: list[str] | tuple[str, ...] = (), size: int = 256) -> np.ndarray:
        """Frame ``index`` as portrait | driver | generated, each panel ``size`` px high (nearest-neighbour, pixels
        stay visible), with the named ``layers`` drawn on their panels: points as squares, ``*_box`` layers (two
        corners per frame) as rectangles; (size, 3 * width, 3) uint8."""
        if not 0 <= index < len(self):
            raise SequenceError(f"frame {index} is outside the sequence (0..{len(self) - 1})")
        unknown = sorted(set(layers) - set(self.layers))
        if unknown:
            raise SequenceError(f"unknown layers {unknown}; this sequence has {sorted(self.layers)}")
        height, width = self.generated.shape[1:3]
        scale = size / height
        shape = (max(1, round(width * scale)), size)
        panels = {"portrait": self.portrait, "driver": self.driver[index], "generated": self.generated[index]}
        panels = {name: np.asarray(Image.fromarray(image).resize(shape, Image.NEAREST)) for name, image in panels.items()}
        for name in layers:
            panel, points = self.layers[name]
            shown = (points[index] + 0.5) * scale - 0.5
            if name.endswith("_box"):
                panels[panel] = draw_box(panels[panel], shown, LAYER_COLOURS.get(name, (255, 255, 255)), max(1, round(scale)))
            else:
                colour = LAYER_COLOURS.get(name) if len(shown) > len(KEYPOINT_COLOURS) else None  # dense landmarks in one colour
                panels[panel] = draw_keypoints(panels[panel][None], shown[None], radius=max(1, round(scale)), colour=colour)[0]
        return np.concatenate([panels["portrait"], panels["driver"], panels["generated"]], axis=1)



def build_sequence(portrait: np.ndarray, driver: np.ndarray, generated: np.ndarray, fps: float,
                   layers: dict[str, tuple[str, np.ndarray]] | None = None) -> Sequence:
    """A sequence with its traces computed; ``motion_agreement`` when both ``driver_keypoints`` and
    ``generated_keypoints`` layers are given."""
    layers = dict(layers or {})
    for name, (panel, points) in layers.items():
        if panel not in PANELS or points.ndim != 3 or points.shape[0] != len(generated) or points.shape[2] != 2:
            raise ValueError(f"layer {name!r}: panel must be one of {PANELS} and points (T={len(generated)}, K, 2), got {panel!r} {points.shape}")
    keypoints = [torch.from_numpy(np.asarray(layers[name][1], np.float32)) if name in layers else None
                 for name in ("driver_keypoints", "generated_keypoints")]
    traces = frame_traces(to_tensor(portrait), to_tensor(driver), to_tensor(generated), *keypoints)
    return Sequence(portrait, driver, generated, float(fps), layers, traces)


def write_sequence(path: str | os.PathLike, sequence: Sequence) -> Path:
    """Write ``sequence`` to ``path`` (``.npz``) atomically."""
    arrays = {"format": np.array(FORMAT), "portrait": sequence.portrait, "driver": sequence.driver,
              "generated": sequence.generated, "fps": np.array(sequence.fps)}
    arrays.update({f"layer.{panel}.{name}": points.astype(np.float32) for name, (panel, points) in sequence.layers.items()})
    arrays.update({f"trace.{name}": values for name, values in sequence.traces.items()})
    with atomic_path(path) as scratch:
        with open(scratch, "wb") as file:
            np.savez_compressed(file, **arrays)
    return Path(path)


def _check_decoded_size(path: Path) -> None:
    """Refuse a file whose arrays would decompress to more than ``limits.max_sequence_mb``, from the array headers
    alone (a small compressed file can hold gigabytes of frames)."""
    limit = input_limits().max_sequence_mb
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                with archive.open(member) as stream:
                    version = np.lib.format.read_magic(stream)
                    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = header(stream)
                total += int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise SequenceError(f"sequence {path} cannot be read ({error}); give a .npz written by motionlab-animate sequence_out=") from error
    if total > limit * 2**20:
        raise SequenceError(f"sequence {path} decompresses to {total / 2**20:.0f} MB, over the limit of {limit} MB; "
                            "cut the sequence or raise limits.max_sequence_mb")


def read_sequence(path: str | os.PathLike) -> Sequence:
    """Read a sequence file; anything else is a :class:`SequenceError` naming the file."""
    path = Path(path)
    _check_decoded_size(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as error:
        raise SequenceError(f"sequence {path} cannot be read ({error}); give a .npz written by motionlab-animate sequence_out=") from error
    if str(arrays.get("format", "")) != FORMAT:
        raise SequenceError(f"{path} is not a motionlab sequence (no format {FORMAT!r}); give a .npz written by motionlab-animate sequence_out=")
    frames = [arrays.get(key) for key in ("portrait", "driver", "generated")]
    if any(f is None or f.dtype != np.uint8 for f in frames) or frames[1].shape != frames[2].shape or frames[0].shape != frames[2].shape[1:]:
        raise SequenceError(f"sequence {path}: portrait, driver and generated must be uint8 frames of one size")
    layers = {}
    for key, points in arrays.items():
        if key.startswith("layer."):
            _, panel, name = key.split(".", 2)
            if panel not in PANELS or points.shape[:1] != frames[2].shape[:1] or points.ndim != 3 or points.shape[2] != 2:
                raise SequenceError(f"sequence {path}: {key} must be (T, K, 2) points on a panel of {PANELS}")
            layers[name] = (panel, points)
    traces = {key.removeprefix("trace."): values for key, values in arrays.items() if key.startswith("trace.")}
    return Sequence(frames[0], frames[1], frames[2], float(arrays["fps"]), layers, traces)


def reported(frames: Iterator[np.ndarray], total: int, on_frame: Callable[[int, int], None]) -> Iterator[np.ndarray]:
    """``frames`` passed through, calling ``on_frame(done, total)`` after each (progress for the app and the CLIs)."""
    for done, frame in enumerate(frames, start=1):
        on_frame(done, total)
        yield frame
