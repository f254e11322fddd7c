"""Landmarks: the face-frame normalisation's invariances, motion signals, the sources behind read_landmarks, and the
toy world's human domain, head pose from landmarks and the face labels written for LivePortrait's training."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED, run_command

from motionlab.data.landmarks import fill_missing, read_landmarks, write_lms
from motionlab.data.synthetic import sample_motion
from motionlab.data.toy_human import DetectorNoise, paired_human_clip, render_human
from motionlab.data.video_io import ClipError
from motionlab.geometry.landmarks import IBUG68, face_frame, motion_signals, normalize_landmarks, pearson


def _clip(frames: int = 30, seed: int = 0, noise: DetectorNoise | None = None) -> tuple[np.ndarray, dict]:
    motion = sample_motion(np.random.default_rng(seed), frames)
    points, _, _ = paired_human_clip("id_0003", motion, noise=noise)
    return points, motion


def _similarity(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T * scale + np.array(shift)


@pytest.mark.parametrize("reference", [0, 7])
def test_normalisation_ignores_translation_scale_and_roll_of_the_whole_clip(reference):
    points, _ = _clip()
    expected = normalize_landmarks(points, reference)
    for angle, scale, shift in [(0.0, 1.0, (40.0, -25.0)), (0.0, 2.5, (0.0, 0.0)), (0.6, 1.0, (0.0, 0.0)), (-0.3, 0.4, (13.0, 90.0))]:
        assert np.allclose(normalize_landmarks(_similarity(points, angle, scale, shift), reference), expected, atol=1e-5)


def test_normalised_reference_frame_has_unit_level_eyes_at_the_origin():
    points, _ = _clip()
    normalised = normalize_landmarks(points, reference=4)
    centre, distance, roll = face_frame(normalised[4:5])
    assert np.allclose(centre, 0, atol=1e-6) and distance[0] == pytest.approx(1.0) and roll[0] == pytest.approx(0.0, abs=1e-6)
    # motion relative to the reference survives: other frames are not all normalised to the same face frame
    assert np.abs(face_frame(normalised)[2]).max() > 0.05


def test_normalisation_of_110_point_files_uses_the_jaw_anchors():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 300, size=(3, 110, 2)).astype(np.float32)
    expected = normalize_landmarks(points)
    assert np.allclose(normalize_landmarks(_similarity(points, 0.4, 1.7, (5.0, 9.0))), expected, atol=1e-4)
    assert np.allclose(expected[0, 1], [-0.5, 0.0], atol=1e-6) and np.allclose(expected[0, 31], [0.5, 0.0], atol=1e-6)


def test_normalisation_refuses_unknown_layouts_and_coincident_anchors():
    with pytest.raises(ValueError, match="known layouts"):
        normalize_landmarks(np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match="coincide"):
        normalize_landmarks(np.zeros((2, 68, 2)))


def test_motion_signals_follow_the_motion_that_drew_the_face():
    points, motion = _clip(frames=60)
    signals = motion_signals(points)
    assert pearson(signals["mouth_opening"], motion["mouth"]) > 0.99
    assert pearson(signals["eye_opening"], -motion["blink"]) > 0.99
    assert pearson(signals["head_roll"], motion["rotation"]) > 0.99
    assert signals["head_roll"][0] == 0.0 and signals["x"][0] == 0.0
    # camera roll is a constant per identity: x / y follow tx / ty up to that rotation and the head's own roll
    assert max(abs(pearson(signals["x"], motion["tx"])), abs(pearson(signals["x"], motion["ty"]))) > 0.8
    assert np.isnan(pearson(np.ones(5), np.arange(5.0)))


def test_opening_signals_are_signed_so_crossed_lips_do_not_read_as_open():
    points, _ = _clip(frames=3)
    crossed = points.copy()
    upper, lower = [61, 62, 63], [67, 66, 65]
    crossed[1, upper], crossed[1, lower] = points[1, lower], points[1, upper]  # a noisy estimate swaps the inner lips
    signals, original = motion_signals(crossed), motion_signals(points)
    assert original["mouth_opening"][1] > 0.03 and signals["mouth_opening"][1] == pytest.approx(-original["mouth_opening"][1], abs=1e-6)
    assert signals["mouth_opening"][2] == pytest.approx(original["mouth_opening"][2])


def test_neutral_frame_has_closed_lips_and_open_eyes_and_is_the_default_reference(caplog):
    """A talking clip that starts mid-word: the neutral frame is the one with closed lips, not the blink that also
    closes them, nor a turned head, nor a frame the detector lost."""
    from motionlab.data.landmarks import LandmarkSequence
    from motionlab.geometry.landmarks import neutral_frame

    motion = {key: np.zeros(8, np.float32) for key in sample_motion(np.random.default_rng(0), 8)}
    motion["scale"][:] = 1.0
    motion["mouth"][:] = [0.8, 0.5, 0.6, 0.3, 0.02, 0.4, 0.0, 0.7]
    motion["blink"][6] = 1.0  # frame 6: lips closed, eyes too
    points, _, _ = paired_human_clip("id_0003", motion, noise=None)
    assert neutral_frame(points) == 4
    turned = points.copy()
    centre = turned[4, 27:36, 0].mean()  # frame 4 seen turned: the image-left side of the face foreshortened
    turned[4, :, 0] = np.where(turned[4, :, 0] < centre, centre + 0.7 * (turned[4, :, 0] - centre), turned[4, :, 0])
    assert neutral_frame(turned) == 3
    found = np.ones(8, bool)
    found[4] = False  # not seen: filled from frame 3, so not a candidate
    assert neutral_frame(points, found) == 3
    sequence = LandmarkSequence(points=points.astype(np.float32), found=np.ones(8, bool), source="talking.npy")
    assert sequence.reference_frame() == 4 and sequence.reference_frame("first") == 0
    with pytest.raises(ValueError, match="'first' or 'neutral'"):
        sequence.reference_frame("middle")
    files = LandmarkSequence(points=np.zeros((3, 110, 2), np.float32), found=np.ones(3, bool), source="lms/")
    assert files.reference_frame() == 0 and "first frame is the reference" in caplog.text  # 110 points: said, not silent


def test_human_domain_is_paired_by_construction_and_differs_per_identity():
    motion = sample_motion(np.random.default_rng(1), 20)
    a, found_a, style_a = paired_human_clip("id_0001", motion)
    b, _, style_b = paired_human_clip("id_0002", motion)
    again, _, _ = paired_human_clip("id_0001", motion)
    assert np.array_equal(np.nan_to_num(a), np.nan_to_num(again)) and style_a != style_b
    clean, found, _ = paired_human_clip("id_0001", motion, noise=None)
    assert found.all() and np.isfinite(clean).all()
    noisy = a[found_a]
    error = np.linalg.norm(noisy - clean[found_a], axis=-1)
    assert 0 < np.median(error) < 3.0  # detector-like jitter of a few pixels at 256 px
    heavy, found_heavy, _ = paired_human_clip("id_0001", sample_motion(np.random.default_rng(2), 200), noise=DetectorNoise(lost=0.2))
    assert 10 < (~found_heavy).sum() < 80 and np.isnan(heavy[~found_heavy]).all()
    image = render_human(clean[0], style_a, 256)
    x, y = np.round(clean[0, 30]).astype(int)  # the nose tip sits on skin
    assert image.shape == (256, 256, 3) and np.abs(image[y, x + 3].astype(int) - np.array(style_a.skin) * 255).max() < 40


def test_head_turns_foreshorten_the_human_face_along_a_bounded_track_of_its_own():
    from dataclasses import replace

    from motionlab.data.synthetic import neutral_motion
    from motionlab.data.toy_human import HeadTurn, head_turn_track, human_landmarks, human_style_for

    style, motion = replace(human_style_for("id_0003"), camera_roll=0.0), neutral_motion()
    frontal = human_landmarks(style, motion)[0]
    assert np.allclose(human_landmarks(style, motion, turn=np.zeros((1, 2)))[0], frontal)
    yawed = human_landmarks(style, motion, turn=np.array([[0.3, 0.0]]))[0]
    assert np.allclose(yawed[:, 1], frontal[:, 1], atol=1e-3)  # about the vertical axis: points move sideways only
    shift = yawed[:, 0] - frontal[:, 0]
    assert shift[30] > 1.0 and shift[0] < -1.0 and shift[16] < -1.0  # the nose tip comes round, the jaw's sides go back
    pitched = human_landmarks(style, motion, turn=np.array([[0.0, 0.25]]))[0]
    assert np.allclose(pitched[:, 0], frontal[:, 0], atol=1e-3)
    rise = pitched[:, 1] - frontal[:, 1]
    assert rise[30] < rise[36:48].mean() - 1.0  # tipped back: the nose tip rises past the eyes

    track = head_turn_track("id_0003", 200, HeadTurn(yaw=0.3, pitch=0.2))
    assert track.shape == (200, 2) and (np.abs(track) <= [0.3, 0.2]).all() and track.std(0).min() > 0.01
    assert np.array_equal(track, head_turn_track("id_0003", 200, HeadTurn(yaw=0.3, pitch=0.2)))
    assert not np.allclose(track, head_turn_track("id_0004", 200, HeadTurn(yaw=0.3, pitch=0.2)))
    assert not np.abs(head_turn_track("id_0003", 200, HeadTurn())).any()
    clip_motion = sample_motion(np.random.default_rng(1), 20)
    turned, _, _ = paired_human_clip("id_0003", clip_motion, noise=None, turn=HeadTurn(yaw=0.3, pitch=0.2))
    still, _, _ = paired_human_clip("id_0003", clip_motion, noise=None)
    assert 0.5 < np.abs(turned - still).max() < 30.0


def test_missing_frames_take_the_previous_detection_and_an_empty_clip_is_an_error():
    points = np.arange(4 * 68 * 2, dtype=np.float32).reshape(4, 68, 2)
    found = np.array([False, True, False, True])
    filled = fill_missing(points, found, "clip.mp4")
    assert np.array_equal(filled[0], points[1]) and np.array_equal(filled[2], points[1]) and np.array_equal(filled[3], points[3])
    with pytest.raises(ClipError, match="clip.mp4: no face was found in any of its 4 frames"):
        fill_missing(points, np.zeros(4, bool), "clip.mp4")


def test_read_landmarks_from_npy_lms_and_toy_clips(tmp_path, toy_world):
    points, _ = _clip(frames=6)
    np.save(tmp_path / "clip.npy", points)
    from_npy = read_landmarks(tmp_path / "clip.npy")
    assert np.allclose(from_npy.points, points) and from_npy.found.all()
    (tmp_path / "lms").mkdir()
    for t in range(12):  # numeric order, not text order (10.lms after 9.lms)
        write_lms(tmp_path / "lms" / f"{t}.lms", points[t % 6] + t)
    from_lms = read_landmarks(tmp_path / "lms", max_frames=11)
    assert len(from_lms) == 11 and np.allclose(from_lms.points[10], points[4] + 10, atol=0.01)
    toy = read_landmarks(toy_world / "id_0000_video")
    assert toy.points.shape == (8, 68, 2) and np.isfinite(toy.points).all() and toy.frame_size == (256, 256)
    np.save(tmp_path / "bad.npy", np.zeros((4, 5, 2)))
    with pytest.raises(ClipError, match=r"bad.npy: shape \(4, 5, 2\)"):
        read_landmarks(tmp_path / "bad.npy")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ClipError, match="not a landmark source"):
        read_landmarks(tmp_path / "notes.txt")


def test_ibug_layout_covers_68_points_once():
    covered = np.concatenate([np.arange(68)[part] for part in IBUG68.values()])
    assert sorted(covered.tolist()) == list(range(68))


def test_mirror_68_swaps_sides_of_a_symmetric_face_onto_itself():
    """A toy character at rest is left-right symmetric: reflecting x and re-indexing by MIRROR_68 gives it back; the
    map is its own inverse and keeps the midline (nose bridge, lip centres) in place."""
    from motionlab.data.synthetic import landmarks68, neutral_motion, sample_style
    from motionlab.geometry.landmarks import MIRROR_68

    style = sample_style(np.random.default_rng(3))
    points = landmarks68(style, {name: float(value[0]) for name, value in neutral_motion().items()}, 64)
    mirrored = points[MIRROR_68].copy()
    mirrored[:, 0] = 63 - mirrored[:, 0]
    assert np.allclose(mirrored, points, atol=1e-4)
    assert np.array_equal(MIRROR_68[MIRROR_68], np.arange(68))
    assert all(MIRROR_68[i] == i for i in (27, 28, 29, 30, 33, 51, 57, 62, 66, 8))
    assert sorted(MIRROR_68) == list(range(68))


@pytest.mark.parametrize("pitch, yaw, roll", [(0.0, 0.0, 0.0), (12.0, -20.0, 8.0), (-15.0, 30.0, -25.0)])
def test_head_pose_from_landmarks_recovers_the_pose_that_projected_them(pitch, yaw, roll):
    """The generic face posed by R = Rz(roll) Ry(yaw) Rx(pitch) and projected through the same pinhole camera gives
    those angles back (LivePortrait's convention: its row-vector R is this one transposed)."""
    import torch

    from motionlab.geometry.head_pose import rotation_matrix
    from motionlab.geometry.landmarks import POSE_MODEL, POSE_MODEL_POINTS, head_pose_from_landmarks

    rotation = rotation_matrix(*(torch.tensor([a], dtype=torch.float64) for a in (pitch, yaw, roll)))[0].numpy().T
    camera_points = POSE_MODEL @ rotation.T + np.array([0.0, 0.0, 1500.0])
    width, height = 640, 480
    projected = camera_points[:, :2] / camera_points[:, 2:] * width + np.array([width / 2, height / 2])
    points = np.full((1, 68, 2), 300.0)
    points[0, list(POSE_MODEL_POINTS)] = projected
    assert head_pose_from_landmarks(points, (height, width))[0] == pytest.approx([pitch, yaw, roll], abs=0.05)


def test_head_pose_of_a_rolled_face_turns_with_the_eye_line():
    """On a frontal 2-D face, the estimated roll follows the eye line's angle (face_frame's sign: clockwise on screen)."""
    from motionlab.geometry.landmarks import POSE_MODEL, POSE_MODEL_POINTS, face_frame, head_pose_from_landmarks

    flat = POSE_MODEL[:, :2] / 1500.0 * 640 + np.array([320.0, 240.0])
    points = np.full((68, 2), 320.0)
    points[list(POSE_MODEL_POINTS)] = flat
    points[36:42], points[42:48] = flat[2], flat[3]  # eye centres at the outer corners (the eye line)
    angle = np.radians(15.0)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rolled = (points - [320.0, 240.0]) @ turn.T + [320.0, 240.0]
    assert np.degrees(face_frame(rolled[None])[2][0]) == pytest.approx(15.0)
    assert head_pose_from_landmarks(rolled[None], (480, 640))[0][2] == pytest.approx(15.0, abs=1.0)


@pytest.mark.skipif(not (SHARED / "data" / "real" / "drivers" / "human_d0.mp4").is_file(), reason="needs ../shared/data/real")
def test_face_labels_of_a_real_clip_are_written_and_served(tmp_path):
    """motionlab-data face-labels on a real talking clip (its first 10 frames as a video of their own): dlib landmarks
    and a near-frontal PnP head pose beside the video, which data.face_labels then serves with every sample."""
    import torch

    from motionlab.data.datasets import PortraitVideoDataset, discover_clips, face_labels_path
    from motionlab.data.video_io import open_clip, write_video

    clip = open_clip(SHARED / "data" / "real" / "drivers" / "human_d0.mp4")
    root = tmp_path / "clips"
    write_video(root / "d0.mp4", clip.get(range(10)))
    code, out, err = run_command(["motionlab-data", "face-labels", f"root={root}"])
    assert code == 0, err
    labels = np.load(face_labels_path(root / "d0.mp4"))
    assert "0 without a face" in out and labels["landmarks"].shape == (10, 68, 2) and labels["found"].all()
    assert np.all(np.abs(labels["head_pose"]) < 35.0)  # a person talking to the camera
    sample = PortraitVideoDataset(discover_clips(root)[1], image_size=64, face_labels=True)[4]
    served = sample["driver_landmarks"]
    assert served.shape == (68, 2) and torch.all((served > 0) & (served < 63))
    assert torch.equal(sample["driver_head_pose"], torch.from_numpy(labels["head_pose"][4]))
