"""MuseTalk 1.5 (Zhang et al., 2024; TMElyralab, MIT): lip-sync by one-step latent inpainting, and its release format.

The networks are the release's own classes, built from the configs the release folder carries: the U-Net is diffusers'
``UNet2DConditionModel`` with ``musetalkV15/musetalk.json`` (8 latent channels in: the masked face's and the reference
face's VAE latents; Whisper-tiny's 384-d features as cross-attention context), the VAE is diffusers' ``AutoencoderKL``
(``sd-vae/``, stabilityai's sd-vae-ft-mse), the audio encoder is transformers' Whisper encoder (``whisper/``, Whisper
tiny; MuseTalk reads its hidden states, never its decoder) and the face parser the release blends with is BiSeNet
(``face-parse-bisent/79999_iter.pth``, :mod:`motionlab.models.face_parsing`). diffusers is the optional extra
``musetalk`` (``pip install motionlab[musetalk]``).

A release ``models/`` folder reads as one checkpoint (:func:`read_release_folder`); its configs give the variant's
arguments (so a folder of reduced-width stand-ins loads the same way) and :func:`musetalk_checkpoint_filter` maps the
files onto this module's keys strictly: the VAE's pre-0.15 diffusers attention names (``query`` / ``key`` / ``value`` /
``proj_attn``) become ``to_q`` / ``to_k`` / ``to_v`` / ``to_out.0``; Whisper's ``model.encoder.`` keys are taken and
its decoder's dropped; BatchNorm counters absent from 2019 files are filled.

Convention: faces (B, 3, 256, 256) RGB in [-1, 1] (the VAE's range); latents (B, 4, 32, 32) scaled by the VAE's
``scaling_factor``; the U-Net input is (B, 8, 32, 32) = masked face latents then reference latents; the audio
context is (B, 50, D): 10 Whisper frames (0.2 s, :func:`whisper_windows`) x 5 hidden states, plus MuseTalk's
sinusoidal positional encoding (added in :meth:`MuseTalk.forward`). The U-Net runs once, at timestep 0.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from motionlab.models.face_parsing import BiSeNet
from motionlab.models.registry import ExportGraph, register_model
from motionlab.utils.checkpoint import (
    CheckpointFormatError,
    WeightMismatchError,
    load_checkpoint,
    register_folder_layout,
    with_batchnorm_counters,
)

FACE_SIZE, LATENT_SIZE = 256, 32

# musetalkV15/musetalk.json
UNET_SETTINGS = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "cross_attention_dim": 384, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2, "mid_block_scale_factor": 1,
    "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
# sd-vae/config.json (sd-vae-ft-mse)
VAE_SETTINGS = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3,
    "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "scaling_factor": 0.18215,
}
# whisper/config.json (Whisper tiny): the encoder's settings; the rest configures its decoder and generation
WHISPER_SETTINGS = {
    "d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536, "num_mel_bins": 80,
    "max_source_positions": 1500, "activation_function": "gelu", "scale_embedding": False,
}
# whisper/preprocessor_config.json: the log-mel front end (30-s windows of 16 kHz audio, 100 frames/s)
FEATURE_SETTINGS = {"feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400, "padding_value": 0.0}

# Whisper's encoder emits 50 frames per second; MuseTalk's context for a video frame is its frame +-2 video frames of them
WHISPER_FPS = 50
AUDIO_PAD_LEFT, AUDIO_PAD_RIGHT = 2, 2


def positional_encoding(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoids of MuseTalk's ``PositionalEncoding`` (sin on even, cos on odd channels)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    encoding = torch.zeros(length, dim)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency)
    return encoding


def padded_hidden(hidden: torch.Tensor, length: int, fps: float, pad_left: int = AUDIO_PAD_LEFT, pad_right: int = AUDIO_PAD_RIGHT) -> torch.Tensor:
    """(B, T, L, D) hidden states cut to ``length`` frames (the audio's), with MuseTalk's zero padding: ceil(50 / fps) x
    ``pad_left`` frames in front, 3 x that x ``pad_right`` behind."""
    pad = math.ceil(WHISPER_FPS / int(fps))
    hidden = hidden[:, :length]
    return torch.cat([hidden.new_zeros(hidden.shape[0], pad * pad_left, *hidden.shape[2:]), hidden,
                      hidden.new_zeros(hidden.shape[0], pad * 3 * pad_right, *hidden.shape[2:])], dim=1)


def window_start(frame: int, fps: float) -> int:
    """Where video frame ``frame``'s audio context starts in :func:`padded_hidden`'s frames: floor(frame x 50 / fps)."""
    return math.floor(frame * (WHISPER_FPS / int(fps)))


def context_width(pad_left: int = AUDIO_PAD_LEFT, pad_right: int = AUDIO_PAD_RIGHT) -> int:
    """Whisper frames in one video frame's context: 2 (pad_left + pad_right + 1) (10: 0.2 s)."""
    return 2 * (pad_left + pad_right + 1)


def whisper_windows(hidden: torch.Tensor, samples: int, fps: float, sample_rate: int = 16000, pad_left: int = AUDIO_PAD_LEFT,
                    pad_right: int = AUDIO_PAD_RIGHT) -> torch.Tensor:
    """MuseTalk's audio context per video frame (``AudioProcessor.get_whisper_chunk``).

    Convention: ``hidden`` is (1, T, L, D), Whisper's stacked hidden states at 50 frames/s for ``samples`` samples of audio
    (its 30-s windows concatenated); returns (N, 2 (pad_left + pad_right + 1) L, D) for N = floor(seconds x fps) frames.
    The features are cut to floor(seconds x 50) frames and padded (:func:`padded_hidden`); frame i takes
    :func:`context_width` frames from :func:`window_start` (i), flattened frame-major.
    """
    seconds = samples / sample_rate
    frames = math.floor(seconds * int(fps))
    padded = padded_hidden(hidden, math.floor(seconds * WHISPER_FPS), fps, pad_left, pad_right)
    width = context_width(pad_left, pad_right)
    starts = [window_start(i, fps) for i in range(frames)]
    if starts and starts[-1] + width > padded.shape[1]:
        raise ValueError(f"audio of {samples} samples at {fps} fps runs past MuseTalk's padding")
    windows = torch.stack([padded[0, start : start + width] for start in starts]) if starts else padded.new_zeros(0, width, *hidden.shape[2:])
    return windows.flatten(1, 2)


def landmark_face_box(points, bbox_shift: int = 0) -> tuple[int, int, int, int] | None:
    """MuseTalk's face box (x1, y1, x2, y2) of (68, 2) iBUG-68 points (cast to int32 first, as MuseTalk): the points' x
    range, from the lowest point (the chin) up to point 29 (the nose bridge; ``bbox_shift`` moves it down) and as far
    again. None where that box is empty or starts left of the frame (MuseTalk then takes the face detector's box)."""
    points = np.asarray(points).astype(np.int32)
    half = points[29].copy()
    half[1] += bbox_shift
    chin = int(points[:, 1].max())
    upper = max(0, int(half[1]) - (chin - int(half[1])))
    x1, y1, x2, y2 = int(points[:, 0].min()), upper, int(points[:, 0].max()), chin
    if y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0:
        return None
    return x1, y1, x2, y2


def mouth_box(points, box: tuple[int, int, int, int], size: int = FACE_SIZE, padding: int = 10) -> tuple[int, int, int, int]:
    """MuseTalk's mouth box (x0, y0, x1, y1) in the ``size`` crop of face ``box`` (its dataset's ``get_resized_mouth_mask``):
    the lip points (48-66) mapped into the crop, x widened by ``padding`` on each side, y centred on the lips with half
    that width as height; clipped to the crop, at least 2 pixels each way."""
    x1, y1, x2, y2 = box
    lips = (np.asarray(points, dtype=np.float64)[48:67] - [x1, y1]) / [max(1, x2 - x1), max(1, y2 - y1)] * size
    left, right = lips[:, 0].min() - padding, lips[:, 0].max() + padding
    centre, half = (lips[:, 1].min() + lips[:, 1].max()) / 2, (right - left) / 4
    x0, x1_ = int(np.clip(left, 0, size - 2)), int(np.clip(right, 2, size))
    y0, y1_ = int(np.clip(centre - half, 0, size - 2)), int(np.clip(centre + half, 2, size))
    return x0, y0, max(x1_, x0 + 2), max(y1_, y0 + 2)


def face_crops(frames, boxes, size: int = FACE_SIZE):
    """(N, size, size, 3) crops of (x1, y1, x2, y2) boxes, Lanczos-resized (MuseTalk's ``cv2.INTER_LANCZOS4``)."""
    return np.stack([cv2.resize(frame[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_LANCZOS4) for frame, (x1, y1, x2, y2) in zip(frames, boxes)])


def whisper_log_mels(wav, settings: dict | None = None) -> torch.Tensor:
    """(S, mel bins, 3000) log-mels of 16 kHz mono ``wav`` in 30-s windows (the last one zero-padded), by transformers'
    ``WhisperFeatureExtractor`` with ``settings`` (Whisper's preprocessor config; default tiny's)."""
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(**{**FEATURE_SETTINGS, **(settings or {})})
    rate, window = extractor.sampling_rate, extractor.chunk_length * extractor.sampling_rate
    return torch.cat([extractor(wav[start : start + window], sampling_rate=rate, return_tensors="pt").input_features
                      for start in range(0, len(wav), window)])


class MuseTalk(nn.Module):
    """MuseTalk 1.5's networks (see the module's convention); ``*_settings`` are the release configs' values."""

    def __init__(self, unet: dict, vae: dict, whisper: dict, audio_features: dict):
        super().__init__()
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        self.unet = UNet2DConditionModel(**unet)
        self.vae = AutoencoderKL(**vae)
        self.audio_encoder = WhisperEncoder(WhisperConfig(**whisper))
        self.face_parser = BiSeNet()
        self.audio_features = dict(audio_features)
        self.scaling_factor = float(self.vae.config.scaling_factor)

    @property
    def context_dim(self) -> int:
        return self.audio_encoder.config.d_model

    @property
    def context_length(self) -> int:
        """Audio context rows per video frame: 10 Whisper frames x (encoder layers + 1) hidden states (50 for tiny)."""
        return context_width() * (self.audio_encoder.config.encoder_layers + 1)

    def log_mels(self, wav) -> torch.Tensor:
        """(S, mel bins, 3000) Whisper log-mels of 16 kHz ``wav`` in 30-s windows (its feature extractor's settings)."""
        return whisper_log_mels(wav, self.audio_features)

    def speech_windows(self, wav, fps: float) -> torch.Tensor:
        """(N, context_length, D) audio context of the N = floor(seconds x fps) video frames of 16 kHz ``wav``."""
        hidden = self.audio_hidden_states(self.log_mels(wav).to(self.unet.conv_in.weight.device))
        return whisper_windows(hidden, len(wav), fps, self.audio_features["sampling_rate"])

    def audio_hidden_states(self, mels: torch.Tensor) -> torch.Tensor:
        """(S, mel bins, 3000) log-mels of S 30-s windows -> (1, 1500 S, L, D): every hidden state of the encoder
        (the embeddings, each layer's input, the final normed output), windows concatenated in time."""
        states = self.audio_encoder(mels, output_hidden_states=True).hidden_states
        return torch.stack(states, dim=2).flatten(0, 1).unsqueeze(0)

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 256) in [-1, 1] -> (B, 4, 32, 32) scaled latents: the posterior's mode, as MuseTalk trains."""
        return self.vae.encode(faces).latent_dist.mode() * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 4, 32, 32) scaled latents -> (B, 3, 256, 256) in [-1, 1] (not clamped)."""
        return self.vae.decode((1 / self.scaling_factor) * latents).sample

    def forward(self, latents: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B, 8, h, w) masked + reference latents and (B, 50, D) audio windows -> (B, 4, h, w) predicted latents."""
        audio = audio + positional_encoding(audio.shape[1], audio.shape[2]).to(audio)
        timestep = torch.zeros((), dtype=torch.long, device=latents.device)
        return self.unet(latents, timestep, encoder_hidden_states=audio).sample


class _DownBlock(nn.Module):
    """4x4 convolution (spectral-normalised), instance norm except in the first block, LeakyReLU 0.2, 2x2 average pool
    except in the last block (FOMM's ``DownBlock2d``, MuseTalk's copy)."""

    def __init__(self, cin: int, cout: int, norm: bool, pool: bool, sn: bool):
        super().__init__()
        conv = nn.Conv2d(cin, cout, kernel_size=4)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(cout, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        out = nn.functional.leaky_relu(self.norm(out) if self.norm is not None else out, 0.2)
        return nn.functional.avg_pool2d(out, 2) if self.pool else out


class PatchDiscriminator(nn.Module):
    """MuseTalk's stage-2 critic (``musetalk/loss/discriminator.py``, FOMM's pix2pix-style ``Discriminator`` at one
    scale): images (B, 3, H, W) in [-1, 1] -> (the blocks' feature maps, for feature matching; (B, 1, h, w) patch
    scores, least-squares GAN)."""

    def __init__(self, block_expansion: int = 32, num_blocks: int = 4, max_features: int = 512, sn: bool = True):
        super().__init__()
        widths = [3] + [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]
        self.down_blocks = nn.ModuleList(_DownBlock(widths[i], widths[i + 1], norm=i != 0, pool=i != num_blocks - 1, sn=sn) for i in range(num_blocks))
        conv = nn.Conv2d(widths[-1], 1, kernel_size=1)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        features, out = [], image
        for block in self.down_blocks:
            out = block(out)
            features.append(out)
        return features, self.conv(out)


@register_model(family="discriminator")
def musetalk_discriminator(block_expansion: int = 32, num_blocks: int = 4, max_features: int = 512, sn: bool = True) -> PatchDiscriminator:
    """The critic of MuseTalk 1.5's stage 2 (its ``configs/training/stage2.yaml`` sizes); one for the face, one for the mouth."""
    return PatchDiscriminator(block_expansion, num_blocks, max_features, sn)


class _Decoder(nn.Module):
    def __init__(self, model: MuseTalk):
        super().__init__()
        self.model = model

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latents)


def export_graphs(model: MuseTalk, batch: int = 1, generator: torch.Generator | None = None) -> dict[str, ExportGraph]:
    """The U-Net (masked + reference latents, audio windows -> latents) and the VAE decoder (latents -> faces), on
    latents of a random face pair and random audio windows of the Whisper encoder's size."""
    model = model.eval()
    with torch.no_grad():
        faces = torch.rand(2 * batch, 3, FACE_SIZE, FACE_SIZE, generator=generator) * 2 - 1
        latents = model.encode(faces).reshape(batch, 8, LATENT_SIZE, LATENT_SIZE)
        audio = torch.randn(batch, model.context_length, model.context_dim, generator=generator)
        predicted = model(latents, audio)
    return {
        "musetalk_unet": ExportGraph(model, {"latents": latents, "audio": audio}, ("predicted_latents",), 17, tolerance=1e-3),
        "musetalk_vae_decoder": ExportGraph(_Decoder(model), {"latents": predicted}, ("faces",), 17, tolerance=1e-3),
    }


# ---- the release folder ----------------------------------------------------------------------------------------------

# where a MuseTalk models/ folder keeps each file (download_weights.sh), first match wins
RELEASE_FILES = {
    "unet": ["musetalkV15/unet.pth"],
    "unet_config": ["musetalkV15/musetalk.json"],
    "vae": ["sd-vae/diffusion_pytorch_model.safetensors", "sd-vae/diffusion_pytorch_model.bin",
            "sd-vae-ft-mse/diffusion_pytorch_model.safetensors", "sd-vae-ft-mse/diffusion_pytorch_model.bin"],
    "vae_config": ["sd-vae/config.json", "sd-vae-ft-mse/config.json"],
    "whisper": ["whisper/model.safetensors", "whisper/pytorch_model.bin"],
    "whisper_config": ["whisper/config.json"],
    "face_parsing": ["face-parse-bisent/79999_iter.pth"],
}
OPTIONAL_FILES = {"audio_features": ["whisper/preprocessor_config.json"]}


def is_release_folder(folder: Path) -> bool:
    return (folder / "musetalkV15").is_dir()


def _read(path: Path):
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointFormatError(f"{path} is not a readable JSON config ({error})") from error
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return load_checkpoint(path)


def read_release_folder(folder: Path) -> dict:
    """A MuseTalk ``models/`` folder as one checkpoint: ``{part: state dict or config}`` for the parts of
    :data:`RELEASE_FILES` (weights-only reads; JSON configs as plain data). DWPose and the SyncNet are not read."""
    found, missing = {}, []
    for part, candidates in {**RELEASE_FILES, **OPTIONAL_FILES}.items():
        path = next((folder / name for name in candidates if (folder / name).is_file()), None)
        if path is None and part in RELEASE_FILES:
            missing.append(" or ".join(candidates))
        elif path is not None:
            found[part] = _read(path)
    if missing:
        raise CheckpointFormatError(f"{folder} is not a complete MuseTalk 1.5 models/ folder: missing {'; '.join(missing)} "
                                    "(the layout of MuseTalk's download_weights.sh)")
    return found


register_folder_layout(is_release_folder, read_release_folder)


def _recognizes_release(checkpoint: dict) -> bool:
    return isinstance(checkpoint.get("unet_config"), dict) and isinstance(checkpoint.get("unet"), dict)


def _settings(config: dict, allowed: set[str], where: str) -> dict:
    """A release config's values for a constructor taking ``allowed``: diffusers' ``_class_name``-style entries dropped."""
    unknown = sorted(key for key in config if not key.startswith("_") and key not in allowed)
    if unknown:
        raise CheckpointFormatError(f"{where}: unknown settings {unknown}; this is not a config of the network MuseTalk 1.5 uses")
    return {key: value for key, value in config.items() if key in allowed}


def release_args(checkpoint: dict) -> dict:
    """The ``musetalk_v15`` arguments a release folder's configs give (so reduced stand-ins load as the release does)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    def parameters(cls) -> set[str]:
        return set(inspect.signature(cls.__init__).parameters) - {"self"}

    whisper = {key: value for key, value in checkpoint["whisper_config"].items() if key in WHISPER_SETTINGS}
    args = {"unet": _settings(checkpoint["unet_config"], parameters(UNet2DConditionModel), "musetalkV15/musetalk.json"),
            "vae": _settings(checkpoint["vae_config"], parameters(AutoencoderKL), "sd-vae/config.json"),
            "whisper": whisper}
    if isinstance(checkpoint.get("audio_features"), dict):
        args["audio_features"] = {key: value for key, value in checkpoint["audio_features"].items() if key in FEATURE_SETTINGS}
    return args


_VAE_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _vae_keys(state: dict) -> dict:
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if ".attentions." in key and len(parts) >= 2 and parts[-2] in _VAE_ATTENTION:
            key = ".".join(parts[:-2] + [_VAE_ATTENTION[parts[-2]], parts[-1]])
            # the old attention blocks' projections were 1x1 convolutions in some files: (C, C, 1, 1) -> (C, C)
            value = value.flatten(1) if value.dim() == 4 else value
        mapped[key] = value
    return mapped


def _whisper_encoder_keys(state: dict, source: str) -> dict:
    for prefix in ("model.encoder.", "encoder."):
        encoder = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        if encoder:
            return encoder
    raise WeightMismatchError(f"{source}: whisper weights without 'model.encoder.' or 'encoder.' keys (found {sorted(state)[:5]}); "
                              "give Whisper tiny's transformers files (config.json + pytorch_model.bin)")


def musetalk_checkpoint_filter(state: dict, source: str) -> dict:
    """A release folder's parts (:func:`read_release_folder`) as one flat state dict of :class:`MuseTalk`; flat state
    dicts (motionlab's ``net``) pass through."""
    if not _recognizes_release(state):
        return state
    flat = {f"unet.{key}": value for key, value in state["unet"].items()}
    flat.update({f"vae.{key}": value for key, value in _vae_keys(state["vae"]).items()})
    flat.update({f"audio_encoder.{key}": value for key, value in _whisper_encoder_keys(state["whisper"], source).items()})
    flat.update({f"face_parser.{key}": value for key, value in with_batchnorm_counters(state["face_parsing"]).items()})
    return flat


@register_model(family="musetalk", input_size=FACE_SIZE, checkpoint_filter=musetalk_checkpoint_filter, recognizes=_recognizes_release,
                release_args=release_args, export_graphs=export_graphs,
                # the U-Net's attention projections: MuseTalk's cross-attention to the audio and the self-attention
                lora_targets=r"unet\..*\.attn[12]\.to_(q|k|v|out\.0)")
def musetalk_v15(unet: dict | None = None, vae: dict | None = None, whisper: dict | None = None, audio_features: dict | None = None) -> MuseTalk:
    """MuseTalk 1.5 at the release's sizes; each dict overrides single settings of one network (a reduced stand-in).
    Load a release with ``create_model("musetalk_v15", ckpt=MODELS_DIR)`` or ``motionlab-lipsync ckpt=MODELS_DIR``."""
    return MuseTalk({**UNET_SETTINGS, **(unet or {})}, {**VAE_SETTINGS, **(vae or {})}, {**WHISPER_SETTINGS, **(whisper or {})},
                    {**FEATURE_SETTINGS, **(audio_features or {})})
