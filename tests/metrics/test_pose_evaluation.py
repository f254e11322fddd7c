"""FOMM's AKD (face-alignment's FAN) and AED (OpenFace) from the user's files, on structural stand-ins (the release
architectures with random weights, saved as the release files are): known answers, the reference port's quirks, and the
suite recording why the numbers are not comparable to a paper's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionlab.metrics import pose_evaluation as pe


def _astronaut_clip(frames: int = 2) -> np.ndarray:
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[:320, 80:400])
    return np.stack([np.roll(photo, 2 * i, axis=1) for i in range(frames)])


@pytest.fixture(scope="module")
def fan_file(tmp_path_factory):
    """face-alignment's FAN layout with one stack (the release has four; the stack count is read from the keys)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fan") / "2DFAN1-random.pth.tar"
    torch.save(pe.FAN(stacks=1).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def openface_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("openface") / "openface.pth"
    # saved as the 2018 file was: without BatchNorm's num_batches_tracked (PyTorch < 0.4.1)
    torch.save({k: v for k, v in pe.OpenFaceNN4Small2().state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    return path


def test_legacy_lrn_equals_the_ports_running_window():
    """The LRN equals OpenFacePytorch's SpatialCrossMapLRN_temp loop (written out here from its code: a running sum over
    channels that adds c + 2 and drops c - 3 only for c > 3, so channel 0 is never dropped), and differs from
    nn.LocalResponseNorm, which drops it."""
    torch.manual_seed(0)
    x = torch.rand(2, 9, 3, 3) * 3
    size, alpha, beta, k = 5, 1e-4, 0.75, 1.0
    squares, pre = x * x, (size - 1) // 2 + 1
    scale = torch.zeros_like(x)
    scale[:, 0] = squares[:, :pre].sum(1)
    for c in range(1, x.shape[1]):
        scale[:, c] = scale[:, c - 1]
        if c < x.shape[1] - pre + 1:
            scale[:, c] += squares[:, c + pre - 1]
        if c > pre:
            scale[:, c] -= squares[:, c - pre]
    expected = x * (k + alpha / size * scale).pow(-beta)
    assert torch.allclose(pe.legacy_cross_map_lrn(x), expected, atol=1e-7)
    assert not torch.allclose(pe.legacy_cross_map_lrn(x), torch.nn.LocalResponseNorm(size, alpha, beta, k)(x), atol=1e-6)


def test_heatmap_points_known_answer():
    """A single peak at heatmap (x, y) = (20, 30) whose right neighbour is higher moves a quarter pixel right, less half
    a pixel; in a 256-px crop centred on (128, 128) at scale 1.28 (one heatmap pixel = 4 frame pixels) that is frame
    (83, 122); an edge peak is not moved."""
    heatmaps = np.zeros((68, 64, 64), np.float32)
    heatmaps[:, 30, 20], heatmaps[:, 30, 21], heatmaps[:, 30, 19] = 1.0, 0.5, 0.1
    heatmaps[1] = 0
    heatmaps[1, 0, 5] = 1.0
    points = pe.heatmap_points(heatmaps, np.array([128.0, 128.0]), 1.28)
    assert points.dtype == np.int32 and points[0].tolist() == [83, 122]
    assert points[1].tolist() == [(5 + 1 - 0.5) * 4, (0 + 1 - 0.5) * 4]


def test_fan_crop_pads_outside_the_frame_with_zeros():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = pe.fan_crop(image, np.array([10.0, 50.0]), 100 / 200)  # a 100-px square centred 10 px from the left edge
    assert crop.shape == (256, 256, 3) and crop[128, 0].max() == 0 and crop[128, 255].min() == 200


def test_fan_loads_the_release_layout_strictly(fan_file, tmp_path):
    net = pe.load_fan(fan_file)
    assert net.stacks == 1 and net(torch.rand(1, 3, 256, 256)).shape == (1, 68, 64, 64)
    # a DataParallel-saved file (keys under module.) reads the same
    torch.save({"state_dict": {f"module.{k}": v for k, v in torch.load(fan_file).items()}}, tmp_path / "parallel.pth")
    assert pe.load_fan(tmp_path / "parallel.pth").stacks == 1
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(Exception, match="not a face-alignment FAN file"):
        pe.load_fan(tmp_path / "other.pth")


def test_akd_is_the_mean_absolute_coordinate_difference_over_frames_with_both_faces(fan_file):
    """AKD of a clip with itself is 0 (the FAN's landmarks on dlib's boxes); with constructed landmarks it is the mean
    |difference| over the 136 coordinates of the frames where both faces are found, the others counted as missed."""
    metric = pe.FanKeypointDistance(fan_file)
    clip = _astronaut_clip(2)
    metric.update(clip, clip)
    assert metric.frames == 2 and float(metric.compute()) == 0.0

    constructed = pe.FanKeypointDistance(fan_file)
    base = np.zeros((68, 2), np.int32)
    shifted = base + np.array([3, 1], np.int32)
    answers = {"real": [base, base, None], "generated": [shifted, None, base]}
    object.__setattr__(constructed, "landmarks", lambda frames: answers[frames])
    constructed.update("real", "generated")
    assert float(constructed.compute()) == 2.0 and constructed.frames == 1
    assert constructed.missed_generated == 1 and constructed.missed_real == 1


def test_s3fd_boxes_as_face_alignment_reads_them():
    """face-alignment hands S3FD the BGR frame and keeps float boxes; Wav2Lip hands it the RGB frame and truncates: on
    the same weights, face-alignment's box of a frame is Wav2Lip's box of the channel-swapped frame before truncation."""
    from motionlab.models import create_model
    from motionlab.models.wav2lip import detect_faces

    torch.manual_seed(0)
    detector = create_model("s3fd").eval()
    frames = _astronaut_clip(1)[:, ::4, ::4].copy()
    [fa_box] = detect_faces(detector, frames, threshold=0.0, release="face_alignment")
    [w2l_box] = detect_faces(detector, np.ascontiguousarray(frames[..., ::-1]), threshold=0.0)
    assert all(isinstance(v, float) for v in fa_box) and [int(max(v, 0)) for v in fa_box] == list(w2l_box)


def test_openface_aed_known_answers(openface_file):
    """The 2018 file (no num_batches_tracked) loads strictly; embeddings are unit vectors; AED of a clip with itself is
    0, of two different clips the mean squared distance of their embeddings; the input is the BGR frame at 96 px."""
    metric = pe.OpenFaceIdentityDistance(openface_file)
    clip = _astronaut_clip(2)
    inputs = pe.openface_inputs(clip)
    assert inputs.shape == (2, 3, 96, 96) and 0 <= float(inputs.min()) and float(inputs.max()) <= 1
    assert abs(float(inputs[0, 0].mean()) - clip[0, ..., 2].mean() / 255) < 0.02  # channel 0 is blue
    embeddings = metric.embed(clip)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(2, dtype=torch.float64), atol=1e-5)
    metric.update(clip, clip)
    assert float(metric.compute()) == 0.0
    metric.reset()
    other = np.ascontiguousarray(clip[:, ::-1])
    metric.update(clip, other)
    expected = (metric.embed(clip) - metric.embed(other)).square().sum(1).mean()
    assert float(metric.compute()) == pytest.approx(float(expected)) and float(expected) > 0


def test_the_suite_records_why_akd_and_aed_are_not_comparable(fan_file, openface_file, tmp_path):
    """Asked for akd_fan and aed_openface with the stand-ins, the suite reports both; their records say the files are
    not pinned, and AKD without face-alignment's S3FD says its boxes are dlib's; with an S3FD file its record joins."""
    from motionlab.metrics.suite import EvaluationSuite
    from motionlab.models import create_model

    suite = EvaluationSuite(names=["akd_fan", "aed_openface"], networks={"akd_fan": fan_file, "aed_openface": openface_file})
    clip = torch.from_numpy(_astronaut_clip(2)).permute(0, 3, 1, 2).float().div(255)[None]
    suite.update(clip[:, 0], clip, clip)
    values = suite.compute()
    assert float(values["akd_fan"]) == 0.0 and float(values["aed_openface"]) == 0.0 and float(values["akd_fan_frames_missed"]) == 0
    records = suite.weights_records()
    assert not records["akd_fan"]["standard"] and "dlib's HOG detector" in records["akd_fan"]["reason"]
    assert not records["aed_openface"]["standard"] and "published without a hash" in records["aed_openface"]["reason"]
    torch.save(create_model("s3fd").state_dict(), tmp_path / "s3fd.pth")
    with_detector = EvaluationSuite(names=["akd_fan"], networks={"akd_fan": fan_file, "s3fd": tmp_path / "s3fd.pth"})
    record = with_detector.weights_records()["akd_fan"]
    assert record["detector"]["file"].endswith("s3fd.pth") and "face boxes:" in record["reason"]
