"""LivePortrait's crop rule and face models: the crop matrix of a constructed landmark set against the hand-computed
release rule, the 203-point openness ratios, and the InsightFace / 203-point runners on stand-in ONNX graphs with the
release models' input and output names and shapes (built here), decoded to known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import liveportrait_crop_models

from motionlab.data.face_models import Landmarks106, Landmarks203, ReleaseFaceLandmarks, SCRFDDetector, find_crop_models
from motionlab.geometry.landmarks import face_crop_matrix, release_eye_ratios, release_lip_ratio

onnxruntime = pytest.importorskip("onnxruntime")


def _constructed_203() -> np.ndarray:
    """203 points: eye centres (80, 100) and (120, 100) at the release's eye indices, lips (90, 160) and (110, 160),
    extremes (70, 80) and (130, 170), everything else at (100, 125)."""
    points = np.full((203, 2), [100.0, 125.0])
    points[[0, 6, 12, 18]] = [80.0, 100.0]
    points[[24, 30, 36, 42]] = [120.0, 100.0]
    points[48], points[66] = [90.0, 160.0], [110.0, 160.0]
    points[100], points[101] = [70.0, 80.0], [130.0, 170.0]
    return points


def test_crop_matrix_is_the_release_rule_hand_computed():
    """Axis from the eyes' centre (100, 100) to the lips' (100, 160): upright. Box 60 x 90 -> side 90 * 2.3 = 207, its
    centre (100, 125) moved up by 0.125 * 207: the crop maps (100, 99.125) to (256, 256) at 512 / 207 pixels per pixel.
    Rolled by 30 degrees about any point, the face crops to the same pixels (the release's rotation flag)."""
    points = _constructed_203()
    s = 512 / 207
    expected = np.array([[s, 0.0, 256 - s * 100.0], [0.0, s, 256 - s * (125.0 - 0.125 * 207)]])
    assert np.allclose(face_crop_matrix(points, 512, 2.3, vx_ratio=0.0, vy_ratio=-0.125), expected, atol=1e-9)
    angle = math.radians(30)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    rolled = (points - [40.0, 70.0]) @ rotation.T + [300.0, 210.0]
    matrix = face_crop_matrix(rolled, 512, 2.3)
    assert np.allclose(rolled @ matrix[:, :2].T + matrix[:, 2], points @ expected[:, :2].T + expected[:, 2], atol=1e-6)
    unrotated = face_crop_matrix(rolled, 512, 2.3, rotate=False)
    assert unrotated[0, 1] == 0 and unrotated[1, 0] == 0
    with pytest.raises(ValueError, match="68, 106, 203"):
        face_crop_matrix(points[:100], 512)


def test_openness_ratios_of_203_points():
    """Eyes: |p6 - p18| / (|p0 - p12| + 1e-6) and |p30 - p42| / |p24 - p36|; lips: |p90 - p102| / |p48 - p66|."""
    points = np.zeros((1, 203, 2))
    points[0, 0], points[0, 12] = [0, 0], [30, 0]
    points[0, 6], points[0, 18] = [15, -3], [15, 3]
    points[0, 24], points[0, 36] = [50, 0], [70, 0]
    points[0, 30], points[0, 42] = [60, -1], [60, 1]
    points[0, 48], points[0, 66] = [20, 40], [60, 40]
    points[0, 90], points[0, 102] = [40, 35], [40, 45]
    assert np.allclose(release_eye_ratios(points), [[6 / (30 + 1e-6), 2 / (20 + 1e-6)]])
    assert np.allclose(release_lip_ratio(points), [10 / (40 + 1e-6)])


@pytest.fixture(scope="module")
def crop_models(tmp_path_factory):
    return liveportrait_crop_models(tmp_path_factory.mktemp("pretrained_weights"))


def test_the_release_layout_is_found(crop_models, tmp_path):
    found = find_crop_models(crop_models)
    assert found is not None and {p.name for p in found.values()} == {"det_10g.onnx", "2d106det.onnx", "landmark.onnx"}
    assert find_crop_models(tmp_path) is None


def test_scrfd_decodes_boxes_in_the_image_frame(crop_models):
    """A 256 x 384 image goes into the top-left of the 512 input at 512 / 384: the firing anchor's centre (12, 10) * 16
    with distances (2, 3, 2, 3) * 16 gives (160, 112, 224, 208) there, divided by that scale in the image."""
    detector = SCRFDDetector(find_crop_models(crop_models)["detector"])
    boxes = detector(np.zeros((256, 384, 3), np.uint8))
    scale = int(512 * 256 / 384) / 256
    assert boxes.shape == (1, 5) and np.allclose(boxes[0], [160 / scale, 112 / scale, 224 / scale, 208 / scale, 0.9], atol=1e-4)


def test_landmark_models_map_their_windows_back(crop_models):
    """106 points: the model's [-1, 1] outputs around the box centre at 1.5 x the box's longer side; 203 points: its
    [0, 1] outputs through the inverse of the release's 224 px crop of the 106 points."""
    files = find_crop_models(crop_models)
    image = np.zeros((300, 400, 3), np.uint8)
    box = np.array([100.0, 80.0, 200.0, 220.0])
    points_106 = Landmarks106(files["landmarks_106"])(image, box)
    outputs = np.linspace(-0.5, 0.5, 212).reshape(106, 2)
    assert np.allclose(points_106, np.array([150.0, 150.0]) + outputs * 0.75 * 140, atol=1e-3)
    points_203 = Landmarks203(files["landmarks_203"])(image, points_106)
    matrix = face_crop_matrix(points_106, 224, scale=1.5, vy_ratio=-0.1)
    crop_points = np.linspace(0.2, 0.8, 406).reshape(203, 2) * 224
    assert np.allclose(points_203 @ matrix[:, :2].T + matrix[:, 2], crop_points, atol=1e-3)
    chained = ReleaseFaceLandmarks(files)(np.zeros((256, 384, 3), np.uint8))
    assert chained is not None and chained[0].shape == (106, 2) and chained[1].shape == (203, 2)
