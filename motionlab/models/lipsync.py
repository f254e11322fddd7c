"""Lip-sync networks in the SyncTalk_2D layout: the 328 U-Net, the ``ave`` audio encoder and SyncNet.

Module names follow SyncTalk_2D so state dicts match its checkpoints key for key (556 tensors for the
U-Net, 91 for the audio encoder, 224 for SyncNet). Shapes:

- U-Net: image (B, 6, 320, 320) = reference frame + masked current frame in [0, 1]; audio (B, 32, 16, 16)
  (``ave``), (B, 32, 32, 32) (``hubert``) or (B, 256, 16, 32) (``wenet``) -> (B, 3, 320, 320) in [0, 1].
- Audio encoder: mel window (B, 1, 80, 16) -> (B, 512).
- SyncNet: the 320 x 320 face crop (B, 3, 320, 320) and audio features (U-Net layout) -> two L2-normalised
  (B, 4608) embeddings (512 x 3 x 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from motionlab.models.registry import register_model

AUDIO_SHAPES = {"ave": (32, 16, 16), "hubert": (32, 32, 32), "wenet": (256, 16, 32)}
WIDTHS = (32, 64, 128, 256, 512)


@dataclass(frozen=True)
class LipSyncConvention:
    """How a lip-sync U-Net's inputs and outputs relate to the video and the speech: part of a weight file's format,
    as normalisation is of an image classifier's. Two exist (:data:`CONVENTIONS`):

    - ``motionlab`` (models trained here): RGB; video frame ``i`` (time ``i / fps``) reads encoder output ``i``, whose
      mel window starts at ``int(80 * i / fps)``; its 16-frame context ``[i - 8, i + 8)`` repeats the first / last
      row beyond the ends; ``round(seconds * fps)`` output frames; the template bounces from frame 0; the crop is
      area-resampled to 328 and pasted back bicubically, and a crop box running past the frame is padded (edge
      pixels), never stretched; U-Net outputs are rounded to uint8.
    - ``synctalk_2d`` (SyncTalk_2D's files, as its ``inference_328.py`` runs them): BGR (OpenCV reads the
      frames); one copy of the first and of the last encoder output around the features (so frame ``i`` reads
      encoder output ``i - 1``, and ``aud_ave.npy`` files hold these padded rows), zeros beyond the ends;
      ``int((mel_frames - 16) / 80 * fps) + 2`` encoder windows plus the two padding rows as output frames; the
      bounce starts at template frame 1; cubic resampling both ways, a box past the frame clipped (and so
      stretched); outputs truncated to uint8.

    Args:
        name: the convention's name, stored in checkpoints and feature-file manifests.
        channel_order: ``rgb`` or ``bgr``, the U-Net's image channels.
        feature_edge_rows: copies of the first / last encoder output placed around the per-frame features.
        context_padding: ``edge`` (repeat the end rows) or ``zeros`` for context rows outside the features.
        frame_count: ``duration`` (``round(seconds * fps)``) or ``mel_windows`` (SyncTalk_2D's audio dataset length).
        template_start: the bounce position of output frame 0.
        crop_resize / paste_resize: OpenCV interpolation of the 328 crop and of the paste back (``area``, ``cubic``).
        crop_overflow: ``pad`` or ``clip`` a crop box that runs past the frame.
        quantize: ``round`` or ``floor`` of the U-Net's [0, 1] output to uint8.
    """

    name: str
    channel_order: str
    feature_edge_rows: int
    context_padding: str
    frame_count: str
    template_start: int
    crop_resize: str
    paste_resize: str
    crop_overflow: str
    quantize: str


CONVENTIONS = {
    "motionlab": LipSyncConvention("motionlab", channel_order="rgb", feature_edge_rows=0, context_padding="edge", frame_count="duration",
                                   template_start=0, crop_resize="area", paste_resize="cubic", crop_overflow="pad", quantize="round"),
    "synctalk_2d": LipSyncConvention("synctalk_2d", channel_order="bgr", feature_edge_rows=1, context_padding="zeros", frame_count="mel_windows",
                                     template_start=1, crop_resize="cubic", paste_resize="cubic", crop_overflow="clip", quantize="floor"),
}


def lipsync_convention(name: "str | LipSyncConvention") -> LipSyncConvention:
    """The convention called ``name`` (a convention passes through); unknown names list the known ones."""
    if isinstance(name, LipSyncConvention):
        return name
    if name not in CONVENTIONS:
        raise ValueError(f"unknown lip-sync convention {name!r}; known: {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def to_channel_order(images: torch.Tensor, convention: LipSyncConvention) -> torch.Tensor:
    """(..., 3, H, W) RGB images in the convention's channel order, or back (swapping R and B is its own inverse)."""
    return images.flip(-3) if convention.channel_order == "bgr" else images


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (stride), 1x1 project; optional identity shortcut."""

    def __init__(self, inp: int, oup: int, stride: int = 1, residual: bool = False, expand_ratio: int = 2):
        super().__init__()
        hidden = inp * expand_ratio
        self.residual = residual
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class DoubleConvDW(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        self.double_conv = nn.Sequential(
            InvertedResidual(in_channels, out_channels, stride=stride), InvertedResidual(out_channels, out_channels, residual=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class InConvDW(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.inconv = nn.Sequential(InvertedResidual(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inconv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(DoubleConvDW(in_channels, out_channels, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """2x bilinear upsampling (align_corners=True, as trained), pad to the skip, concatenate, DoubleConvDW."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = DoubleConvDW(in_channels, out_channels, stride=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x, skip], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class AudioConv(nn.Module):
    """Per-mode audio feature trunk: maps the mode's (C, H, W) features to (512, 10, 10)."""

    def __init__(self, mode: str):
        super().__init__()
        c = WIDTHS
        if mode == "wenet":
            self.conv1 = InvertedResidual(c[3], c[3], residual=True)
            self.conv2 = InvertedResidual(c[3], c[3], residual=True)
            self.conv3 = nn.Conv2d(c[3], c[3], kernel_size=3, padding=1, stride=(1, 2))
        else:
            self.conv1 = InvertedResidual(c[0], c[1])
            self.conv2 = InvertedResidual(c[1], c[2])
            self.conv3 = nn.Conv2d(c[2], c[3], kernel_size=3, padding=1, stride=2 if mode == "hubert" else 1)
        self.bn3 = nn.BatchNorm2d(c[3])
        self.conv4 = InvertedResidual(c[3], c[3], residual=True)
        self.conv5 = nn.Conv2d(c[3], c[4], kernel_size=3, padding=3, stride=2)
        self.bn5 = nn.BatchNorm2d(c[4])
        self.conv6 = InvertedResidual(c[4], c[4], residual=True)
        self.conv7 = InvertedResidual(c[4], c[4], residual=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(x))
        x = self.conv4(F.relu(self.bn3(self.conv3(x))))
        x = F.relu(self.bn5(self.conv5(x)))
        return self.conv7(self.conv6(x))


class LipSyncUNet(nn.Module):
    """SyncTalk_2D's 328 U-Net: 5 downsamplings of the 6-channel 320 x 320 input, audio fused at 10 x 10.

    Args:
        mode: audio feature type, ``ave``, ``hubert`` or ``wenet`` (see :data:`AUDIO_SHAPES`).
        in_channels: 6 (reference + masked current frame).
    """

    def __init__(self, mode: str = "ave", in_channels: int = 6):
        super().__init__()
        if mode not in AUDIO_SHAPES:
            raise ValueError(f"lip-sync audio mode must be one of {sorted(AUDIO_SHAPES)}, got {mode!r}")
        self.mode, self.in_channels = mode, in_channels
        c = WIDTHS
        self.audio_model = AudioConv(mode)
        self.fuse_conv = nn.Sequential(DoubleConvDW(c[4] * 2, c[4], stride=1), DoubleConvDW(c[4], c[3], stride=1))
        self.inc = InConvDW(in_channels, c[0])
        self.down1, self.down2, self.down3 = Down(c[0], c[0]), Down(c[0], c[1]), Down(c[1], c[2])
        self.down4, self.down5 = Down(c[2], c[3]), Down(c[3], c[4])
        self.up1, self.up2, self.up3 = Up(c[4], c[3] // 2), Up(c[3], c[2] // 2), Up(c[2], c[1] // 2)
        self.up4, self.up5 = Up(c[1], c[0]), Up(c[1], c[0] // 2)
        self.outc = OutConv(c[0] // 2, 3)

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"U-Net image input must be (B, {self.in_channels}, H, W), got {tuple(image.shape)}")
        if tuple(audio.shape[1:]) != AUDIO_SHAPES[self.mode]:
            raise ValueError(f"U-Net ({self.mode}) audio input must be (B, {', '.join(map(str, AUDIO_SHAPES[self.mode]))}), got {tuple(audio.shape)}")
        x1 = self.inc(image)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x6 = self.fuse_conv(torch.cat([self.down5(x5), self.audio_model(audio)], dim=1))
        x = self.up5(self.up4(self.up3(self.up2(self.up1(x6, x5), x4), x3), x2), x1)
        return torch.sigmoid(self.outc(x))


class ConvBlock(nn.Module):
    """Conv + BatchNorm (+ identity shortcut) + LeakyReLU: Wav2Lip / SyncTalk_2D's ``Conv2d``.

    SyncNet uses slope 0.01; the ``ave`` audio encoder was trained with plain ReLU (slope 0).
    """

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=1, residual: bool = False, negative_slope: float = 0.01):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.residual, self.negative_slope = residual, negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return F.leaky_relu(out + x if self.residual else out, self.negative_slope)


def _res(channels: int, negative_slope: float = 0.01) -> ConvBlock:
    return ConvBlock(channels, channels, 3, 1, 1, residual=True, negative_slope=negative_slope)


class AudioEncoder(nn.Module):
    """The ``ave`` audio encoder: a (B, 1, 80, 16) mel window -> (B, 512) (SyncTalk_2D ``audio_encoder_ave``)."""

    def __init__(self):
        super().__init__()

        def block(cin, cout, kernel, stride=1, padding=1):
            return ConvBlock(cin, cout, kernel, stride, padding, negative_slope=0.0)

        self.audio_encoder = nn.Sequential(
            block(1, 32, 3), _res(32, 0.0), _res(32, 0.0),
            block(32, 64, 3, (3, 1)), _res(64, 0.0), _res(64, 0.0),
            block(64, 128, 3, 3), _res(128, 0.0), _res(128, 0.0),
            block(128, 256, 3, (3, 2)), _res(256, 0.0),
            block(256, 512, 3, 1, 0), block(512, 512, 1, 1, 0),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.ndim != 4 or tuple(mel.shape[1:]) != (1, 80, 16):
            raise ValueError(f"audio encoder input must be (B, 1, 80, 16) mel windows, got {tuple(mel.shape)}")
        return self.audio_encoder(mel).flatten(1)


class SyncNet(nn.Module):
    """SyncTalk_2D's ``syncnet_328``: face and audio encoders to L2-normalised 512-d embeddings."""

    def __init__(self, mode: str = "ave"):
        super().__init__()
        if mode not in AUDIO_SHAPES:
            raise ValueError(f"SyncNet audio mode must be one of {sorted(AUDIO_SHAPES)}, got {mode!r}")
        self.mode = mode
        self.face_encoder = nn.Sequential(
            ConvBlock(3, 32, 7, 1, 3), ConvBlock(32, 32, 5, 2, 1),
            ConvBlock(32, 64, 5, 2, 1), _res(64), _res(64),
            ConvBlock(64, 128, 3, 2, 1), _res(128), _res(128), _res(128),
            ConvBlock(128, 256, 3, 2, 1), _res(256), _res(256),
            ConvBlock(256, 512, 3, 2, 1), _res(512), _res(512),
            ConvBlock(512, 512, 3, 2, 1), ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0),
        )
        # input channels of the audio branch as released (wenet SyncNets take 128 channels, unlike the U-Net)
        channels, stride = {"ave": (32, 1), "hubert": (32, (2, 2)), "wenet": (128, (1, 2))}[mode]
        self.audio_encoder = nn.Sequential(
            ConvBlock(channels, 128, 3, 1, 1), _res(128), _res(128),
            ConvBlock(128, 256, 3, stride, 1), _res(256), _res(256),
            ConvBlock(256, 256, 3, 2, 2), _res(256), _res(256),
            ConvBlock(256, 512, 3, 2, 1), _res(512), _res(512),
            ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0),
        )

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, *AUDIO_SHAPES[mode]) U-Net-layout audio features -> (B, 4608) unit vectors."""
        expected = (AUDIO_SHAPES[self.mode][0] // 2, *AUDIO_SHAPES[self.mode][1:]) if self.mode == "wenet" else AUDIO_SHAPES[self.mode]
        if tuple(audio.shape[1:]) != expected:
            raise ValueError(f"SyncNet ({self.mode}) audio input must be (B, {', '.join(map(str, expected))}), got {tuple(audio.shape)}")
        return F.normalize(self.audio_encoder(audio).flatten(1), p=2, dim=1)

    def embed_face(self, face: torch.Tensor) -> torch.Tensor:
        """(B, 3, 320, 320) face crops in [0, 1] -> (B, 4608) unit vectors."""
        if face.ndim != 4 or face.shape[1] != 3:
            raise ValueError(f"SyncNet face input must be (B, 3, 320, 320), got {tuple(face.shape)}")
        return F.normalize(self.face_encoder(face).flatten(1), p=2, dim=1)

    def forward(self, face: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (audio embedding, face embedding), each (B, D) with unit L2 norm."""
        return self.embed_audio(audio), self.embed_face(face)


class AudioVisualEncoder(nn.Module):
    """The ``ave`` audio encoder paired with a lower-face encoder, trained contrastively so the audio
    embedding carries what the mouth shows. Only ``audio`` is used afterwards (its state dict is
    SyncTalk_2D's ``audio_encoder_ave`` layout under ``audio.``).

    Shapes: mel (B, 1, 80, 16) and face crops (B, 3, H, W) (the lower half (160, 320) of the 320 crop for
    human faces) -> (B, 512) unit vectors each; the face branch pools globally, so any crop size works.
    """

    def __init__(self):
        super().__init__()
        self.audio = AudioEncoder()
        self.face = nn.Sequential(
            ConvBlock(3, 32, 7, 2, 3), ConvBlock(32, 64, 5, (1, 2), 2), _res(64),
            ConvBlock(64, 128, 3, 2, 1), _res(128),
            ConvBlock(128, 256, 3, 2, 1), _res(256),
            ConvBlock(256, 512, 3, 2, 1), _res(512),
            ConvBlock(512, 512, 3, 2, 1), ConvBlock(512, 512, 3, 1, 1), nn.AdaptiveAvgPool2d(1),
        )

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio(mel), p=2, dim=1)

    def embed_face(self, face: torch.Tensor) -> torch.Tensor:
        if face.ndim != 4 or face.shape[1] != 3:
            raise ValueError(f"face input must be (B, 3, H, W), got {tuple(face.shape)}")
        return F.normalize(self.face(face).flatten(1), p=2, dim=1)

    def forward(self, face: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_audio(mel), self.embed_face(face)


def syncnet_audio(audio: torch.Tensor, mode: str) -> torch.Tensor:
    """A SyncNet's audio input from U-Net-layout features: all of it, except for ``wenet``, whose SyncNet reads
    the centre 8 of the 16 context frames (channels 64:192 of 256)."""
    return audio[:, 64:192] if mode == "wenet" else audio


# --- SyncTalk_2D files and the registered variants ---


def synctalk_filter(state: dict, source: str) -> dict:
    """SyncTalk_2D saves plain state dicts, from ``nn.DataParallel`` with a ``module.`` prefix."""
    return {key.removeprefix("module."): value for key, value in state.items()}


def audio_encoder_filter(state: dict, source: str) -> dict:
    """The ``ave`` encoder's weights from SyncTalk_2D's ``audio_visual_encoder.pth`` (the Sequential's own keys)
    or from a motionlab ``lipsync_av_encoder`` run (its ``audio.`` sub-network)."""
    state = synctalk_filter(state, source)
    if any(key.startswith("audio.") for key in state):
        return {key.removeprefix("audio."): value for key, value in state.items() if key.startswith("audio.")}
    if not any(key.startswith("audio_encoder.") for key in state):
        return {f"audio_encoder.{key}": value for key, value in state.items()}
    return state


def _unet_examples(mode: str):
    def example_inputs(batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Image-like random inputs: uniform noise on a 40 x 40 grid, bilinearly upsampled. Per-pixel white noise drives a
        trained U-Net far outside what faces do, where float32 itself is off by ~1e-4 (PyTorch and onnxruntime each
        differ from float64 by ~9e-5 there): parity would measure rounding, not the export. ``ave`` features are
        non-negative (ReLU outputs); HuBERT / WeNet ones are normal."""
        coarse = torch.rand(batch, 6, 40, 40, generator=generator)
        audio = torch.randn(batch, *AUDIO_SHAPES[mode], generator=generator)
        return {"image": F.interpolate(coarse, size=(320, 320), mode="bilinear", align_corners=False),
                "audio": audio.abs() if mode == "ave" else audio}

    return example_inputs


def _mel_examples(batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Log-mel windows in the range the mel front end produces."""
    return {"mel": torch.rand(batch, 1, 80, 16, generator=generator) * 8 - 4}


# LoRA by default adapts every 1x1 convolution (the depthwise 3x3 ones cannot be merged) and the output layer
_UNET = dict(family="lipsync_unet", input_size=320, output_names=("face",), checkpoint_filter=synctalk_filter,
             lora_targets=r".*\.conv\.[06]|outc\.conv", published_settings={"convention": "synctalk_2d"})
_SYNCNET = dict(family="syncnet", input_size=320, output_names=("audio_embedding", "face_embedding"), checkpoint_filter=synctalk_filter)


@register_model(**_UNET, example_inputs=_unet_examples("ave"))
def lipsync_unet328_ave() -> LipSyncUNet:
    """SyncTalk_2D's ``unet_328`` on ``ave`` audio features."""
    return LipSyncUNet("ave")


@register_model(**_UNET, example_inputs=_unet_examples("hubert"))
def lipsync_unet328_hubert() -> LipSyncUNet:
    """SyncTalk_2D's ``unet_328`` on HuBERT audio features."""
    return LipSyncUNet("hubert")


@register_model(**_UNET, example_inputs=_unet_examples("wenet"))
def lipsync_unet328_wenet() -> LipSyncUNet:
    """SyncTalk_2D's ``unet_328`` on WeNet audio features."""
    return LipSyncUNet("wenet")


@register_model(**_SYNCNET)
def syncnet328_ave() -> SyncNet:
    """SyncTalk_2D's ``syncnet_328`` on ``ave`` features."""
    return SyncNet("ave")


@register_model(**_SYNCNET)
def syncnet328_hubert() -> SyncNet:
    """SyncTalk_2D's ``syncnet_328`` on HuBERT features."""
    return SyncNet("hubert")


@register_model(**_SYNCNET)
def syncnet328_wenet() -> SyncNet:
    """SyncTalk_2D's ``syncnet_328`` on WeNet features (its audio branch reads the centre 8 of 16 frames)."""
    return SyncNet("wenet")


@register_model(family="audio_encoder", output_names=("features",), checkpoint_filter=audio_encoder_filter,
                example_inputs=_mel_examples, accepts_from=("lipsync_av_encoder",))
def lipsync_audio_encoder_ave() -> AudioEncoder:
    """SyncTalk_2D's ``ave`` audio encoder: (B, 1, 80, 16) mel windows -> (B, 512)."""
    return AudioEncoder()


@register_model(family="av_encoder", output_names=("audio_embedding", "face_embedding"))
def lipsync_av_encoder() -> AudioVisualEncoder:
    """The ``ave`` audio encoder with a lower-face encoder, trained contrastively (stage 1 of lip-sync)."""
    return AudioVisualEncoder()
