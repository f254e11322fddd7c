"""Where a model's square input comes from in a portrait, and how its output goes back: a face crop (an affine map
into a square, the result pasted back through a feathered mask) or the whole image at its aspect (letterboxed: padded
to a square with its edge pixels, the padding cut off again). The output keeps the portrait's size and aspect.

Convention: (H, W, 3) uint8 RGB images; matrices are (2, 3) affine maps from image pixels to crop pixels (x right,
y down, origin at the top-left pixel), as ``cv2.warpAffine`` takes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class PortraitCrop:
    """Where the face crop of a portrait came from: ``matrix`` (2, 3) maps the portrait's pixels to the crop's
    (``crop_size`` square), ``image`` is the portrait; eye (1, 2) and lip (1, 1) openness of its face (None when the
    crop was given, not found: ``crop_box``)."""

    matrix: np.ndarray
    crop_size: int
    image: np.ndarray
    eyes: np.ndarray | None
    lips: np.ndarray | None


def feathered_mask(size: int, feather: float = 0.1) -> np.ndarray:
    """(size, size) float32 mask, 1 inside and falling smoothly to 0 over the outer ``feather`` of the side."""
    ramp = np.minimum(np.arange(size), np.arange(size)[::-1]) / max(feather * size, 1.0)
    edge = np.clip(np.minimum(ramp[:, None], ramp[None, :]), 0.0, 1.0)
    return (edge * edge * (3.0 - 2.0 * edge)).astype(np.float32)


def read_paste_mask(path: str | os.PathLike) -> np.ndarray:
    """The release's paste-back mask (``src/utils/resources/mask_template.png``) as (H, W, 3) float32 in [0, 1]."""
    from motionlab.data.video_io import read_image

    return read_image(path).astype(np.float32) / 255.0


def paste_into_portrait(frame: np.ndarray, crop: PortraitCrop, mask: np.ndarray | None = None) -> np.ndarray:
    """A generated crop (S', S', 3) uint8 warped back into the portrait and blended through a mask: motionlab's
    feathered one (rounded), or the release's template ``mask`` (:func:`read_paste_mask`; truncated to uint8, as its
    ``paste_back`` does)."""
    size = frame.shape[0]
    matrix = crop.matrix * np.array([[size / crop.crop_size], [size / crop.crop_size]])
    inverse = cv2.invertAffineTransform(matrix)
    height, width = crop.image.shape[:2]
    warped = cv2.warpAffine(frame, inverse, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if mask is not None:
        template = mask if mask.shape[:2] == (size, size) else cv2.resize(mask, (size, size))
        weights = cv2.warpAffine(template, inverse, (width, height), flags=cv2.INTER_LINEAR)
        return np.clip(weights * warped + (1 - weights) * crop.image, 0, 255).astype(np.uint8)
    weights = cv2.warpAffine(feathered_mask(size), inverse, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    return (crop.image * (1.0 - weights) + warped * weights).round().clip(0, 255).astype(np.uint8)


def box_crop_matrix(box: list | str, shape: tuple[int, int], size: int) -> np.ndarray:
    """(2, 3) map from image pixels to a ``size`` crop of ``box`` ([x0, y0, x1, y1], made square about its centre with
    the longer side) or of the largest centred square (``"centre"``) of an image of ``shape`` (H, W)."""
    height, width = shape
    if box == "centre":
        side, centre = min(height, width), ((width - 1) / 2, (height - 1) / 2)
    else:
        x0, y0, x1, y1 = (float(v) for v in box)
        side, centre = max(x1 - x0, y1 - y0), ((x0 + x1) / 2, (y0 + y1) / 2)
    scale = size / side
    return np.array([[scale, 0.0, size / 2 - scale * centre[0]], [0.0, scale, size / 2 - scale * centre[1]]])


# the side of the intermediate square crops are warped into before they are area-resized to a network's input
CROP_SIZE = 512


@dataclass
class Letterbox:
    """The whole portrait at its aspect in a square: ``pad`` (top, bottom, left, right) pixels of its edge added."""

    image: np.ndarray
    pad: tuple[int, int, int, int]


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """(size, size, 3) input from the whole (H, W, 3) image at its aspect: padded to a square by repeating its edge
    (no black bars for a network to animate), then area-resized; an image already ``size`` square is returned as is."""
    height, width = image.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    pad = (top, side - height - top, left, side - width - left)
    square = cv2.copyMakeBorder(image, *pad, borderType=cv2.BORDER_REPLICATE) if side != min(height, width) else image
    if side != size:
        square = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    return square, Letterbox(image, pad)


def unletterbox(frame: np.ndarray, box: Letterbox) -> np.ndarray:
    """A generated (S', S', 3) frame back at the portrait's size and aspect: resized to the padded square, the padding
    cut off."""
    height, width = box.image.shape[:2]
    top, bottom, left, right = box.pad
    side = height + top + bottom
    if frame.shape[:2] != (side, side):
        frame = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA if frame.shape[0] > side else cv2.INTER_CUBIC)
    return np.ascontiguousarray(frame[top : top + height, left : left + width])


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) crop of ``image`` through ``matrix`` (into :data:`CROP_SIZE`): warped bilinearly into the
    intermediate square, then area-resized, as LivePortrait's cropper does."""
    cropped = cv2.warpAffine(image, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR)
    return cv2.resize(cropped, (size, size), interpolation=cv2.INTER_AREA)


def face_crop(image: np.ndarray, points: np.ndarray, size: int, scale: float, vy_ratio: float) -> tuple[np.ndarray, PortraitCrop]:
    """(size, size, 3) input of one face (its (P, 2) landmarks; :func:`motionlab.geometry.landmarks.face_crop_matrix`)
    through :func:`warp_crop`, and where it came from."""
    from motionlab.geometry.landmarks import face_crop_matrix

    matrix = face_crop_matrix(points, CROP_SIZE, scale, vy_ratio=vy_ratio)
    return warp_crop(image, matrix, size), PortraitCrop(matrix, CROP_SIZE, image, None, None)
