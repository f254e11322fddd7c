"""Face tracks for LSE on videos that are not face-centred, as syncnet_python's ``run_pipeline.py`` makes them (the
pipeline Wav2Lip's ``calculate_scores_real_videos.sh`` runs before SyncNet): S3FD faces from ``sfd_face.pth`` on each
25 fps frame at a quarter of its size, chained into tracks by overlap, interpolated, median-smoothed and cropped with
a 40 % margin to 224 x 224.

Convention: frames are (T, H, W, 3) uint8 RGB at 25 fps; boxes are (x0, y0, x1, y1) pixels of the full frame.
Differences from the reference, all documented in docs/evaluation.md: no scene detection (a clip is one shot), and the
crops are not written to an XVID file and read back.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motionlab.models.wav2lip import L2Norm

# run_pipeline.py's defaults
FACEDET_SCALE, CROP_SCALE, MIN_TRACK, NUM_FAILED_DET, MIN_FACE_SIZE, TRACK_IOU = 0.25, 0.40, 100, 25, 100, 0.5
# the per-channel means its S3FD subtracts, in the order it subtracts them (B, G, R of the BGR mean, from R, G, B)
SFD_FACE_MEAN = (123.0, 117.0, 104.0)


class SyncNetS3FD(nn.Module):
    """syncnet_python's S3FD (``detectors/s3fd/nets.py``; keys ``vgg.N``, ``extras.N``, ``loc.N``, ``conf.N``,
    ``L2Norm*`` one for one with ``sfd_face.pth``): a VGG-16 trunk with a dilated fc6, six heads at strides 4 .. 128.
    ``forward`` maps (B, 3, H, W) mean-subtracted images to (B, N, 4) box offsets and (B, N, 2) class probabilities
    over the N anchors, finest head first, row-major within a head."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        widths = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
        cin = 3
        for stage, stage_widths in enumerate(widths):
            for cout in stage_widths:
                layers += [nn.Conv2d(cin, cout, 3, 1, padding=1), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=stage == 2))
        layers += [nn.Conv2d(512, 1024, 3, 1, padding=6, dilation=6), nn.ReLU(inplace=True), nn.Conv2d(1024, 1024, 1, 1), nn.ReLU(inplace=True)]
        self.vgg = nn.ModuleList(layers)
        self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3 = L2Norm(256, 10), L2Norm(512, 8), L2Norm(512, 5)
        self.extras = nn.ModuleList([nn.Conv2d(1024, 256, 1, 1), nn.Conv2d(256, 512, 3, 2, padding=1), nn.Conv2d(512, 128, 1, 1),
                                     nn.Conv2d(128, 256, 3, 2, padding=1)])
        source_widths = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in source_widths])
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1) for i, c in enumerate(source_widths)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """-> offsets (B, N, 4), probabilities (B, N, 2), and each head's (rows, columns)."""
        sources = []
        for start, end, norm in ((0, 16, self.L2Norm3_3), (16, 23, self.L2Norm4_3), (23, 30, self.L2Norm5_3), (30, len(self.vgg), None)):
            for k in range(start, end):
                x = self.vgg[k](x)
            sources.append(x if norm is None else norm(x))
        for k, layer in enumerate(self.extras):
            x = F.relu(layer(x))
            if k % 2 == 1:
                sources.append(x)
        locs, confs, shapes = [], [], []
        for i, source in enumerate(sources):
            conf = self.conf[i](source)
            if i == 0:  # the finest head votes 3 background classes: their max is its background score
                conf = torch.cat([conf[:, :3].max(dim=1, keepdim=True).values, conf[:, 3:]], dim=1)
            locs.append(self.loc[i](source).permute(0, 2, 3, 1).reshape(len(source), -1, 4))
            confs.append(conf.permute(0, 2, 3, 1).reshape(len(source), -1, 2))
            shapes.append((source.shape[2], source.shape[3]))
        return torch.cat(locs, 1), torch.cat(confs, 1).softmax(-1), shapes


def load_sfd_face(path: str | os.PathLike) -> SyncNetS3FD:
    """``sfd_face.pth`` (a plain state dict) read weights-only, strictly, into :class:`SyncNetS3FD`."""
    from motionlab.utils.checkpoint import load_checkpoint, load_state_dict_strict

    net = SyncNetS3FD()
    load_state_dict_strict(net, load_checkpoint(path), str(path))
    return net.eval().requires_grad_(False)


def _anchors(size: tuple[int, int], shapes: list[tuple[int, int]]) -> torch.Tensor:
    """The reference's ``PriorBox``: per head k (stride 4 * 2^k, anchor 16 * 2^k px), (cx, cy, w, h) in [0, 1] units."""
    height, width = size
    rows = []
    for k, (h, w) in enumerate(shapes):
        step, anchor = 4 * 2**k, 16 * 2**k
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        cx, cy = (xs.flatten() + 0.5) / (width / step), (ys.flatten() + 0.5) / (height / step)
        rows.append(torch.stack([cx, cy, torch.full_like(cx, anchor / width), torch.full_like(cy, anchor / height)], 1))
    return torch.cat(rows)


@torch.no_grad()
def sfd_face_boxes(net: SyncNetS3FD, frame: np.ndarray, threshold: float = 0.9, scale: float = FACEDET_SCALE) -> np.ndarray:
    """``S3FD.detect_faces(frame, conf_th=0.9, scales=[0.25])``: the frame resized by ``scale`` (OpenCV bilinear),
    the means subtracted, anchors decoded (variances 0.1, 0.2), NMS at IoU 0.3 over scores above 0.05, the boxes above
    ``threshold`` kept, NMS at IoU 0.1. (H, W, 3) uint8 RGB -> (K, 5) float (x0, y0, x1, y1, score), best first."""
    import cv2
    from torchvision.ops import nms

    height, width = frame.shape[:2]
    small = cv2.resize(frame, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR).astype(np.float32)
    image = torch.from_numpy(small - np.array(SFD_FACE_MEAN, np.float32)).permute(2, 0, 1)[None]
    offsets, probabilities, shapes = net(image)
    anchors = _anchors(image.shape[2:], shapes)
    centres = anchors[:, :2] + offsets[0, :, :2] * 0.1 * anchors[:, 2:]
    sizes = anchors[:, 2:] * torch.exp(offsets[0, :, 2:] * 0.2)
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)
    scores = probabilities[0, :, 1]
    candidates = scores > 0.05
    boxes, scores = boxes[candidates], scores[candidates]
    kept = nms(boxes, scores, 0.3)[:750]
    boxes, scores = boxes[kept] * torch.tensor([width, height, width, height], dtype=torch.float32), scores[kept]
    confident = scores > threshold
    boxes, scores = boxes[confident].double(), scores[confident].double()
    kept = nms(boxes, scores, 0.1)
    return torch.cat([boxes[kept], scores[kept, None]], 1).numpy()


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def face_tracks(detections: list[np.ndarray], min_track: int = MIN_TRACK, num_failed_det: int = NUM_FAILED_DET,
                min_face_size: float = MIN_FACE_SIZE) -> list[dict]:
    """``track_shot``: greedily chain each frame's detections (K, 4+) into tracks, a detection joining when it is at most
    ``num_failed_det`` frames after the track's last and overlaps it by IoU > 0.5; a track longer than ``min_track``
    frames is interpolated linearly over its gaps and kept when its mean box side exceeds ``min_face_size``.
    Returns tracks as ``{"frames": (N,) int, "boxes": (N, 4) float}``."""
    from scipy.interpolate import interp1d

    # tuples, iterated while removed from as the reference does (a face right after a chained one is not looked at
    # in that pass: the reference's list-mutation order, kept so tracks match)
    remaining = [[tuple(float(v) for v in box[:4]) for box in frame] for frame in detections]
    tracks = []
    while True:
        track: list[tuple[int, tuple]] = []
        for index, faces in enumerate(remaining):
            for face in faces:
                if not track:
                    track.append((index, face))
                    faces.remove(face)
                elif index - track[-1][0] <= num_failed_det:
                    if _iou(face, track[-1][1]) > TRACK_IOU:
                        track.append((index, face))
                        faces.remove(face)
                        continue
                else:
                    break
        if not track:
            return tracks
        if len(track) > min_track:
            numbers = np.array([index for index, _ in track])
            boxes = np.array([box for _, box in track])
            frames = np.arange(numbers[0], numbers[-1] + 1)
            boxes = np.stack([interp1d(numbers, boxes[:, j])(frames) for j in range(4)], axis=1)
            if max(np.mean(boxes[:, 2] - boxes[:, 0]), np.mean(boxes[:, 3] - boxes[:, 1])) > min_face_size:
                tracks.append({"frames": frames, "boxes": boxes})


def crop_track(frames: np.ndarray, track: dict, crop_scale: float = CROP_SCALE) -> np.ndarray:
    """``crop_video``: each box's half side and centre median-filtered over 13 frames, the frame padded with grey
    (110), a square of side 2 s (1 + ``crop_scale``) from s above the centre to s (1 + 2 ``crop_scale``) below it,
    resized to 224. -> (N, 224, 224, 3) uint8 RGB, one per track frame."""
    import cv2
    from scipy.signal import medfilt

    boxes = track["boxes"]
    half = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel_size=13)
    cy, cx = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel_size=13), medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel_size=13)
    crops = []
    for i, index in enumerate(track["frames"]):
        bs = half[i]
        pad = int(bs * (1 + 2 * crop_scale))
        padded = np.pad(frames[index], ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=(110, 110))
        my, mx = cy[i] + pad, cx[i] + pad
        face = padded[int(my - bs) : int(my + bs * (1 + 2 * crop_scale)), int(mx - bs * (1 + crop_scale)) : int(mx + bs * (1 + crop_scale))]
        crops.append(cv2.resize(face, (224, 224)))
    return np.stack(crops)
