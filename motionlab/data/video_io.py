"""Reading clips (decord for video files, PIL for frame folders) and writing them (PyAV, PIL).

Every reader raises :class:`ClipError` naming the file and what to do, so a bad clip is reported,
never silently replaced.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from motionlab.utils.errors import InputError, MotionlabError
from motionlab.utils.io import atomic_path

log = logging.getLogger(__name__)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class ClipError(MotionlabError, RuntimeError):
    """A clip or image that cannot be used, with the offending path in the message."""


@dataclass(frozen=True)
class InputLimits:
    """Sizes of the input files a command decodes: every command's ``limits`` config group
    (``conf/limits/default.yaml``), set for the command's run by :func:`limited`."""

    max_image_pixels: int = 50_000_000
    max_video_frames: int = 30_000
    max_portrait_side: int = 2048
    max_sequence_mb: int = 1024
    max_audio_seconds: int = 1200

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"config key 'limits.{field.name}' is {value!r}; it must be an integer >= 1")

    @classmethod
    def from_config(cls, node) -> "InputLimits":
        """The limits of a command's ``limits`` config node; a key that is no limit is an error naming the limits."""
        known = [field.name for field in fields(cls)]
        unknown = sorted(set(node) - set(known))
        if unknown:
            raise InputError(f"config key 'limits.{unknown[0]}' is not a limit; the limits are: {', '.join(known)}")
        return cls(**node)


_limits = InputLimits()


def input_limits() -> InputLimits:
    """The limits in force (the defaults outside :func:`limited`)."""
    return _limits


@contextmanager
def limited(limits: InputLimits) -> Iterator[InputLimits]:
    """Apply ``limits`` to every reader for the duration of the block (DataLoader workers started inside inherit them)."""
    global _limits
    previous, _limits = _limits, limits
    try:
        yield limits
    finally:
        _limits = previous


def _rgb8(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any PIL image: 16-bit and 32-bit grey scaled (not clipped) to 8 bits, transparent
    pixels composited on white."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or values.max() > 255:
            peak = 65535.0
        elif image.mode == "F" and values.max() <= 1.0:
            peak = 1.0  # float images in [0, 1]
        else:
            peak = 255.0
        grey = np.clip(np.round(values / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return np.array(Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB"))
    return np.array(image.convert("RGB"))


def read_image(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """Read an image file of any bit depth and mode as (H, W, 3) uint8 RGB; images over ``limits.max_image_pixels``
    (:class:`InputLimits`) are refused before decoding. With ``max_side``, a larger image is downscaled to it
    while decoding (a warning says so): a network input never needs a 40-megapixel portrait."""
    path = Path(path)
    if path.is_dir():
        raise ClipError(f"image {path} is a folder; give an image file")
    if not path.is_file():
        raise ClipError(f"image {path} does not exist; check the path")
    max_pixels = _limits.max_image_pixels
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise ClipError(f"image {path} is {image.width}x{image.height} pixels, over the limit of {max_pixels}; "
                                "downscale it or raise limits.max_image_pixels")
            if max_side is not None and max(image.size) > max_side:
                log.warning("image %s is %dx%d pixels; downscaled to at most %d on a side", path, image.width, image.height, max_side)
                image.draft("RGB", (max_side, max_side))  # JPEG decodes at a fraction of its size
                image = image.copy()
                image.thumbnail((max_side, max_side), Image.LANCZOS)
            return _rgb8(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ClipError(f"image {path} cannot be decoded ({error}); re-export it as PNG or JPEG") from error


def probe_video(path: Path) -> None:
    """Refuse, with the reason, a file that is not a readable video (empty, not a container, no video stream) or that
    has over ``limits.max_video_frames`` (:class:`InputLimits`) frames: decord's own errors say neither."""
    import av

    if path.stat().st_size == 0:
        raise ClipError(f"video {path} is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                kinds = sorted({stream.type for stream in container.streams}) or ["no streams"]
                raise ClipError(f"video {path} has no video stream ({', '.join(kinds)} only)")
            stream = container.streams.video[0]
            frames = stream.frames  # 0 when the container does not say: estimated from the duration
            if not frames and stream.duration is not None and stream.average_rate:
                frames = int(float(stream.duration * stream.time_base) * float(stream.average_rate))
    except av.FFmpegError as error:
        raise ClipError(f"video {path} cannot be read: {error} (truncated, or not a video file)") from error
    max_frames = _limits.max_video_frames
    if frames and frames > max_frames:
        raise ClipError(f"video {path} has {frames} frames, over the limit of {max_frames}; cut it or raise limits.max_video_frames")


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder in natural order (``2.png`` before ``10.png``)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return sorted(files, key=_natural_key)


class FrameFolderClip:
    """A clip stored as one image per frame."""

    def __init__(self, folder: str | os.PathLike, fps: float = 25.0):
        self.path = Path(folder)
        if not self.path.is_dir():
            raise ClipError(f"frame folder {self.path} does not exist")
        self.files = list_frame_files(self.path)
        if not self.files:
            raise ClipError(f"frame folder {self.path} holds no images ({', '.join(IMAGE_EXTENSIONS)}); remove it or add frames")
        self.fps = fps

    def __len__(self) -> int:
        return len(self.files)

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """(N, H, W, 3) uint8 frames at ``indices``."""
        return np.stack([read_image(self.files[i]) for i in indices])

    def stream(self, count: int | None = None) -> Iterator[np.ndarray]:
        """The first ``count`` frames (all when ``None``) in order, one (H, W, 3) uint8 array at a time."""
        for file in self.files[:count]:
            yield read_image(file)


class VideoFileClip:
    """A clip in a video container, decoded with decord."""

    def __init__(self, path: str | os.PathLike):
        import decord

        self.path = Path(path)
        if not self.path.is_file():
            raise ClipError(f"video {self.path} does not exist")
        probe_video(self.path)
        try:
            self._reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1)
        except Exception as error:  # decord raises its own DECORDError and RuntimeError variants
            raise ClipError(f"video {self.path} cannot be opened ({error}); check that it is a valid video file") from error
        if len(self._reader) == 0:
            raise ClipError(f"video {self.path} has no frames; remove it from the data folder")
        self.fps = float(self._reader.get_avg_fps())

    def __len__(self) -> int:
        return len(self._reader)

    def frame_interval_range(self) -> tuple[float, float]:
        """The shortest and longest time between consecutive frames, in seconds (from the container's timestamps,
        nothing decoded): equal for a constant frame rate."""
        if len(self) < 2:
            return (1.0 / self.fps,) * 2 if self.fps else (0.0, 0.0)
        intervals = np.diff(self._reader.get_frame_timestamp(np.arange(len(self)))[:, 0])
        return float(intervals.min()), float(intervals.max())

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """(N, H, W, 3) uint8 frames at ``indices`` (random access, for datasets; reading a whole video in order goes
        through :meth:`stream`)."""
        try:
            frames = self._reader.get_batch(list(indices)).asnumpy()
        except Exception as error:
            raise ClipError(f"video {self.path}: frames {list(indices)} cannot be decoded ({error})") from error
        # after a read, decord keeps decoding ahead in a background thread and holds those frames (measured: ~100 MB
        # per open 256 px reader, the whole clip for short ones; dmlc/decord#157, #197); seeking back to the start
        # stops it, which keeps a dataset's many open readers small and their CPU for training
        self._reader.seek(0)
        return frames

    def stream(self, count: int | None = None) -> Iterator[np.ndarray]:
        """The first ``count`` frames (all when ``None``) in order, one (H, W, 3) uint8 array at a time, decoded with
        PyAV as they are asked for: memory stays constant in the video's length (the same pixels as :meth:`get`)."""
        import av

        if count == 0:
            return
        try:
            with av.open(str(self.path)) as container:
                for index, frame in enumerate(container.decode(video=0)):
                    yield frame.to_ndarray(format="rgb24")
                    if count is not None and index + 1 == count:
                        return
        except av.FFmpegError as error:
            raise ClipError(f"video {self.path}: cannot be decoded ({error})") from error


def open_clip(path: str | os.PathLike) -> FrameFolderClip | VideoFileClip:
    """Open a frame folder or a video file."""
    path = Path(path)
    if path.is_dir():
        return FrameFolderClip(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoFileClip(path)
    raise ClipError(f"{path} is neither a frame folder nor a video ({', '.join(VIDEO_EXTENSIONS)})")


def _even(frame: np.ndarray) -> np.ndarray:
    """Crop to even width and height, which H.264 with 4:2:0 chroma needs."""
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    crf: int = 20,
    audio: tuple[np.ndarray, int] | None = None,
) -> Path:
    """Encode (H, W, 3) uint8 frames as H.264 (PyAV's bundled FFmpeg), optionally muxing mono audio.

    ``audio`` is ``(samples, sample_rate)`` with float samples in [-1, 1]. The file appears only when
    complete (written to a temporary name, then renamed).
    """
    import av

    path = Path(path)
    count = 0
    with atomic_path(path) as scratch:
        with av.open(str(scratch), mode="w") as container:  # the scratch name keeps the suffix: format by extension
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            audio_stream = None
            if audio is not None:
                audio_stream = container.add_stream("aac", rate=int(audio[1]))
                audio_stream.layout = "mono"
            for frame in frames:
                frame = _even(np.ascontiguousarray(frame, dtype=np.uint8))
                if count == 0:
                    stream.height, stream.width = frame.shape[:2]
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                count += 1
            if count == 0:
                raise ValueError(f"write_video({path}): no frames to write")
            for packet in stream.encode():
                container.mux(packet)
            if audio_stream is not None:
                samples = np.clip(np.asarray(audio[0], np.float32), -1.0, 1.0).reshape(1, -1)
                audio_frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
                audio_frame.sample_rate = int(audio[1])
                # timestamps let the muxer write an edit list that hides the AAC encoder's priming samples,
                # so the audio stream lasts exactly as long as the samples given
                audio_frame.pts, audio_frame.time_base = 0, Fraction(1, int(audio[1]))
                for packet in audio_stream.encode(audio_frame):
                    container.mux(packet)
                for packet in audio_stream.encode():
                    container.mux(packet)
    return path


def write_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 12.5) -> Path:
    """Write (H, W, 3) uint8 frames as a looping GIF; the file appears only when complete."""
    path = Path(path)
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    if not images:
        raise ValueError(f"write_gif({path}): no frames to write")
    with atomic_path(path) as scratch:
        images[0].save(scratch, format="GIF", save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    return path

