"""motionlab-lipsync with Wav2Lip release files: a real talking clip and a real portrait lip-synced end to end (stand-in
weights in the release layout), faces found by dlib or by an S3FD file, video and audio written."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from conftest import SHARED, run_cli
from PIL import Image

from motionlab.data.audio import SAMPLE_RATE, load_wav
from motionlab.models import create_model

REAL = SHARED / "data" / "real"
needs_real = pytest.mark.skipif(not (REAL / "drivers" / "human_talk_d6.mp4").is_file(), reason="../shared/data/real is not present")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """wav2lip_gan.pth in the release layout (DataParallel's module. prefix under state_dict), random weights."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("wav2lip")
    state = {f"module.{key}": value for key, value in create_model("wav2lip96").state_dict().items()}
    torch.save({"state_dict": state, "optimizer": {}, "global_step": 0, "global_epoch": 0}, folder / "wav2lip_gan.pth")
    return folder / "wav2lip_gan.pth"


def _speech(path, seconds: float):
    soundfile.write(path, load_wav(REAL / "audio" / "speech_eng.wav")[: int(seconds * SAMPLE_RATE)], SAMPLE_RATE)
    return path


@needs_real
def test_a_real_talking_clip_through_the_cli(release, tmp_path):
    import av

    from motionlab.data.video_io import open_clip

    audio = _speech(tmp_path / "speech.wav", 0.6)
    result = run_cli("motionlab-lipsync", f"ckpt={release}", "arch=wav2lip96", f"video={REAL / 'drivers' / 'human_talk_d6.mp4'}",
                     f"audio={audio}", f"out={tmp_path / 'out.mp4'}", "runtime=torch", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # 0.6 s: 49 mel frames; the clip runs at 30 fps, so windows start at int(80 i / 30) while <= 33, i.e. i = 0..12,
    # then the last one: 14 frames
    assert "wrote 14 frames" in result.stdout and "faces by dlib_hog" in result.stdout
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].frames == 14 and len(container.streams.audio) == 1
    original, synced = open_clip(REAL / "drivers" / "human_talk_d6.mp4").get([3])[0], open_clip(tmp_path / "out.mp4").get([3])[0]
    changed = np.abs(original.astype(int) - synced.astype(int)).max(axis=-1) > 40
    rows, cols = np.nonzero(changed)
    # only the face box changed (codec noise aside): a compact region in the frame's centre
    assert changed.mean() < 0.5 and rows.size and np.ptp(cols) < original.shape[1] * 0.7


@needs_real
def test_a_portrait_image_with_an_s3fd_file(release, tmp_path):
    """A still image speaks (its face held still), its face found by an S3FD file (stand-in weights with gentle heads)."""
    from motionlab.inference.lipsync import lipsync_files

    torch.manual_seed(0)
    detector = create_model("s3fd")
    with torch.no_grad():
        for key, value in detector.state_dict().items():
            if value.dim() > 1:
                value.normal_(0, (2.0 / value[0].numel()) ** 0.5 * (0.02 if "mbox" in key else 1.0))
    torch.save(detector.state_dict(), tmp_path / "s3fd.pth")
    portrait = Image.open(REAL / "portraits" / "portrait_s1.jpg").convert("RGB")
    portrait.resize((160, round(160 * portrait.height / portrait.width))).save(tmp_path / "portrait.png")
    summary = lipsync_files(str(release), str(_speech(tmp_path / "speech.wav", 0.4)), str(tmp_path / "out.mp4"), video=str(tmp_path / "portrait.png"),
                            arch="wav2lip96", runtime="torch", face_detector_ckpt=str(tmp_path / "s3fd.pth"))
    # 0.4 s at 25 fps: 33 mel frames, windows at int(3.2 i) <= 17 for i = 0..5, then the last one
    assert summary["face_detector"] == "s3fd" and summary["frames"] == 7 and summary["runtime"] == "torch"


def test_wav2lip_needs_a_video_and_a_unet_a_template(release, tmp_path):
    from motionlab.inference.lipsync import lipsync_files
    from motionlab.utils.errors import InputError

    soundfile.write(tmp_path / "a.wav", np.zeros(SAMPLE_RATE // 2, np.float32), SAMPLE_RATE)
    with pytest.raises(InputError, match="video=CLIP_OR_IMAGE"):
        lipsync_files(str(release), str(tmp_path / "a.wav"), str(tmp_path / "out.mp4"), template=str(tmp_path), arch="wav2lip96")
