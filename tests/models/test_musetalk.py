"""MuseTalk 1.5: the release folder's files load strictly (full-size manifest on the meta device, reduced stand-ins with
real weights), MuseTalk's audio windowing rule on a constructed feature sequence, and BiSeNet's parsing path.

The manifest (``manifests/musetalk.json``) lists the release files' keys and shapes as their reference code builds them:
diffusers' ``UNet2DConditionModel`` with ``musetalkV15/musetalk.json``, ``AutoencoderKL`` with sd-vae-ft-mse's config under
diffusers 0.4's attention names (the version that config names), transformers' ``WhisperForConditionalGeneration`` with
Whisper tiny's config, and face-parsing.PyTorch's ``BiSeNet`` (MuseTalk's copy).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import MUSETALK_REDUCED, write_musetalk_release

from motionlab.models import load_model
from motionlab.models.musetalk import musetalk_checkpoint_filter, positional_encoding, whisper_windows
from motionlab.models.registry import build
from motionlab.utils.checkpoint import CheckpointFormatError, WeightMismatchError, check_state_dict

MANIFEST = Path(__file__).parent / "manifests" / "musetalk.json"
PARTS = {"unet": "musetalkV15/unet.pth", "vae": "sd-vae/diffusion_pytorch_model.bin", "whisper": "whisper/pytorch_model.bin",
         "face_parsing": "face-parse-bisent/79999_iter.pth"}


def test_the_full_size_release_maps_key_for_key_onto_the_model():
    """Built on the meta device at the release's sizes, the model's keys and shapes are the manifest's after the
    release filter (VAE attention renamed, Whisper's decoder dropped); the U-Net is MuseTalk's 850M parameters."""
    manifest = json.loads(MANIFEST.read_text())
    with torch.device("meta"):
        model = build("musetalk_v15", {})
        release = {part: {key: torch.empty(shape) for key, shape in manifest[name].items()} for part, name in PARTS.items()}
    release["unet_config"] = {}
    flat = musetalk_checkpoint_filter(release, "manifest")
    check_state_dict(model.state_dict(), flat, "MuseTalk", "manifest")
    assert sum(p.numel() for p in model.unet.parameters()) / 1e6 == pytest.approx(849.95, abs=0.01)
    assert sum(p.numel() for p in model.face_parser.parameters()) / 1e6 == pytest.approx(13.3, abs=0.1)
    assert not any(key.startswith("audio_encoder.") and "decoder" in key for key in flat)


def test_a_release_folder_loads_strictly_and_says_what_is_missing(tmp_path):
    folder = write_musetalk_release(tmp_path / "models")
    model = load_model(folder)  # recognised: no arch= needed
    assert model.model_info.name == "musetalk_v15" and model.model_info.args["unet"]["cross_attention_dim"] == 32
    unet = torch.load(folder / "musetalkV15" / "unet.pth", weights_only=True)
    assert all(torch.equal(value, model.unet.state_dict()[key]) for key, value in unet.items())
    vae = torch.load(folder / "sd-vae" / "diffusion_pytorch_model.bin", weights_only=True)
    assert torch.equal(vae["encoder.mid_block.attentions.0.query.weight"], model.vae.encoder.mid_block.attentions[0].to_q.weight)
    whisper = torch.load(folder / "whisper" / "pytorch_model.bin", weights_only=True)
    assert torch.equal(whisper["model.encoder.layers.1.fc2.weight"], model.audio_encoder.layers[1].fc2.weight)

    unet["conv_in.weight"] = unet["conv_in.weight"][:, :4]
    torch.save(unet, folder / "musetalkV15" / "unet.pth")
    with pytest.raises(WeightMismatchError, match=r"unet\.conv_in\.weight: checkpoint \(32, 4, 3, 3\)"):
        load_model(folder)
    (folder / "face-parse-bisent" / "79999_iter.pth").unlink()
    with pytest.raises(CheckpointFormatError, match="missing face-parse-bisent/79999_iter.pth"):
        load_model(folder)


def _constructed_features(frames: int, layers: int = 2) -> torch.Tensor:
    """(1, frames, layers, 1): feature frame t holds t + 1 in every layer (so MuseTalk's zero padding shows as 0)."""
    return (torch.arange(frames, dtype=torch.float32) + 1).view(1, frames, 1, 1).expand(1, frames, layers, 1).clone()


@pytest.mark.parametrize("fps, seconds", [(25, 1.0), (30, 0.7)])
def test_whisper_windows_follow_musetalks_rule(fps, seconds):
    """Frame i reads 10 feature frames from floor(i x 50 / fps), after ceil(50 / fps) x 2 zero frames in front: feature
    t = start - 2 ceil(50 / fps) + k for k = 0..9, zero outside the audio's floor(seconds x 50) frames."""
    samples = int(seconds * 16000)
    hidden = _constructed_features(1500)  # one 30-s Whisper window: more frames than the audio has
    windows = whisper_windows(hidden, samples, fps)
    length, pad = int(seconds * 50), -(-50 // fps)
    assert windows.shape == (int(seconds * fps), 10 * 2, 1)
    for i in range(len(windows)):
        start = int(i * 50 / fps) - 2 * pad
        expected = [float(t + 1) if 0 <= t < length else 0.0 for t in range(start, start + 10) for _layer in range(2)]
        assert windows[i, :, 0].tolist() == expected, i
    assert windows[0, :, 0].tolist()[: 4 * pad] == [0.0] * 4 * pad


def test_positional_encoding_is_sinusoidal():
    encoding = positional_encoding(50, 32)
    assert torch.allclose(encoding[:, 0], torch.sin(torch.arange(50.0))) and torch.allclose(encoding[:, 1], torch.cos(torch.arange(50.0)))
    assert torch.allclose(encoding[3, 30], torch.sin(torch.tensor(3.0) * 10000 ** (-30 / 32)))


def test_the_networks_run_at_musetalks_shapes():
    model = build("musetalk_v15", MUSETALK_REDUCED).eval()
    with torch.no_grad():
        faces = torch.rand(2, 3, 256, 256) * 2 - 1
        latents = model.encode(faces)
        assert latents.shape == (2, 4, 32, 32)
        predicted = model(torch.cat([latents, latents], dim=1), torch.randn(2, 50, 32))
        assert predicted.shape == (2, 4, 32, 32) and model.decode(predicted).shape == (2, 3, 256, 256)
        hidden = model.audio_hidden_states(torch.randn(1, 80, 3000))
        assert hidden.shape == (1, 1500, 3, 32)  # the embeddings, the second layer's input, the normed output
        parsed = model.face_parser(torch.rand(1, 3, 64, 64))
        assert parsed.shape == (1, 19, 64, 64)
