"""FOMM's AKD and AED as its evaluation code (AliaksandrSiarohin/pose-evaluation) computes them, from the user's files.

- ``akd_fan``: the 68 landmarks of face-alignment's 2D-FAN (``2DFAN4-11f355bf06.pth.tar``; 4 stacked hourglasses)
  on each real and generated frame, the face found by face-alignment's S3FD (``s3fd-619a316812.pth``, also Wav2Lip's
  ``s3fd.pth``) and cropped as ``FaceAlignment.get_landmarks`` crops it (``flip_input=False``); AKD is
  ``cmp_kp.py``'s mean absolute coordinate difference, in pixels, over the frames where both faces are found.
- ``aed_openface``: the 128-d OpenFace embedding (nn4.small2.v1 as ported by thnkim/OpenFacePytorch: ``openface.pth``,
  with that port's cross-map LRN) of each frame, turned BGR and resized to 96 x 96 as ``extract.py`` does; AED is
  ``cmp.py``'s mean over frames of the squared L2 distance between the real and the generated frame's embedding.

Both compare frame ``i`` of the generated clip with frame ``i`` of the real one (FOMM's reconstruction protocol, where
the driver is the real video). Convention: frames are (N, H, W, 3) uint8 RGB; landmarks are (68, 2) pixel (x, y) in
the frame, integers as face-alignment returns them.
"""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from motionlab.utils.errors import InputError

# face-alignment's crop: the box centre moved up by 12 % of its height, scale (w + h) / 195 of a 200-px reference face
FAN_REFERENCE_SCALE, FAN_CENTRE_OFFSET, FAN_CROP = 195.0, 0.12, 256


class FanConvBlock(nn.Module):
    """FAN's residual block: three pre-activated 3x3 convolutions whose outputs (1/2, 1/4, 1/4 of the width) are
    concatenated, plus a (pre-activated 1x1) shortcut when the width changes."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout // 2, 3, 1, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout // 2), nn.Conv2d(cout // 2, cout // 4, 3, 1, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(cout // 4), nn.Conv2d(cout // 4, cout // 4, 3, 1, 1, bias=False)
        self.downsample = (nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, 1, bias=False))
                           if cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        return torch.cat((out1, out2, out3), 1) + (x if self.downsample is None else self.downsample(x))


class FanHourGlass(nn.Module):
    """A depth-4 hourglass of :class:`FanConvBlock` (modules ``b1_L``, ``b2_L``, ``b2_plus_1``, ``b3_L``, as the release names them)."""

    def __init__(self, depth: int, width: int):
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", FanConvBlock(width, width))
            self.add_module(f"b2_{level}", FanConvBlock(width, width))
            self.add_module(f"b3_{level}", FanConvBlock(width, width))
        self.add_module("b2_plus_1", FanConvBlock(width, width))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        lower = self._level(level - 1, lower) if level > 1 else self._modules["b2_plus_1"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """face-alignment's Face Alignment Network (Bulat & Tzimiropoulos, ICCV 2017): a stem to 64 x 64, then ``stacks``
    hourglasses, each predicting 68 heatmaps. ``forward`` maps (B, 3, 256, 256) RGB crops in [0, 1] to the last
    stack's (B, 68, 64, 64) heatmaps. The release's 2D-FAN has 4 stacks; its keys load here one for one."""

    def __init__(self, stacks: int = 4):
        super().__init__()
        self.stacks = stacks
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64)
        self.conv2, self.conv3, self.conv4 = FanConvBlock(64, 128), FanConvBlock(128, 128), FanConvBlock(128, 256)
        for i in range(stacks):
            self.add_module(f"m{i}", FanHourGlass(4, 256))
            self.add_module(f"top_m_{i}", FanConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, 68, 1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(68, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, stride=2)))
        previous = x
        for i in range(self.stacks):
            features = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            features = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](features)))
            heatmaps = self._modules[f"l{i}"](features)
            if i < self.stacks - 1:
                previous = previous + self._modules[f"bl{i}"](features) + self._modules[f"al{i}"](heatmaps)
        return heatmaps


def _read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict read weights-only; face-alignment 1.1 - 1.4's TorchScript archive (``2DFAN4-cd938726ad.zip``)
    by its tensors (the graph is not run: motionlab's own network is)."""
    from motionlab.utils.checkpoint import load_checkpoint

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            torchscript = any(name.endswith("constants.pkl") for name in archive.namelist())
        if torchscript:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    state = load_checkpoint(path)
    return {key.removeprefix("module."): value for key, value in state.get("state_dict", state).items()}


def load_fan(path: str | os.PathLike) -> FAN:
    """face-alignment's 2D-FAN file read strictly into :class:`FAN`, its number of stacks read from the keys (``m0`` ..)."""
    from motionlab.utils.checkpoint import load_state_dict_strict, with_batchnorm_counters

    state = _read_weights(path)
    stacks = sum(1 for key in state if key.startswith("m") and key.endswith(".b1_4.bn1.weight"))
    if stacks == 0:
        raise InputError(f"{path}: not a face-alignment FAN file (no m0.b1_4.* hourglass keys; first keys: {', '.join(list(state)[:5])}); "
                         "give 2DFAN4-11f355bf06.pth.tar")
    net = FAN(stacks)
    load_state_dict_strict(net, with_batchnorm_counters(state), str(path))
    return net.eval().requires_grad_(False)


def _crop_transform(center: np.ndarray, scale: float, resolution: float) -> torch.Tensor:
    """face-alignment's ``transform`` matrix (float32), crop pixels from frame pixels."""
    h = 200.0 * scale
    t = torch.eye(3)
    t[0, 0] = t[1, 1] = resolution / h
    t[0, 2] = resolution * (-center[0] / h + 0.5)
    t[1, 2] = resolution * (-center[1] / h + 0.5)
    return t


def fan_crop(image: np.ndarray, center: np.ndarray, scale: float, resolution: int = FAN_CROP) -> np.ndarray:
    """face-alignment's ``crop``: the square of side 200 * ``scale`` around ``center`` (integer corners, zero outside
    the frame), resized bilinearly (OpenCV) to ``resolution``. (H, W, 3) uint8 -> (resolution, resolution, 3) uint8."""
    import cv2

    inverse = torch.inverse(_crop_transform(center, scale, float(resolution)))
    ul = torch.matmul(inverse, torch.tensor([1.0, 1.0, 1.0]))[:2].int().tolist()
    br = torch.matmul(inverse, torch.tensor([float(resolution), float(resolution), 1.0]))[:2].int().tolist()
    out = np.zeros((br[1] - ul[1], br[0] - ul[0], image.shape[2]), dtype=np.uint8)
    height, width = image.shape[:2]
    new_x, new_y = (max(1, -ul[0] + 1), min(br[0], width) - ul[0]), (max(1, -ul[1] + 1), min(br[1], height) - ul[1])
    old_x, old_y = (max(1, ul[0] + 1), min(br[0], width)), (max(1, ul[1] + 1), min(br[1], height))
    out[new_y[0] - 1 : new_y[1], new_x[0] - 1 : new_x[1]] = image[old_y[0] - 1 : old_y[1], old_x[0] - 1 : old_x[1], :]
    return cv2.resize(out, dsize=(resolution, resolution), interpolation=cv2.INTER_LINEAR)


def heatmap_points(heatmaps: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
    """face-alignment's ``get_preds_fromhm`` on one face's (68, 64, 64) heatmaps: each map's arg-max, moved a quarter
    pixel towards its higher neighbour, less half a pixel, mapped back to the frame and truncated to integers.
    Returns (68, 2) int32 (x, y)."""
    points, size = heatmaps.shape[0], heatmaps.shape[-1]
    flat = heatmaps.reshape(points, -1).argmax(axis=1)
    px, py = flat % size, flat // size
    preds = np.stack([px + 1, py + 1], axis=1).astype(np.float32)
    inside = (px > 0) & (px < size - 1) & (py > 0) & (py < size - 1)
    rows = np.arange(points)[inside]
    x, y = px[inside], py[inside]
    diff = np.stack([heatmaps[rows, y, x + 1] - heatmaps[rows, y, x - 1], heatmaps[rows, y + 1, x] - heatmaps[rows, y - 1, x]], axis=1)
    preds[inside] += np.sign(diff) * 0.25
    preds -= 0.5
    inverse = np.linalg.pinv(_crop_transform(center, scale, float(size)).double().numpy())
    homogeneous = np.concatenate([preds.astype(np.float64), np.ones((points, 1))], axis=1)
    return (homogeneous @ inverse.T)[:, :2].astype(np.int32)


class FanLandmarks:
    """68 landmarks per frame as pose-evaluation's ``extract.py --type face_pose`` gets them: the most confident face
    of face-alignment's S3FD (``detector_path``; without it, dlib's HOG detector's largest face, which face-alignment
    does not use: the landmarks then differ from the protocol's), cropped and passed through the FAN.
    ``detector`` names which."""

    def __init__(self, fan_path: str | os.PathLike, detector_path: str | os.PathLike | None = None):
        self.fan = load_fan(fan_path)
        if detector_path is not None:
            from motionlab.models import load_model

            self.detector, self.detector_name = load_model(detector_path, name="s3fd").eval(), "s3fd"
        else:
            import dlib

            self.detector, self.detector_name = dlib.get_frontal_face_detector(), "dlib_hog"

    def boxes(self, frames: np.ndarray) -> list[tuple | None]:
        if self.detector_name == "s3fd":
            from motionlab.models.wav2lip import detect_faces

            return detect_faces(self.detector, frames, release="face_alignment")
        found = []
        for frame in frames:
            faces = self.detector(np.ascontiguousarray(frame), 0)
            face = max(faces, key=lambda r: r.width() * r.height()) if faces else None
            found.append(None if face is None else (face.left(), face.top(), face.right(), face.bottom()))
        return found

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> list[np.ndarray | None]:
        """(N, H, W, 3) uint8 RGB -> per frame, (68, 2) int32 landmarks or None (no face)."""
        out = []
        for frame, box in zip(frames, self.boxes(frames)):
            if box is None:
                out.append(None)
                continue
            x0, y0, x1, y1 = box
            center = np.array([x1 - (x1 - x0) / 2.0, y1 - (y1 - y0) / 2.0])
            center[1] -= (y1 - y0) * FAN_CENTRE_OFFSET
            scale = (x1 - x0 + y1 - y0) / FAN_REFERENCE_SCALE
            crop = torch.from_numpy(fan_crop(frame, center, scale).transpose(2, 0, 1).astype(np.float32) / 255.0)
            heatmaps = self.fan(crop[None])[0].float().numpy()
            out.append(heatmap_points(heatmaps, center, scale))
        return out


class FanKeypointDistance(Metric):
    """AKD (``akd_fan``): mean |real - generated| over the 68 x 2 landmark coordinates, in pixels, averaged over the
    frames where both faces are found (``cmp_kp.py``). ``update(real, generated)`` takes one clip's (T, H, W, 3)
    uint8 frames; frames without a face are counted in ``missed_real`` / ``missed_generated``."""

    full_state_update = False

    def __init__(self, fan_path: str | os.PathLike, detector_path: str | os.PathLike | None = None, **kwargs):
        super().__init__(**kwargs)
        object.__setattr__(self, "landmarks", FanLandmarks(fan_path, detector_path))
        for name in ("total", "frames", "missed_real", "missed_generated"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, real: np.ndarray, generated: np.ndarray) -> None:
        for a, b in zip(self.landmarks(real), self.landmarks(generated)):
            self.missed_real += a is None
            self.missed_generated += b is None
            if a is not None and b is not None:
                self.total += float(np.mean(np.abs(a.astype(np.float64) - b)))
                self.frames += 1

    def compute(self) -> torch.Tensor:
        return self.total / self.frames.clamp_min(1)


def legacy_cross_map_lrn(x: torch.Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> torch.Tensor:
    """The cross-channel LRN of OpenFacePytorch's ``SpatialCrossMapLRN_temp`` (PyTorch 0.4's ``legacy.nn`` port),
    which pose-evaluation's AED ran: ``x (k + alpha / size * s)^-beta`` with ``s`` channel ``c``'s window of squares
    ``c - size // 2 .. c + size // 2`` -- except that, as in that port (a 0-based translation of Lua's 1-based loop),
    channel 0's square is never dropped from the running window: every channel's window includes it."""
    squares = x * x
    channels, half = x.shape[1], size // 2
    cumulative = squares.cumsum(1)
    index = torch.arange(channels, device=x.device)
    window = cumulative[:, (index + half).clamp(max=channels - 1)]
    start = index - half - 1  # the last square removed from the running sum (channel 0 never is)
    dropped = torch.where((start >= 1).view(1, -1, 1, 1), cumulative[:, start.clamp(min=0)] - cumulative[:, :1], torch.zeros_like(window))
    return x * (k + alpha / size * (window - dropped)).pow(-beta)


class _LegacyLRN(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return legacy_cross_map_lrn(x)


class OpenFaceInception(nn.Module):
    """OpenFace's inception block, in OpenFacePytorch's layout (``seq_list`` branches named ``1_conv``, ``2_bn`` ...):
    a 1x1 reduction then an n x n convolution per kernel, a pooling branch (with a 1x1 projection when given), a 1x1
    branch when given; branch outputs zero-padded to the largest and concatenated."""

    def __init__(self, cin: int, kernels, strides, outputs, reductions, pool: nn.Module):
        super().__init__()
        branches = []
        for kernel, stride, cout, reduce in zip(kernels, strides, outputs, reductions):
            branches.append(nn.Sequential(OrderedDict([
                ("1_conv", nn.Conv2d(cin, reduce, 1)), ("2_bn", nn.BatchNorm2d(reduce)), ("3_relu", nn.ReLU()),
                ("4_conv", nn.Conv2d(reduce, cout, kernel, stride, kernel // 2)), ("5_bn", nn.BatchNorm2d(cout)), ("6_relu", nn.ReLU())])))
        extra = list(reductions[len(kernels):]) + [None, None]
        pooled = OrderedDict([("1_pool", pool)])
        if extra[0] is not None:
            pooled.update([("2_conv", nn.Conv2d(cin, extra[0], 1)), ("3_bn", nn.BatchNorm2d(extra[0])), ("4_relu", nn.ReLU())])
        branches.append(nn.Sequential(pooled))
        if extra[1] is not None:
            branches.append(nn.Sequential(OrderedDict([("1_conv", nn.Conv2d(cin, extra[1], 1)), ("2_bn", nn.BatchNorm2d(extra[1])), ("3_relu", nn.ReLU())])))
        self.seq_list = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.seq_list]
        height, width = max(y.shape[2] for y in outputs), max(y.shape[3] for y in outputs)
        padded = []
        for y in outputs:
            left, top = (width - y.shape[3]) // 2, (height - y.shape[2]) // 2
            padded.append(F.pad(y, (left, width - y.shape[3] - left, top, height - y.shape[2] - top)))
        return torch.cat(padded, 1)


class OpenFaceNN4Small2(nn.Module):
    """OpenFace's nn4.small2.v1 (Amos et al. 2016) as OpenFacePytorch ports it (``netOpenFace``; keys ``layer1`` ..
    ``layer25`` one for one). ``forward`` maps (B, 3, 96, 96) BGR faces in [0, 1] to (B, 128) unit embeddings."""

    def __init__(self):
        super().__init__()
        max_pool, lp_pool = (lambda: nn.MaxPool2d(3, stride=2)), (lambda: nn.LPPool2d(2, 3, stride=3))
        self.layer1, self.layer2 = nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64)
        self.layer4, self.layer5 = nn.MaxPool2d(3, stride=2, padding=1), _LegacyLRN()
        self.layer6, self.layer7 = nn.Conv2d(64, 64, 1), nn.BatchNorm2d(64)
        self.layer9, self.layer10 = nn.Conv2d(64, 192, 3, 1, 1), nn.BatchNorm2d(192)
        self.layer12, self.layer13 = _LegacyLRN(), nn.MaxPool2d(3, stride=2, padding=1)
        self.layer14 = OpenFaceInception(192, (3, 5), (1, 1), (128, 32), (96, 16, 32, 64), max_pool())
        self.layer15 = OpenFaceInception(256, (3, 5), (1, 1), (128, 64), (96, 32, 64, 64), lp_pool())
        self.layer16 = OpenFaceInception(320, (3, 5), (2, 2), (256, 64), (128, 32, None, None), max_pool())
        self.layer17 = OpenFaceInception(640, (3, 5), (1, 1), (192, 64), (96, 32, 128, 256), lp_pool())
        self.layer18 = OpenFaceInception(640, (3, 5), (2, 2), (256, 128), (160, 64, None, None), max_pool())
        self.layer19 = OpenFaceInception(1024, (3,), (1,), (384,), (96, 96, 256), lp_pool())
        self.layer21 = OpenFaceInception(736, (3,), (1,), (384,), (96, 96, 256), max_pool())
        self.layer22 = nn.AvgPool2d(3, stride=1)
        self.layer25 = nn.Linear(736, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer5(self.layer4(F.relu(self.layer2(self.layer1(x)))))
        x = F.relu(self.layer7(self.layer6(x)))
        x = self.layer13(self.layer12(F.relu(self.layer10(self.layer9(x)))))
        for name in ("layer14", "layer15", "layer16", "layer17", "layer18", "layer19", "layer21"):
            x = getattr(self, name)(x)
        x = self.layer25(self.layer22(x).view(-1, 736))
        return x / torch.sqrt(x.square().sum(1, keepdim=True) + 1e-6)


def load_openface(path: str | os.PathLike) -> OpenFaceNN4Small2:
    """OpenFacePytorch's ``openface.pth`` read weights-only and strictly into :class:`OpenFaceNN4Small2`."""
    from motionlab.utils.checkpoint import load_state_dict_strict, with_batchnorm_counters

    net = OpenFaceNN4Small2()
    load_state_dict_strict(net, with_batchnorm_counters(_read_weights(path)), str(path))
    return net.eval().requires_grad_(False)


def openface_inputs(frames: np.ndarray) -> torch.Tensor:
    """pose-evaluation's ``extract_face_id`` input: each (H, W, 3) uint8 RGB frame turned BGR and resized to 96 x 96
    by scikit-image (bilinear, no anti-aliasing: its 0.14 defaults), values in [0, 1]. -> (N, 3, 96, 96) float32."""
    from skimage.transform import resize

    faces = [resize(np.ascontiguousarray(frame[..., ::-1]), (96, 96), order=1, mode="constant", anti_aliasing=False) for frame in frames]
    return torch.from_numpy(np.stack(faces).transpose(0, 3, 1, 2).astype(np.float32))


class OpenFaceIdentityDistance(Metric):
    """AED (``aed_openface``): mean over frames of the squared L2 distance between the OpenFace embeddings of the real
    and the generated frame (``cmp.py``). ``update(real, generated)`` takes one clip's (T, H, W, 3) uint8 frames."""

    full_state_update = False

    def __init__(self, path: str | os.PathLike, batch_size: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.batch_size = batch_size
        object.__setattr__(self, "network", load_openface(path))
        for name in ("total", "frames"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> torch.Tensor:
        return torch.cat([self.network(part) for part in openface_inputs(frames).split(self.batch_size)]).double()

    def update(self, real: np.ndarray, generated: np.ndarray) -> None:
        self.total += (self.embed(real) - self.embed(generated)).square().sum(1).sum()
        self.frames += len(real)

    def compute(self) -> torch.Tensor:
        return self.total / self.frames.clamp_min(1)
