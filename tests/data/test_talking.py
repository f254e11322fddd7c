"""Talking-head preprocessing on real files: a video with audio written here, and the shared real clip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
from conftest import SHARED, face_video, run_cli
from PIL import Image

from motionlab.data.landmarks import read_lms, smooth_landmarks, write_lms
from motionlab.data.talking import crop_box, crop_face, resample_indices
from motionlab.data.video_io import ClipError
from motionlab.models.lipsync import CONVENTIONS


def test_resample_to_25_fps():
    assert len(resample_indices(354, 30.0)) == 295  # 11.8 s
    assert resample_indices(6, 30.0).tolist() == [0, 1, 2, 3, 4]  # 0.2 s: frames at 0, 40, 80, 120, 160 ms
    assert resample_indices(50, 25.0).tolist() == list(range(50))


def test_crop_rule_for_68_and_110_points(tmp_path):
    # SyncTalk_2D's rule on its 110 points: contour 1 to contour 31, from nose-bridge point 52 down, square
    points110 = np.zeros((110, 2), np.float32)
    points110[1], points110[31], points110[52] = (100.7, 200), (300.2, 210), (200, 150.9)
    assert crop_box(points110) == (100, 150, 300, 350)  # .lms values truncated, as SyncTalk_2D's int32 cast
    # the same face in dlib's 68: WFLW contour 1 lies between dlib 0 and 1, 31 between 15 and 16; bridge 52 is dlib 28
    points68 = np.zeros((68, 2), np.float32)
    points68[0], points68[1], points68[15], points68[16] = (96, 180), (104, 215), (297, 215), (303, 180)
    points68[28], points68[29] = (200, 150), (200, 171)
    assert crop_box(points68) == (100, 150, 300, 350)
    write_lms(tmp_path / "0.lms", points110)
    assert np.allclose(read_lms(tmp_path / "0.lms"), points110)
    (tmp_path / "bad.lms").write_text("1 2\n3 4\n")
    with pytest.raises(ClipError, match="expected 68 or 110"):
        read_lms(tmp_path / "bad.lms")
    crop, box = crop_face(np.zeros((480, 640, 3), np.uint8), points68, CONVENTIONS["motionlab"])
    assert crop.shape == (320, 320, 3) and box == (100, 150, 300, 350)


def test_crop_past_the_frame_is_padded_or_clipped_by_convention():
    """A box running past the bottom: motionlab pads (edge rows, the face keeps its proportions); SyncTalk_2D clips
    the box, and the resize stretches what is left."""
    image = np.zeros((300, 400, 3), np.uint8)
    image[:, :, 0] = (np.arange(300) % 251).astype(np.uint8)[:, None]  # rows tell where a pixel came from
    points = np.zeros((110, 2), np.float32)
    points[1], points[31], points[52] = (100, 0), (300, 0), (0, 150)  # box (100, 150, 300, 350): 50 rows past the frame
    padded, box = crop_face(image, points, CONVENTIONS["motionlab"])
    clipped, clipped_box = crop_face(image, points, CONVENTIONS["synctalk_2d"])
    assert box == (100, 150, 300, 350) and clipped_box == (100, 150, 300, 300)
    # 328 / 200 = 1.64 crop pixels per frame row: padded row 150 + r / 1.64, clipped row 150 + r / 2.19
    row = 160
    assert abs(int(padded[row, 160, 0]) - (150 + (row + 4) / 1.64)) <= 2
    assert abs(int(clipped[row, 160, 0]) - (150 + (row + 4) * 150 / 328)) <= 2
    assert (padded[300:, :, 0] == 299 % 251).all()  # the padding repeats the last frame row


def test_smoothing_keeps_constant_tracks_and_damps_jitter():
    track = np.zeros((9, 68, 2), np.float32)
    assert np.allclose(smooth_landmarks(track + 5, 3), 5)
    track[4] += 3.0
    assert smooth_landmarks(track, 3)[4].max() == pytest.approx(1.0)


def test_preprocess_a_video_with_audio(tmp_path):
    video = face_video(tmp_path / "talk.mp4", with_face=lambda i: i not in (10, 11))
    out = tmp_path / "talk"
    result = run_cli("motionlab-data", "talking", f"video={video}", f"out={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "preprocess.json").read_text())
    assert summary["frames"] == 25 and summary["source_fps"] == pytest.approx(30.0)
    frames = sorted(out.glob("full_body_img/*.jpg"))
    assert len(frames) == 25 and len(list(out.glob("landmarks/*.lms"))) == 25
    # frames 10 and 11 of the 30 fps source hold no face: output frames showing them reuse the previous landmarks
    assert summary["frames_without_face"] == len(summary["frames_without_face_indices"]) > 0
    points = read_lms(out / "landmarks" / "3.lms")
    assert points.shape == (68, 2) and 0 < points[:, 0].min() and points[:, 0].max() < 320
    audio, rate = soundfile.read(out / "aud.wav")
    assert rate == 16000 and audio.ndim == 1 and abs(len(audio) / rate - 1.0) < 0.05
    with Image.open(frames[0]) as image:
        assert image.size == (320, 320)
    assert (out / "talk.mp4").is_file()


def test_a_clip_without_any_face_is_an_error(tmp_path):
    video = face_video(tmp_path / "empty.mp4", frames=10, with_face=lambda i: False)
    with pytest.raises(ClipError, match="no face was found"):
        from motionlab.data.talking import preprocess_talking_video

        preprocess_talking_video(video, tmp_path / "out")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "real" / "drivers" / "human_talk_d3.mp4").is_file(), reason="../shared/data/real is not present")
def test_preprocess_the_real_talking_clip(tmp_path):
    out = tmp_path / "d3"
    result = run_cli("motionlab-data", "talking", f"video={SHARED / 'data' / 'real' / 'drivers' / 'human_talk_d3.mp4'}", f"out={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "preprocess.json").read_text())
    assert summary["frames"] == 295 and summary["frames_without_face"] == 0
    assert len(list(out.glob("landmarks/*.lms"))) == 295
    assert soundfile.info(out / "aud.wav").samplerate == 16000
    assert summary["audio_peak"] == 0.0  # d3's AAC track decodes to digital silence: recorded, and training on it is refused


def test_toy_talking_clip_layout_and_sync(tmp_path):
    import av

    from motionlab.data.audio import load_wav
    from motionlab.data.talking import mouth_from_audio

    out = tmp_path / "toy"
    result = run_cli("motionlab-data", "synth-talking", f"out={out}", "seconds=2", "size=128", "seed=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(out.glob("full_body_img/*.jpg"))) == 50 and len(list(out.glob("landmarks/*.lms"))) == 50
    box = crop_box(read_lms(out / "landmarks" / "0.lms"))
    assert 0 <= box[0] < box[2] <= 128
    wav = load_wav(out / "aud.wav")
    assert len(wav) == 32000
    mouth = np.load(out / "mouth.npy")
    assert np.allclose(mouth, mouth_from_audio(wav, 50), atol=0.02)  # the mouth follows the audio it was made from
    assert mouth.max() == pytest.approx(1.0) and mouth.min() < 0.2
    with av.open(str(out / "toy_talk.mp4")) as container:
        assert container.streams.video[0].frames == 50 and container.streams.audio
