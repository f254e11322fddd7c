"""Lip-sync networks: key/shape parity with SyncTalk_2D checkpoints, forward shapes, clear input errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SHARED

from motionlab.models import create_model
from motionlab.models.lipsync import AUDIO_SHAPES

MANIFEST = SHARED / "reference" / "weights" / "synctalk2d.json"
needs_manifest = pytest.mark.skipif(not MANIFEST.is_file(), reason="../shared/reference/weights/synctalk2d.json is not present")


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@needs_manifest
@pytest.mark.parametrize("mode", ["ave", "hubert", "wenet"])
def test_unet_and_syncnet_match_synctalk2d(mode):
    reference = json.loads(MANIFEST.read_text())
    unet = create_model(f"lipsync_unet328_{mode}")
    assert _shapes(unet) == reference[f"unet_328_{mode}"] and len(reference[f"unet_328_{mode}"]) == 556
    expected_params = 12.99e6 if mode == "wenet" else 12.19e6
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(expected_params, rel=0.005)
    syncnet = create_model(f"syncnet328_{mode}")
    assert _shapes(syncnet) == reference[f"syncnet_328_{mode}"] and len(reference[f"syncnet_328_{mode}"]) == 224


@needs_manifest
@pytest.mark.parametrize("name", ["unet_328_ave", "syncnet_328_hubert", "audio_encoder_ave"])
def test_synctalk2d_files_load_through_create_model(name, tmp_path):
    """Files in SyncTalk_2D's layouts (DataParallel's ``module.`` prefix; the encoder's bare Sequential keys) load
    through the registered variant's checkpoint filter."""
    reference = json.loads(MANIFEST.read_text())[name]
    prefix = "" if name == "audio_encoder_ave" else "module."
    keys = {k.removeprefix("audio_encoder.") if name == "audio_encoder_ave" else k: shape for k, shape in reference.items()}
    torch.save({prefix + key: torch.full(shape, 0.25) for key, shape in keys.items()}, tmp_path / "release.pth")
    variant = {"unet_328_ave": "lipsync_unet328_ave", "syncnet_328_hubert": "syncnet328_hubert", "audio_encoder_ave": "lipsync_audio_encoder_ave"}[name]
    model = create_model(variant, ckpt=tmp_path / "release.pth")
    assert all(bool((v == 0.25).all()) for v in model.state_dict().values() if v.is_floating_point())


@needs_manifest
def test_audio_encoder_matches_synctalk2d():
    reference = json.loads(MANIFEST.read_text())["audio_encoder_ave"]
    encoder = create_model("lipsync_audio_encoder_ave")
    assert _shapes(encoder) == reference and len(reference) == 91
    assert sum(p.numel() for p in encoder.parameters()) == pytest.approx(2.81e6, rel=0.005)


@pytest.mark.parametrize("mode", ["ave", "hubert", "wenet"])
def test_unet_forward_shapes(mode):
    unet = create_model(f"lipsync_unet328_{mode}").eval()
    with torch.no_grad():
        out = unet(torch.rand(1, 6, 320, 320), torch.rand(1, *AUDIO_SHAPES[mode]))
    assert out.shape == (1, 3, 320, 320) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match=r"audio input must be \(B, "):
        unet(torch.rand(1, 6, 320, 320), torch.rand(1, 8, 16, 16))


def test_audio_encoder_and_syncnet_forward():
    encoder = create_model("lipsync_audio_encoder_ave").eval()
    with torch.no_grad():
        assert encoder(torch.rand(2, 1, 80, 16)).shape == (2, 512)
    with pytest.raises(ValueError, match=r"\(B, 1, 80, 16\)"):
        encoder(torch.rand(2, 1, 80, 12))
    syncnet = create_model("syncnet328_ave").eval()
    with torch.no_grad():
        audio, face = syncnet(torch.rand(2, 3, 320, 320), torch.rand(2, 32, 16, 16))  # the 320 crop, as SyncTalk_2D
    assert audio.shape == face.shape == (2, 512 * 3 * 3)
    assert torch.allclose(audio.norm(dim=1), torch.ones(2), atol=1e-5)
