"""MuseTalk 1.5's inference (``scripts/inference.py`` and ``realtime_inference.py`` of the release): a video (or one
image) speaks new audio.

Face boxes: MuseTalk takes DWPose's 68 face points (an mmpose model it downloads); here dlib's 68 points (the same
iBUG-68 layout) go through MuseTalk's rule (:func:`landmark_face_box`): the box spans the points' x range, from the
largest y down, and up from point 29 (the nose bridge; ``bbox_shift`` moves it, 1.5 uses 0) by as much as the chin lies
below it; a box that comes out empty or leaves the frame falls back to the face detector's. 1.5 then adds
``extra_margin`` (10) pixels below the chin. Each crop is resized to 256 (Lanczos).

The avatar (:class:`Avatar`, realtime_inference's ``prepare_material``): per template frame its box, its VAE latents
(masked + reference) and its blending mask
(:func:`blend_material`: BiSeNet parses the box widened 1.5x around its centre; ``parsing_mode`` ``jaw`` keeps the skin
below the nose widened downward by a cone kernel and eroded at the cheeks, with the lips and mouth; ``raw`` keeps skin
and mouth; ``neck`` adds the neck; the lower half of the widened box is kept, then blurred). The frames play forward
then backward (``frames + frames[::-1]``, each end frame twice); output frame ``i`` is that cycle's frame ``i``: one U-Net step on its latents and the audio window of frame ``i``, the decoded face resized to the box
(bilinear) and pasted through the mask. The masks depend on the template frame only, so computing them once (realtime)
or per output frame (inference.py) gives the same frames; the two scripts differ only in the mask blur (``blend``:
``normal`` 5 %, ``realtime`` 10 % of the widened box). An avatar can be saved (``avatar=PATH.npz``) and reused with other
audio, as the realtime mode does.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from motionlab.data.audio import SAMPLE_RATE, load_wav
from motionlab.data.video_io import IMAGE_EXTENSIONS, open_clip, read_image, write_video
from motionlab.inference.precision import checked_psnr, unsupported
from motionlab.inference.sequence import reported
from motionlab.models.face_parsing import LOWER_LIP, MOUTH, NECK, NOSE, SKIN, UPPER_LIP
from motionlab.models.musetalk import face_crops, landmark_face_box
from motionlab.tasks.musetalk_predictor import MuseTalkPredictor
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_open, file_digest

log = logging.getLogger(__name__)

# MuseTalk 1.5's inference defaults
EXTRA_MARGIN, CHEEK_WIDTH = 10, 90
BLEND_BLUR = {"normal": 0.05, "realtime": 0.1}
PARSING_MODES = ("jaw", "raw", "neck")
# the widened box parsed for the mask, and the share of it (from the top) left out of the mask
EXPAND, UPPER_BOUNDARY = 1.5, 0.5


def face_boxes(frames: np.ndarray, source: str, bbox_shift: int = 0, extra_margin: int = EXTRA_MARGIN) -> list[tuple[int, int, int, int]]:
    """Each frame's face box by dlib's 68 points and MuseTalk's rule, ``extra_margin`` added below (clipped to the frame);
    a frame without a face is an error naming it (MuseTalk would drop it and shift the rest)."""
    from motionlab.data.landmarks import DlibLandmarks

    landmarker, boxes = DlibLandmarks(), []
    for index, frame in enumerate(frames):
        shape = landmarker.shape(np.ascontiguousarray(frame))
        if shape is None:
            raise InputError(f"{source}: no face found in frame {index}; every frame of a MuseTalk video must show a face (trim the video)")
        box = landmark_face_box(landmarker.points(shape), bbox_shift)
        if box is None:
            rect = shape.rect
            box = (max(0, rect.left()), max(0, rect.top()), rect.right(), rect.bottom())
        x1, y1, x2, y2 = box
        boxes.append((x1, y1, x2, min(y2 + extra_margin, frame.shape[0])))
    return boxes


@functools.cache
def _jaw_kernels() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FaceParsing's kernels: a cone (21 rows, widening by 2 per row from its middle) over a 12-row stem, the flat
    ellipse that erodes the cheeks, and the 512 x 512 cheek mask (outside the middle +-90 columns)."""
    cone, stem = 21, 12
    size = cone + stem
    kernel = np.zeros((size, size), np.uint8)
    centre = size // 2
    for row in range(cone // 2, cone):
        width = 2 * (row - cone // 2) + 1
        kernel[row, centre - width // 2 : centre + width // 2 + 1] = 1
    base = int(kernel[cone - 1].sum())
    kernel[cone:, max(0, centre - base // 2) : min(size, centre + base // 2 + 1)] = 1
    cheek_mask = np.zeros((512, 512), np.uint8)
    cv2.rectangle(cheek_mask, (0, 0), (256 - CHEEK_WIDTH, 512), 255, -1)
    cv2.rectangle(cheek_mask, (256 + CHEEK_WIDTH, 0), (512, 512), 255, -1)
    return kernel, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3)), cheek_mask


def parsing_mask(classes: np.ndarray, mode: str) -> np.ndarray:
    """(512, 512) uint8 0 / 255 mask of BiSeNet ``classes`` in MuseTalk's ``mode`` (FaceParsing.__call__)."""
    if mode == "neck":
        kept = np.isin(classes, [SKIN, MOUTH, UPPER_LIP, LOWER_LIP, NECK])
    elif mode == "jaw":
        kernel, cheek_kernel, cheek_mask = _jaw_kernels()
        skin = (classes == SKIN).astype(np.uint8) * 255
        dilated = cv2.dilate(skin, kernel, iterations=1)
        eroded = cv2.erode(dilated, cheek_kernel, iterations=2)
        region = cv2.bitwise_or(cv2.bitwise_and(eroded, cheek_mask), cv2.bitwise_and(dilated, ~cheek_mask))
        kept = ((region == 255) & (classes != NOSE)) | np.isin(classes, [MOUTH, UPPER_LIP, LOWER_LIP])
    elif mode == "raw":
        kept = np.isin(classes, [SKIN, MOUTH, UPPER_LIP, LOWER_LIP])
    else:
        raise InputError(f"parsing_mode must be one of {', '.join(PARSING_MODES)}, got {mode!r}")
    return kept.astype(np.uint8) * 255


def widened_box(box: tuple[int, int, int, int], expand: float = EXPAND) -> tuple[int, int, int, int]:
    """The square ``get_crop_box`` parses: centred on the box (integer centre), half-side int(max(w, h) // 2 x expand)."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    half = int(max(x2 - x1, y2 - y1) // 2 * expand)
    return cx - half, cy - half, cx + half, cy + half


def blend_material(predictor: MuseTalkPredictor, frame: np.ndarray, box: tuple[int, int, int, int], mode: str,
                   blur: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The blending mask of one frame and the widened box it covers (``get_image_prepare_material``)."""
    x1, y1, x2, y2 = box
    wide = widened_box(box)
    region = Image.fromarray(frame).crop(wide)
    parsed = Image.fromarray(parsing_mask(predictor.parse(region), mode)).resize(region.size)
    inner = (x1 - wide[0], y1 - wide[1], x2 - wide[0], y2 - wide[1])
    face_only = Image.new("L", region.size, 0)
    face_only.paste(parsed.crop(inner), inner)
    width, height = region.size
    top = int(height * UPPER_BOUNDARY)
    lower = Image.new("L", region.size, 0)
    lower.paste(face_only.crop((0, top, width, height)), (0, top))
    kernel = int(blur * region.size[0] // 2 * 2) + 1
    return cv2.GaussianBlur(np.array(lower), (kernel, kernel), 0), wide


def blend(frame: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int], mask: np.ndarray,
          wide: tuple[int, int, int, int]) -> np.ndarray:
    """``frame`` with the generated ``face`` (already at the box's size) pasted through ``mask`` (``get_image_blending``)."""
    x1, y1, x2, y2 = box
    body = Image.fromarray(frame)
    region = body.crop(wide)
    region.paste(Image.fromarray(face), (x1 - wide[0], y1 - wide[1], x2 - wide[0], y2 - wide[1]))
    body.paste(region, wide[:2], Image.fromarray(mask))
    return np.asarray(body)


@dataclass
class Avatar:
    """A template's frames ready for MuseTalk (the realtime mode's prepared material): per template frame, its face box,
    U-Net latents (masked + reference), blending mask and the box the mask covers, and the settings they were made with.
    They play forward, then backward (:meth:`position`)."""

    frames: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    latents: torch.Tensor
    masks: list[np.ndarray]
    mask_boxes: list[tuple[int, int, int, int]]
    settings: dict

    def __len__(self) -> int:
        """Frames in one forward-and-back cycle."""
        return 2 * len(self.boxes)

    def position(self, step: int) -> int:
        """The template frame of output frame ``step``: ``(frames + frames[::-1])[step % len]``, as MuseTalk cycles."""
        count = len(self.boxes)
        place = step % (2 * count)
        return place if place < count else 2 * count - 1 - place

    def save(self, path: str | os.PathLike) -> None:
        """One compressed ``.npz`` (no pickle), written atomically; the frames stay in the video they came from."""
        arrays = {"boxes": np.array(self.boxes), "latents": self.latents.numpy(), "mask_boxes": np.array(self.mask_boxes),
                  "settings": np.array(json.dumps(self.settings))}
        arrays.update({f"mask_{i}": mask for i, mask in enumerate(self.masks)})
        with atomic_open(path, "wb") as file:
            np.savez_compressed(file, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, frames: np.ndarray, settings: dict) -> "Avatar":
        """A saved avatar with its video's ``frames``, refused when it was made with other ``settings`` (another video,
        model or face rule)."""
        try:
            with np.load(path, allow_pickle=False) as stored:
                saved = json.loads(str(stored["settings"]))
                if saved != settings:
                    changed = sorted(key for key in set(saved) | set(settings) if saved.get(key) != settings.get(key))
                    raise InputError(f"avatar {path} was prepared with other {', '.join(changed)}; delete it (or give another avatar=) to prepare again")
                boxes = [tuple(int(v) for v in box) for box in stored["boxes"]]
                return cls(frames, boxes, torch.from_numpy(stored["latents"]), [stored[f"mask_{i}"] for i in range(len(boxes))],
                           [tuple(int(v) for v in box) for box in stored["mask_boxes"]], saved)
        except (OSError, KeyError, ValueError) as error:
            raise InputError(f"avatar {path} cannot be read ({error}); delete it to prepare it again") from error


def prepare_avatar(predictor: MuseTalkPredictor, frames: np.ndarray, source: str, settings: dict, batch_size: int = 8) -> Avatar:
    """The avatar of (N, H, W, 3) frames: boxes, latents and masks, computed once per template frame."""
    boxes = face_boxes(frames, source, settings["bbox_shift"], settings["extra_margin"])
    latents = torch.cat([predictor.face_latents(face_crops(frames[start : start + batch_size], boxes[start : start + batch_size], predictor.image_size))
                         for start in range(0, len(frames), batch_size)]).contiguous()  # as read back from a saved avatar: same kernels, same frames
    material = [blend_material(predictor, frame, box, settings["parsing_mode"], BLEND_BLUR[settings["blend"]]) for frame, box in zip(frames, boxes)]
    return Avatar(frames, boxes, latents, [mask for mask, _ in material], [box for _, box in material], settings)


def musetalk_frames(predictor: MuseTalkPredictor, avatar: Avatar, audio: torch.Tensor, batch_size: int) -> Iterator[np.ndarray]:
    """Output frame ``i``: template frame :meth:`Avatar.position` (i) speaking audio window ``i``."""
    for start in range(0, len(audio), batch_size):
        indices = [avatar.position(i) for i in range(start, min(len(audio), start + batch_size))]
        faces = predictor(avatar.latents[indices], audio[start : start + len(indices)])
        for i, face in zip(indices, faces):
            x1, y1, x2, y2 = avatar.boxes[i]
            yield blend(avatar.frames[i], cv2.resize(face, (x2 - x1, y2 - y1)), avatar.boxes[i], avatar.masks[i], avatar.mask_boxes[i])


def musetalk_video(predictor: MuseTalkPredictor, video: str | os.PathLike, audio: str | os.PathLike, out: str | os.PathLike,
                   bbox_shift: int = 0, extra_margin: int = EXTRA_MARGIN, parsing_mode: str = "jaw", blend_mode: str = "normal",
                   avatar: str | os.PathLike | None = None, batch_size: int = 8, fps: float = 25.0, crf: int = 20,
                   on_frame: Callable[[int, int], None] | None = None, precision: str = "fp32", floor_db: float = 40.0,
                   force: bool = False) -> dict:
    """Write ``out``: ``video`` (a clip, or an image held still at ``fps``) lip-synced to ``audio`` by MuseTalk, audio muxed.
    With ``avatar``, the prepared avatar is read from that ``.npz`` when it exists (made with the same settings) and
    written there otherwise. ``precision=bf16`` runs the U-Net and the VAE decoder in PyTorch's bfloat16 autocast where
    the CPU has it natively and the faces' lower halves on the first frames stay within ``floor_db`` of fp32's
    (:func:`bf16_gate`). Returns the frame count, the audio's length, the face landmarks used and the avatar's path."""
    if parsing_mode not in PARSING_MODES:
        raise InputError(f"parsing_mode must be one of {', '.join(PARSING_MODES)}, got {parsing_mode!r}")
    if blend_mode not in BLEND_BLUR:
        raise InputError(f"blend must be one of {', '.join(BLEND_BLUR)}, got {blend_mode!r}")
    video = Path(video)
    clip = None if video.suffix.lower() in IMAGE_EXTENSIONS else open_clip(video)
    fps = (clip.fps or fps) if clip is not None else fps
    wav = load_wav(audio)
    windows = predictor.audio_windows(wav, fps)
    if len(windows) == 0:
        raise InputError(f"audio {audio} is shorter than one video frame at {fps:g} fps")
    settings = {"video": file_digest(video)[:16], "bbox_shift": bbox_shift, "extra_margin": extra_margin, "parsing_mode": parsing_mode,
                "blend": blend_mode, "weights": predictor.net.model_info.name, "face_landmarks": "dlib_68"}
    frames = read_image(video)[None] if clip is None else clip.get(list(range(len(clip))))
    if avatar is not None and Path(avatar).is_file():
        prepared = Avatar.load(avatar, frames, settings)
        log.info("avatar read from %s (%d template frames)", avatar, len(frames))
    else:
        prepared = prepare_avatar(predictor, frames, str(video), settings)
        if avatar is not None:
            prepared.save(avatar)
            log.info("avatar written to %s (%d template frames; reused by later runs with the same video and settings)", avatar, len(frames))
    reduced = bf16_gate(predictor, prepared, windows, floor_db, force) if precision == "bf16" else None
    generated = musetalk_frames(predictor, prepared, windows, batch_size)
    if on_frame is not None:
        generated = reported(generated, len(windows), on_frame)
    path = write_video(out, generated, fps=fps, crf=crf, audio=(wav, SAMPLE_RATE))
    return {"out": str(path), "frames": len(windows), "audio_seconds": len(wav) / SAMPLE_RATE, "face_detector": "dlib_68 (MuseTalk's box rule)",
            **({"avatar": str(avatar)} if avatar is not None else {}), **({"precision": reduced} if reduced is not None else {})}


# the run's own first frames bf16 is checked on
CHECK_FRAMES = 8


def bf16_gate(predictor: MuseTalkPredictor, avatar: Avatar, windows: torch.Tensor, floor_db: float, force: bool) -> dict:
    """Switch ``predictor`` to bfloat16 autocast when this CPU computes it natively and the decoded faces' lower halves
    (what MuseTalk generates) on the run's first :data:`CHECK_FRAMES` frames reach ``floor_db`` PSNR against fp32's
    (else an error, unless ``force``). Returns ``mode``, ``psnr_mouth_db`` and ``reason``."""
    reason = unsupported("bf16")
    if reason is not None:
        return {"mode": "fp32", "psnr_mouth_db": None, "reason": reason}
    count = min(CHECK_FRAMES, len(windows))
    indices = [avatar.position(i) for i in range(count)]
    latents, audio = avatar.latents[indices], windows[:count]
    reference = predictor.faces(latents, audio)
    predictor.autocast = torch.bfloat16
    candidate = predictor.faces(latents, audio)
    predictor.autocast = None
    lower = slice(reference.shape[-2] // 2, None)
    psnr = checked_psnr("bf16", [(reference[..., lower, :] / 2 + 0.5).numpy()], [(candidate[..., lower, :] / 2 + 0.5).numpy()], floor_db, force,
                        "the generated lower face")
    predictor.autocast = torch.bfloat16
    return {"mode": "bf16", "psnr_mouth_db": psnr, "reason": f"lower-face PSNR {psnr:.1f} dB against fp32 on this run's first {count} frames "
                                                             f"(floor {floor_db:g} dB{', forced' if psnr < floor_db else ''}); PyTorch bf16 autocast"}
