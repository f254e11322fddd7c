"""LSE on videos that are not face-centred: syncnet_python's S3FD (structural stand-in, random weights saved as
``sfd_face.pth`` is), its face tracks and crops (known answers), and SyncNet scoring each track."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionlab.metrics import face_tracks as ft


def test_sfd_face_boxes_from_a_release_layout_file(tmp_path):
    """The release layout loads strictly; boxes come back in full-frame pixels, best first, overlapping by at most the
    final NMS's IoU 0.1, all above the threshold."""
    torch.manual_seed(0)
    torch.save(ft.SyncNetS3FD().state_dict(), tmp_path / "sfd_face.pth")
    net = ft.load_sfd_face(tmp_path / "sfd_face.pth")
    assert {key.split(".")[0] for key in net.state_dict()} == {"vgg", "L2Norm3_3", "L2Norm4_3", "L2Norm5_3", "extras", "loc", "conf"}
    from skimage import data

    boxes = ft.sfd_face_boxes(net, np.ascontiguousarray(data.astronaut()), threshold=0.5)
    assert boxes.ndim == 2 and boxes.shape[1] == 5 and len(boxes) > 0
    assert (np.diff(boxes[:, 4]) <= 0).all() and (boxes[:, 4] > 0.5).all()
    assert boxes[:, 2].max() > 128  # full-frame coordinates, not the quarter-size image's
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert ft._iou(boxes[i], boxes[j]) <= 0.1 + 1e-9


def test_face_tracks_chain_interpolate_and_filter():
    """A face seen on every frame but a 3-frame gap is one track, its gap filled linearly; a second, small face is
    dropped (min_face_size); a face that jumps (IoU <= 0.5) starts a new track, kept only when longer than min_track."""
    detections = []
    for i in range(30):
        faces = []
        if not 10 <= i < 13:
            faces.append([10.0 + i, 20.0, 130.0 + i, 140.0])
        faces.append([300.0, 300.0, 340.0, 340.0])  # 40 px: too small
        detections.append(np.array(faces))
    tracks = ft.face_tracks(detections, min_track=20)
    assert len(tracks) == 1
    [track] = tracks
    assert track["frames"].tolist() == list(range(30))
    assert track["boxes"][11].tolist() == pytest.approx([21.0, 20.0, 141.0, 140.0])
    jumped = [np.array([[0.0, 0.0, 120.0, 120.0]]) if i < 25 else np.array([[200.0, 0.0, 320.0, 120.0]]) for i in range(50)]
    assert [len(t["frames"]) for t in ft.face_tracks(jumped, min_track=20)] == [25, 25]
    assert [len(t["frames"]) for t in ft.face_tracks(jumped, min_track=25)] == []


def test_crop_track_places_the_face_as_the_reference():
    """A box of half side s centred at (cx, cy): the crop spans 2 s (1.4) pixels around cx and from cy - s to
    cy + 1.8 s, so the centre lands at x 112, y 224 / 2.8 = 80 of the 224 crop; outside the frame is grey 110."""
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[198:203, 198:203] = 255  # a marker at the box centre (200, 200)
    track = {"frames": np.arange(15), "boxes": np.tile([[150.0, 150.0, 250.0, 250.0]], (15, 1))}
    crops = ft.crop_track(np.stack([frame] * 15), track)
    assert crops.shape == (15, 224, 224, 3)
    ys, xs = np.nonzero(crops[0, ..., 0] > 128)
    assert abs(xs.mean() - 112) < 2 and abs(ys.mean() - 80) < 2
    edge = ft.crop_track(np.stack([frame] * 15), {"frames": np.arange(15), "boxes": np.tile([[0.0, 0.0, 100.0, 100.0]], (15, 1))})
    assert edge[0, 0, 0].tolist() == [110, 110, 110]


def test_syncnet_scores_each_face_track(tmp_path, monkeypatch):
    """With a face detector, a clip is cut into face tracks (here: a fixed box on the frames that show a face) and each
    track's crops are scored with its own stretch of audio; a clip without a long enough track is counted, not scored."""
    from motionlab.metrics.sync import SyncNetScores, SyncNetV2

    torch.manual_seed(0)
    torch.save(SyncNetV2().state_dict(), tmp_path / "syncnet_v2.model")
    torch.save(ft.SyncNetS3FD().state_dict(), tmp_path / "sfd_face.pth")
    shown = set(range(5, 35))
    monkeypatch.setattr(ft, "sfd_face_boxes", lambda net, frame: np.array([[40.0, 30.0, 200.0, 190.0, 0.99]]) if frame[0, 0, 0] == 1 else np.zeros((0, 5)))
    rng = np.random.default_rng(0)
    frames = (rng.random((40, 240, 240, 3)) * 255).astype(np.uint8)
    frames[:, 0, 0, 0] = [1 if i in shown else 0 for i in range(40)]
    wav = (0.1 * rng.normal(size=40 * 640)).astype(np.float32)
    metric = SyncNetScores(tmp_path / "syncnet_v2.model", max_offset=3, face_detector=tmp_path / "sfd_face.pth", min_track=20)
    [scores] = metric.clip_scores(frames, wav)
    expected = metric.window_scores(ft.crop_track(frames, {"frames": np.arange(5, 35), "boxes": np.tile([[40.0, 30.0, 200.0, 190.0]], (30, 1))}),
                                    wav[5 * 640 : 35 * 640])
    assert scores == expected
    metric.update(frames, wav)
    metric.update(frames[:15], wav[: 15 * 640])  # 10 face frames: shorter than min_track
    values = metric.compute()
    assert float(values["lse_syncnet_tracks"]) == 1 and float(values["lse_syncnet_clips_without_track"]) == 1
    assert float(values["lse_d_syncnet"]) == pytest.approx(expected["lse_d"])
