"""MuseTalk's inference: its face-box rule, parsing masks and blending on constructed inputs, the avatar's cycle, and a
real talking clip lip-synced end to end with stand-in weights (torch and onnxruntime, the avatar saved and reused)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from conftest import SHARED

from motionlab.data.audio import SAMPLE_RATE, load_wav
from motionlab.data.video_io import open_clip, write_video
from motionlab.inference.musetalk import Avatar, blend, parsing_mask, widened_box
from motionlab.models.face_parsing import LOWER_LIP, NECK, NOSE, SKIN
from motionlab.models.musetalk import landmark_face_box
from motionlab.utils.errors import InputError

REAL = SHARED / "data" / "real"
needs_real = pytest.mark.skipif(not (REAL / "drivers" / "human_talk_d6.mp4").is_file(), reason="../shared/data/real is not present")


def _points(x_range=(10, 50), nose_y=40, chin_y=70) -> np.ndarray:
    points = np.zeros((68, 2), np.float32)
    points[:, 0] = np.linspace(*x_range, 68)
    points[:, 1] = np.linspace(nose_y - 20, chin_y, 68)
    points[29] = (30, nose_y)
    return points


def test_face_box_rule():
    """x over the points, y from the chin up to point 29 plus as far again (bbox_shift moves point 29 down)."""
    assert landmark_face_box(_points()) == (10, 10, 50, 70)
    assert landmark_face_box(_points(), bbox_shift=5) == (10, 20, 50, 70)
    assert landmark_face_box(_points(nose_y=20, chin_y=30)) == (10, 10, 50, 30)
    assert landmark_face_box(_points(x_range=(-4, 50))) is None  # left of the frame: the detector's box is used
    assert widened_box((10, 10, 50, 70)) == (-15, -5, 75, 85)  # centre (30, 40), half-side int(60 // 2 x 1.5)


def test_parsing_masks():
    classes = np.zeros((512, 512), np.uint8)
    classes[100:400, 100:400] = SKIN
    classes[200:260, 230:280] = NOSE
    classes[300:330, 200:300] = LOWER_LIP
    classes[420:480, 150:350] = NECK
    raw, jaw, neck = (parsing_mask(classes, mode) for mode in ("raw", "jaw", "neck"))
    assert set(np.unique(raw)) == {0, 255} and raw[150, 150] == 255 and raw[220, 250] == 0 and raw[450, 200] == 0
    assert neck[450, 200] == 255 and neck[310, 250] == 255
    # jaw: the skin dilated by the cone-and-stem kernel (6 rows down, 16 up), eroded at the cheeks, never the nose
    assert jaw[404, 256] == 255 and raw[404, 256] == 0 and jaw[86, 256] == 255 and jaw[406, 256] == 0
    assert jaw[350, 110] == 0 and raw[350, 110] == 255 and jaw[220, 250] == 0 and jaw[310, 250] == 255
    with pytest.raises(InputError, match="parsing_mode"):
        parsing_mask(classes, "ears")


def test_blend_pastes_through_the_mask():
    frame = np.full((100, 100, 3), 50, np.uint8)
    face = np.full((40, 40, 3), 200, np.uint8)
    box = (30, 30, 70, 70)
    wide = widened_box(box)
    mask = np.zeros((wide[3] - wide[1], wide[2] - wide[0]), np.uint8)
    mask[mask.shape[0] // 2 :] = 255
    out = blend(frame, face, box, mask, wide)
    assert (out[60, 50] == 200).all() and (out[40, 50] == 50).all() and (out[5, 5] == 50).all()


def test_avatar_plays_forward_then_back():
    avatar = Avatar(np.zeros((3, 4, 4, 3), np.uint8), [(0, 0, 1, 1)] * 3, None, [], [], {})
    assert [avatar.position(i) for i in range(8)] == [0, 1, 2, 2, 1, 0, 0, 1] and len(avatar) == 6


def _short_clip(folder, frames: int = 8, seconds: float = 0.6):
    """The first frames of a real talking clip and the first seconds of real speech."""
    clip = open_clip(REAL / "drivers" / "human_talk_d6.mp4")
    video = write_video(folder / "clip.mp4", list(clip.get(list(range(frames)))), fps=clip.fps)
    speech = load_wav(REAL / "audio" / "speech_eng.wav")[: int(seconds * SAMPLE_RATE)]
    soundfile.write(folder / "speech.wav", speech, SAMPLE_RATE)
    return video, folder / "speech.wav", clip.fps


def _frames(path) -> np.ndarray:
    clip = open_clip(path)
    return clip.get(list(range(len(clip))))


@needs_real
def test_a_real_clip_speaks_through_musetalk(musetalk_release, tmp_path):
    """Stand-in weights, a real clip and real speech: video + audio written, one frame per 1/fps of audio, the jaw
    replaced and the eyes kept; the saved avatar is reused (same frames), refused for other settings, and onnxruntime's
    graphs give the eager frames within a few levels."""
    from motionlab.inference.lipsync import lipsync_files

    video, speech, fps = _short_clip(tmp_path)
    avatar = tmp_path / "avatar.npz"
    summary = lipsync_files(str(musetalk_release), str(speech), str(tmp_path / "out.mp4"), video=str(video), runtime="torch", avatar=str(avatar))
    assert summary["frames"] == int(0.6 * int(fps)) and avatar.is_file() and summary["runtime"] == "torch"
    container = __import__("av").open(str(tmp_path / "out.mp4"))
    assert len(container.streams.audio) == 1
    container.close()
    out, source = _frames(tmp_path / "out.mp4"), _frames(video)
    assert len(out) == summary["frames"]
    difference = np.abs(out[0].astype(int) - source[0].astype(int)).mean(axis=2)
    assert difference[330:380, 190:290].mean() > 20 and difference[200:240, 150:330].mean() < 3  # mouth replaced, eyes kept

    again = lipsync_files(str(musetalk_release), str(speech), str(tmp_path / "again.mp4"), video=str(video), runtime="torch", avatar=str(avatar))
    assert again["frames"] == summary["frames"] and np.array_equal(_frames(tmp_path / "again.mp4"), out)
    with pytest.raises(InputError, match="prepared with other parsing_mode"):
        lipsync_files(str(musetalk_release), str(speech), str(tmp_path / "raw.mp4"), video=str(video), runtime="torch", avatar=str(avatar),
                      parsing_mode="raw")

    onnx = lipsync_files(str(musetalk_release), str(speech), str(tmp_path / "onnx.mp4"), video=str(video), runtime="onnx", avatar=str(avatar),
                         onnx=str(tmp_path / "graphs"))
    assert onnx["runtime"] == "onnx" and sorted(p.name for p in (tmp_path / "graphs").iterdir()) == ["musetalk_unet.onnx", "musetalk_vae_decoder.onnx"]
    assert np.abs(_frames(tmp_path / "onnx.mp4").astype(int) - out.astype(int)).mean() < 1.0


@needs_real
def test_bf16_is_gated_by_the_lower_face_psnr(musetalk_release, tmp_path, monkeypatch):
    """precision=bf16 on a CPU with native bf16: the U-Net and decoder in autocast, the lower face within the floor of
    fp32's (reported), refused above an unreachable floor; a CPU without bf16 says so and runs fp32."""
    from motionlab.inference.lipsync import lipsync_files
    from motionlab.utils.machine import CpuProfile

    video, speech, _ = _short_clip(tmp_path, frames=4, seconds=0.3)
    common = dict(video=str(video), avatar=str(tmp_path / "avatar.npz"))
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: CpuProfile("bf16 CPU", 2, ("avx512f", "avx512_bf16")))
    bf16 = lipsync_files(str(musetalk_release), str(speech), str(tmp_path / "bf16.mp4"), precision="bf16", **common)
    assert bf16["runtime"] == "torch" and bf16["precision"]["mode"] == "bf16" and bf16["precision"]["psnr_mouth_db"] > 25
    with pytest.raises(InputError, match="the generated lower face is .* below the 500 dB floor"):
        lipsync_files(str(musetalk_release), str(speech), str(tmp_path / "refused.mp4"), precision="bf16", precision_floor_db=500.0, **common)
    assert not (tmp_path / "refused.mp4").exists()
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: CpuProfile("old CPU", 2, ("avx2",)))
    plain = lipsync_files(str(musetalk_release), str(speech), str(tmp_path / "plain.mp4"), precision="bf16", **common)
    assert plain["precision"]["mode"] == "fp32" and "no bfloat16 arithmetic" in plain["precision"]["reason"]
