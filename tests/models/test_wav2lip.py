"""Wav2Lip: key/shape parity with the release files, the release's loading (``module.`` prefix), S3FD box decoding,
and the inference rules (mel windows, box smoothing) on constructed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED

from motionlab.inference.wav2lip import smoothed_boxes, wav2lip_mel_windows
from motionlab.models import create_model
from motionlab.models.wav2lip import S3FD, detect_faces, expert_sync_input, wav2lip_input
from motionlab.utils.checkpoint import WeightMismatchError

MANIFEST = Path(__file__).parent / "manifests" / "wav2lip.json"


def test_the_manifest_here_is_the_shared_one():
    shared = SHARED / "reference" / "weights" / "wav2lip.json"
    if not shared.is_file():
        pytest.skip("../shared/reference/weights/wav2lip.json is not present (the copy here is checked against it in CI)")
    assert json.loads(MANIFEST.read_text()) == json.loads(shared.read_text())


@pytest.mark.parametrize("variant, entry, parameters", [("wav2lip96", "wav2lip", 36.30), ("syncnet_wav2lip", "syncnet_color_expert", 16.44)])
def test_release_files_load_key_for_key(variant, entry, parameters, tmp_path):
    """The release layout ({'state_dict': {'module.<key>': ...}, 'optimizer', 'global_step'}) loads strictly; the keys
    and shapes are the manifest's; a file of the other network is refused with its keys named."""
    manifest = json.loads(MANIFEST.read_text())[entry]
    model = create_model(variant)
    assert {key: list(value.shape) for key, value in model.state_dict().items()} == manifest
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(parameters, abs=0.01)
    release = {"state_dict": {f"module.{key}": torch.full(shape, 0.5) for key, shape in manifest.items()}, "optimizer": {}, "global_step": 1}
    torch.save(release, tmp_path / "release.pth")
    loaded = create_model(variant, ckpt=tmp_path / "release.pth")
    assert all(bool((value == 0.5).all()) for value in loaded.state_dict().values() if value.is_floating_point())
    other = "syncnet_wav2lip" if variant == "wav2lip96" else "wav2lip96"
    with pytest.raises(WeightMismatchError, match="missing keys"):
        create_model(other, ckpt=tmp_path / "release.pth")


def test_generator_and_expert_inputs():
    torch.manual_seed(0)
    faces = torch.rand(2, 3, 96, 96)
    face = wav2lip_input(faces)
    assert face.shape == (2, 6, 96, 96) and torch.equal(face[:, 3:], faces)
    assert face[:, :3, 48:].abs().sum() == 0 and torch.equal(face[:, :3, :48], faces[:, :, :48])
    window = torch.rand(2, 5, 3, 96, 96)
    stacked = expert_sync_input(window)
    assert stacked.shape == (2, 15, 48, 96) and torch.equal(stacked[:, 3:6], window[:, 1, :, 48:])
    with torch.no_grad():
        audio, faces_embedding = create_model("syncnet_wav2lip").eval()(torch.rand(2, 1, 80, 16), stacked)
    assert torch.allclose(audio.norm(dim=1), torch.ones(2)) and faces_embedding.shape == (2, 512)


def test_mel_windows_follow_the_release_rule():
    """Window i starts at int(i * 80 / fps) while a whole window fits; then the last 16 frames close the list."""
    mel = np.tile(np.arange(50, dtype=np.float32)[:, None], (1, 80))  # frame t holds t
    windows = wav2lip_mel_windows(mel, fps=25.0)
    starts = [int(windows[i, 0, 0, 0]) for i in range(len(windows))]
    # int(i * 3.2) + 16 <= 50 for i <= 10 (start 32); i = 11 (start 35) would run past: the last window starts at 34
    assert starts == [0, 3, 6, 9, 12, 16, 19, 22, 25, 28, 32, 34]
    assert windows.shape == (12, 1, 80, 16) and torch.equal(windows[1, 0, 0], torch.arange(3.0, 19.0))
    assert len(wav2lip_mel_windows(mel, fps=30.0)) == 15  # 80 / 30 per frame: i <= 13 fit (start 34), then the end


def test_box_smoothing_is_the_release_in_place_mean():
    boxes = np.array([[0, 0, 10, 10], [2, 2, 12, 12], [4, 4, 14, 14], [7, 7, 17, 17]], dtype=np.int64)
    smoothed = smoothed_boxes(boxes, 3)
    # i = 0, 1: means of rows i..i+2 (truncated); i = 2, 3: the last 3 rows, row 1 already smoothed
    assert smoothed.tolist() == [[2, 2, 12, 12], [4, 4, 14, 14], [5, 5, 15, 15], [5, 5, 15, 15]]
    assert np.array_equal(smoothed_boxes(boxes, 1), boxes)


def test_s3fd_decodes_its_most_confident_anchor():
    """A detector whose heads are constructed: one anchor of the stride-8 head is confident, with box offsets (1, -1, 0,
    log 2 / 0.2): its box is the anchor (32 px, centre (8 * 3 + 4, 8 * 2 + 4)) moved by 0.1 * 32 * offset, twice as wide."""

    class Constructed(S3FD):
        def forward(self, x):
            outputs = []
            for level in range(6):
                stride = 2 ** (level + 2)
                h, w = x.shape[2] // stride, x.shape[3] // stride
                scores = torch.zeros(x.shape[0], 2, h, w)
                scores[:, 0] = 5.0  # background everywhere
                loc = torch.zeros(x.shape[0], 4, h, w)
                if level == 1:
                    scores[0, 1, 2, 3] = 10.0
                    loc[0, :, 2, 3] = torch.tensor([1.0, -1.0, 0.0, float(np.log(2.0) / 0.2)])
                outputs += [scores, loc]
            return outputs

    boxes = detect_faces(Constructed(), np.zeros((2, 64, 64, 3), np.uint8))
    centre_x, centre_y = 28 + 0.1 * 32, 20 - 0.1 * 32
    width, height = 32, 64
    assert boxes[0] == (int(centre_x - width / 2), int(max(0.0, centre_y - height / 2)), int(centre_x + width / 2), int(centre_y + height / 2))
    assert boxes[1] is None  # nothing above the 0.5 threshold


def test_release_file_exports_to_onnx_with_parity(tmp_path):
    """``motionlab-export onnx ckpt=wav2lip_gan.pth arch=wav2lip96``: the release file (``module.`` keys) exports as one
    graph (inputs ``audio`` (B, 1, 80, 16), ``face`` (B, 6, 96, 96), batch dynamic) that onnxruntime runs like PyTorch,
    tagged with the weights it came from."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from motionlab.inference.export import export_predictor_onnx
    from motionlab.utils.onnx_files import SOURCE_KEY

    torch.manual_seed(0)
    net = create_model("wav2lip96").eval()
    torch.save({"state_dict": {f"module.{key}": value for key, value in net.state_dict().items()}}, tmp_path / "wav2lip_gan.pth")
    result = export_predictor_onnx(str(tmp_path / "wav2lip_gan.pth"), str(tmp_path / "wav2lip.onnx"), arch="wav2lip96")
    assert result["inputs"] == {"audio": ["batch", 1, 80, 16], "face": ["batch", 6, 96, 96]}
    assert max(result["parity"].values()) < 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "wav2lip.onnx"), providers=["CPUExecutionProvider"])
    assert SOURCE_KEY in session.get_modelmeta().custom_metadata_map
    audio, face = torch.randn(3, 1, 80, 16), torch.rand(3, 6, 96, 96)
    (onnx_face,) = session.run(None, {"audio": audio.numpy(), "face": face.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_face, net(audio, face).numpy(), atol=1e-4)
