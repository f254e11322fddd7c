"""LivePortrait's own face models, run from the user's release files through onnxruntime (nothing is downloaded):
InsightFace's SCRFD detector ``det_10g.onnx`` and 106-point model ``2d106det.onnx`` (``buffalo_l``), and the release's
203-point ``landmark.onnx``, as the release's ``Cropper`` runs them (its ``FaceAnalysisDIY`` and ``LandmarkRunner``).

Convention: images are (H, W, 3) uint8 RGB; points are (N, 2) float pixel coordinates, x right, y down, origin at the
top-left pixel (``cv2.warpAffine``'s). InsightFace's models read BGR-ordered blobs with ``swapRB``, i.e. RGB.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from motionlab.geometry.landmarks import face_crop_matrix
from motionlab.utils.onnx_files import check_onnx_file

# where a LivePortrait release keeps them, relative to its pretrained_weights/liveportrait folder (or all beside the .pth)
CROP_MODEL_FILES = {"detector": "det_10g.onnx", "landmarks_106": "2d106det.onnx", "landmarks_203": "landmark.onnx"}


def find_crop_models(folder: str | os.PathLike) -> dict[str, Path] | None:
    """The three crop-model files of a LivePortrait weights folder: in the release layout
    (``pretrained_weights/{liveportrait/landmark.onnx, insightface/models/buffalo_l/*.onnx}``) or all in ``folder``;
    None when any is missing."""
    folder = Path(folder)
    places = [folder, folder.parent / "insightface" / "models" / "buffalo_l"]
    found = {}
    for role, name in CROP_MODEL_FILES.items():
        path = next((place / name for place in places if (place / name).is_file()), None)
        if path is None:
            return None
        found[role] = path
    return found


def _session(path: Path):
    import onnxruntime

    check_onnx_file(path)
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _nms(boxes: np.ndarray, threshold: float) -> list[int]:
    """InsightFace's NMS on (N, 5) [x0, y0, x1, y1, score] (areas with its +1), most confident first."""
    x0, y0, x1, y1, scores = boxes.T
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order, keep = scores.argsort()[::-1], []
    while order.size:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x1[i], x1[order[1:]]) - np.maximum(x0[i], x0[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[order[1:]]) - np.maximum(y0[i], y0[order[1:]]) + 1)
        overlap = w * h / (areas[i] + areas[order[1:]] - w * h)
        order = order[np.where(overlap <= threshold)[0] + 1]
    return keep


class SCRFDDetector:
    """InsightFace's SCRFD (``det_10g.onnx``: 9 outputs, strides 8 / 16 / 32, 2 anchors per place, 5 key points) as
    LivePortrait prepares it: a 512 x 512 input (the image resized into its top-left corner, aspect kept), scores
    from 0.1, NMS at 0.4."""

    strides = (8, 16, 32)

    def __init__(self, path: str | os.PathLike, size: int = 512, threshold: float = 0.1, nms_threshold: float = 0.4):
        self.session = _session(Path(path))
        self.input_name = self.session.get_inputs()[0].name
        outputs = self.session.get_outputs()
        if len(outputs) != 9:
            raise ValueError(f"{path}: expected SCRFD's 9 outputs (scores, boxes, key points at 3 strides), got {len(outputs)}")
        self.output_names = [o.name for o in outputs]
        self.batched = len(outputs[0].shape) == 3
        self.size, self.threshold, self.nms_threshold = size, threshold, nms_threshold

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(N, 5) face boxes [x0, y0, x1, y1, score] of an RGB image after NMS, most confident first."""
        height, width = image.shape[:2]
        if height / width > 1.0:
            new_height, new_width = self.size, int(self.size / (height / width))
        else:
            new_width, new_height = self.size, int(self.size * (height / width))
        scale = new_height / height
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        canvas[:new_height, :new_width] = cv2.resize(image, (new_width, new_height))
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = self.session.run(self.output_names, {self.input_name: blob})
        found = []
        for level, stride in enumerate(self.strides):
            scores, boxes = outputs[level], outputs[level + 3] * stride
            if self.batched:
                scores, boxes = scores[0], boxes[0]
            rows, cols = self.size // stride, self.size // stride
            centres = np.stack(np.mgrid[:rows, :cols][::-1], axis=-1).astype(np.float32).reshape(-1, 2) * stride
            centres = np.repeat(centres, 2, axis=0)  # two anchors per place
            keep = np.where(scores.reshape(-1) >= self.threshold)[0]
            decoded = np.concatenate([centres - boxes[:, :2], centres + boxes[:, 2:]], axis=1)
            found.append(np.concatenate([decoded[keep] / scale, scores.reshape(-1, 1)[keep]], axis=1))
        detections = np.concatenate(found).astype(np.float32)
        detections = detections[detections[:, 4].argsort()[::-1]]
        return detections[_nms(detections, self.nms_threshold)] if len(detections) else detections


def _normalisation(path: Path) -> tuple[float, float]:
    """InsightFace's rule for a landmark model's input normalisation: graphs that subtract and multiply in their first
    nodes take raw pixels (mean 0, std 1), others (pixel - 127.5) / 128."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node[:8]
    batch_norm_input = any(i < 3 and n.name == "bn_data" for i, n in enumerate(nodes))  # normalises in the graph
    subtract = batch_norm_input or any(n.name.startswith(("Sub", "_minus")) for n in nodes)
    multiply = batch_norm_input or any(n.name.startswith(("Mul", "_mul")) for n in nodes)
    return (0.0, 1.0) if subtract and multiply else (127.5, 128.0)


class Landmarks106:
    """InsightFace's ``2d106det.onnx``: 106 points in a 192 px window around a face box (side 1.5 x the box's longer
    side, no rotation), as its ``Landmark.get`` computes them."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        self.session = _session(path)
        model_input = self.session.get_inputs()[0]
        self.input_name, self.size = model_input.name, int(model_input.shape[2])
        self.mean, self.std = _normalisation(path)

    def __call__(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = box[:4]
        scale = self.size / (max(x1 - x0, y1 - y0) * 1.5)
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        matrix = np.array([[scale, 0.0, self.size / 2 - centre[0] * scale], [0.0, scale, self.size / 2 - centre[1] * scale]])
        window = cv2.warpAffine(image, matrix, (self.size, self.size), borderValue=0.0)
        blob = ((window.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)[None]
        points = self.session.run(None, {self.input_name: blob})[0][0].reshape(-1, 2)[-106:].astype(np.float64)
        points = (points + 1) * (self.size // 2)
        inverse = cv2.invertAffineTransform(matrix)
        return points @ inverse[:, :2].T + inverse[:, 2]


class Landmarks203:
    """The release's ``landmark.onnx``: 203 points from a 224 px crop (LivePortrait's crop rule on the 106 points at
    scale 1.5, vy -0.1), input RGB / 255, the points in its third output, in [0, 1] of the crop."""

    size = 224

    def __init__(self, path: str | os.PathLike):
        self.session = _session(Path(path))

    def __call__(self, image: np.ndarray, points_106: np.ndarray) -> np.ndarray:
        matrix = face_crop_matrix(points_106, self.size, scale=1.5, vy_ratio=-0.1)
        crop = cv2.warpAffine(image, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR)
        outputs = self.session.run(None, {"input": (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]})
        points = outputs[2][0].reshape(-1, 2).astype(np.float64) * self.size
        inverse = cv2.invertAffineTransform(matrix)
        return points @ inverse[:, :2].T + inverse[:, 2]


class ReleaseFaceLandmarks:
    """The release's landmark chain on the largest face of an RGB image: SCRFD box -> 106 points -> 203 points.
    ``__call__`` returns ``(points_106, points_203)``, or None when no face is found."""

    name = "insightface106+landmark203"

    def __init__(self, files: dict[str, Path]):
        self.detector = SCRFDDetector(files["detector"])
        self.landmarks_106 = Landmarks106(files["landmarks_106"])
        self.landmarks_203 = Landmarks203(files["landmarks_203"])

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        boxes = self.detector(image)
        if not len(boxes):
            return None
        largest = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
        points_106 = self.landmarks_106(image, largest)
        return points_106, self.landmarks_203(image, points_106)
