"""Wav2Lip (Prajwal et al., ACM MM 2020): its generator, its expert lip-sync discriminator, the S3FD face detector its
inference crops with, and the release format beside them.

Module and parameter names follow the release, so ``wav2lip96`` matches ``wav2lip.pth`` / ``wav2lip_gan.pth`` (the GAN
variant trains the same generator), ``syncnet_wav2lip`` matches ``lipsync_expert.pth`` and ``s3fd`` matches
``s3fd.pth``, key for key. :func:`wav2lip_checkpoint_filter` reads the release files (a ``state_dict`` entry whose keys
carry DataParallel's ``module.`` prefix).

Convention: faces are (B, 3, 96, 96) in [0, 1], **BGR** (the release reads frames with OpenCV); the generator's face
input is the crop with its lower half zeroed, then the crop itself (6 channels); audio is one (B, 1, 80, 16)
mel window (:mod:`motionlab.data.audio`). The expert SyncNet reads the lower halves of 5 consecutive crops stacked on
channels (B, 15, 48, 96) and the window (B, 1, 80, 16).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motionlab.models.registry import register_model

FACE_SIZE = 96
SYNC_FRAMES = 5


class Conv(nn.Module):
    """Convolution + batch norm + ReLU, with an optional identity shortcut (the release's ``Conv2d``)."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, residual: bool = False, transpose: bool = False,
                 output_padding: int = 0):
        super().__init__()
        conv = (nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding) if transpose
                else nn.Conv2d(cin, cout, kernel_size, stride, padding))
        self.conv_block = nn.Sequential(conv, nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return F.relu(out + x if self.residual else out)


def _res(channels: int) -> Conv:
    return Conv(channels, channels, 3, 1, 1, residual=True)


def _audio_encoder(last_residuals: int) -> nn.Sequential:
    """The mel window encoder shared by the generator and the SyncNet (the SyncNet's has one more residual block)."""
    return nn.Sequential(
        Conv(1, 32, 3, 1, 1), _res(32), _res(32),
        Conv(32, 64, 3, (3, 1), 1), _res(64), _res(64),
        Conv(64, 128, 3, 3, 1), _res(128), _res(128),
        Conv(128, 256, 3, (3, 2), 1), *[_res(256) for _ in range(last_residuals)],
        Conv(256, 512, 3, 1, 0), Conv(512, 512, 1, 1, 0),
    )


class Wav2Lip(nn.Module):
    """The generator: a face encoder (96 -> 1 px, skips kept), the audio encoder, and a decoder that up-samples the audio
    embedding concatenating the face skips. ``forward(audio, face)`` -> (B, 3, 96, 96) in [0, 1] (BGR, as its input)."""

    def __init__(self):
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(Conv(6, 16, 7, 1, 3)),
            nn.Sequential(Conv(16, 32, 3, 2, 1), _res(32), _res(32)),
            nn.Sequential(Conv(32, 64, 3, 2, 1), _res(64), _res(64), _res(64)),
            nn.Sequential(Conv(64, 128, 3, 2, 1), _res(128), _res(128)),
            nn.Sequential(Conv(128, 256, 3, 2, 1), _res(256), _res(256)),
            nn.Sequential(Conv(256, 512, 3, 2, 1), _res(512)),
            nn.Sequential(Conv(512, 512, 3, 1, 0), Conv(512, 512, 1, 1, 0)),
        ])
        self.audio_encoder = _audio_encoder(1)

        def up(cin: int, cout: int, residuals: int, **transpose) -> nn.Sequential:
            return nn.Sequential(Conv(cin, cout, 3, transpose.pop("stride", 2), transpose.pop("padding", 1), transpose=True, **transpose),
                                 *[_res(cout) for _ in range(residuals)])

        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(Conv(512, 512, 1, 1, 0)),
            up(1024, 512, 1, stride=1, padding=0),
            up(1024, 512, 2, output_padding=1),
            up(768, 384, 2, output_padding=1),
            up(512, 256, 2, output_padding=1),
            up(320, 128, 2, output_padding=1),
            up(160, 64, 2, output_padding=1),
        ])
        self.output_block = nn.Sequential(Conv(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, audio: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        if face.shape[1:] != (6, FACE_SIZE, FACE_SIZE) or audio.shape[1:] != (1, 80, 16):
            raise ValueError(f"Wav2Lip takes faces (B, 6, 96, 96) and mel windows (B, 1, 80, 16), got {tuple(face.shape)} and {tuple(audio.shape)}")
        skips = []
        x = face
        for block in self.face_encoder_blocks:
            x = block(x)
            skips.append(x)
        x = self.audio_encoder(audio)
        for block in self.face_decoder_blocks:
            x = torch.cat([block(x), skips.pop()], dim=1)
        return self.output_block(x)


class Wav2LipSyncNet(nn.Module):
    """The expert lip-sync discriminator (``SyncNet_color``): unit-length 512-d embeddings of a mel window and of the
    lower halves of 5 consecutive face crops; their cosine similarity is the sync score (trained with BCE on it)."""

    def __init__(self):
        super().__init__()
        self.face_encoder = nn.Sequential(
            Conv(15, 32, 7, 1, 3),
            Conv(32, 64, 5, (1, 2), 1), _res(64), _res(64),
            Conv(64, 128, 3, 2, 1), _res(128), _res(128), _res(128),
            Conv(128, 256, 3, 2, 1), _res(256), _res(256),
            Conv(256, 512, 3, 2, 1), _res(512), _res(512),
            Conv(512, 512, 3, 2, 1), Conv(512, 512, 3, 1, 0), Conv(512, 512, 1, 1, 0),
        )
        self.audio_encoder = _audio_encoder(2)

    def forward(self, audio: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, 80, 16) mel windows and (B, 15, 48, 96) stacked lower halves -> (audio, face) embeddings (B, 512)."""
        audio_embedding = F.normalize(self.audio_encoder(audio).flatten(1), p=2, dim=1)
        face_embedding = F.normalize(self.face_encoder(faces).flatten(1), p=2, dim=1)
        return audio_embedding, face_embedding


def expert_sync_input(faces: torch.Tensor) -> torch.Tensor:
    """(B, 5, 3, 96, 96) consecutive crops -> the expert SyncNet's (B, 15, 48, 96) input: their lower halves, stacked."""
    if faces.dim() != 5 or faces.shape[1] != SYNC_FRAMES:
        raise ValueError(f"the expert SyncNet reads {SYNC_FRAMES} consecutive crops (B, 5, 3, H, W), got {tuple(faces.shape)}")
    return faces[:, :, :, faces.shape[-2] // 2:].flatten(1, 2)


def wav2lip_input(faces: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's (B, 6, 96, 96) face input: the crop with its lower half zeroed, then the reference (the crop
    itself at inference, as the release's ``datagen`` does)."""
    masked = faces.clone()
    masked[:, :, faces.shape[-2] // 2:] = 0
    return torch.cat([masked, faces if reference is None else reference], dim=1)


def wav2lip_checkpoint_filter(state: dict, source: str) -> dict:
    """A release file's weights (``{"state_dict": {"module.<key>": ...}, "optimizer": ..., "global_step": ...}``, already
    unwrapped to its ``state_dict`` by the loader) with DataParallel's ``module.`` prefix stripped, as the release's
    ``load_model`` does; motionlab's own state dicts pass through."""
    return {key.removeprefix("module."): value for key, value in state.items()}


def _generator_inputs(batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    faces = torch.rand(batch, 3, FACE_SIZE, FACE_SIZE, generator=generator)
    return {"audio": torch.rand(batch, 1, 80, 16, generator=generator) * 8 - 4, "face": wav2lip_input(faces)}


@register_model(family="wav2lip", input_size=FACE_SIZE, checkpoint_filter=wav2lip_checkpoint_filter, example_inputs=_generator_inputs,
                output_names=("generated_face",), lora_targets=r"face_decoder_blocks\.\d+\.\d+\.conv_block\.0|output_block\.1",
                published_settings={"channel_order": "bgr", "quantize": "floor"})
def wav2lip96() -> Wav2Lip:
    """Wav2Lip's generator at 96 px (``wav2lip.pth``; ``wav2lip_gan.pth`` holds the same layout)."""
    return Wav2Lip()


@register_model(family="wav2lip_syncnet", input_size=FACE_SIZE, checkpoint_filter=wav2lip_checkpoint_filter)
def syncnet_wav2lip() -> Wav2LipSyncNet:
    """Wav2Lip's expert lip-sync discriminator (``lipsync_expert.pth``)."""
    return Wav2LipSyncNet()


class L2Norm(nn.Module):
    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) * self.weight.view(1, -1, 1, 1)


class S3FD(nn.Module):
    """The S3FD face detector (a VGG-16 trunk with six detection heads at strides 4 .. 128) that Wav2Lip's inference
    crops faces with (``face_detection/detection/sfd``). ``forward`` gives the heads' (class, box) maps; :func:`detect_faces`
    turns them into boxes."""

    def __init__(self):
        super().__init__()
        widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512), (512, 512), (512, 512),
                  (512, 512), (512, 512), (512, 512)]
        names = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3", "conv5_1",
                 "conv5_2", "conv5_3"]
        for name, (cin, cout) in zip(names, widths):
            setattr(self, name, nn.Conv2d(cin, cout, 3, 1, 1))
        self.fc6 = nn.Conv2d(512, 1024, 3, 1, 3)
        self.fc7 = nn.Conv2d(1024, 1024, 1, 1, 0)
        self.conv6_1, self.conv6_2 = nn.Conv2d(1024, 256, 1, 1, 0), nn.Conv2d(256, 512, 3, 2, 1)
        self.conv7_1, self.conv7_2 = nn.Conv2d(512, 128, 1, 1, 0), nn.Conv2d(128, 256, 3, 2, 1)
        self.conv3_3_norm, self.conv4_3_norm, self.conv5_3_norm = L2Norm(256, 10), L2Norm(512, 8), L2Norm(512, 5)
        for name, channels, classes in (("conv3_3_norm", 256, 4), ("conv4_3_norm", 512, 2), ("conv5_3_norm", 512, 2), ("fc7", 1024, 2),
                                        ("conv6_2", 512, 2), ("conv7_2", 256, 2)):
            setattr(self, f"{name}_mbox_conf", nn.Conv2d(channels, classes, 3, 1, 1))
            setattr(self, f"{name}_mbox_loc", nn.Conv2d(channels, 4, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) images, mean-subtracted, 0..255 -> [class logits, box offsets] of the six heads, finest first."""
        stages = (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), ("conv3_1", "conv3_2", "conv3_3"), ("conv4_1", "conv4_2", "conv4_3"),
                  ("conv5_1", "conv5_2", "conv5_3"))
        kept = []
        for stage in stages:
            for name in stage:
                x = F.relu(getattr(self, name)(x))
            kept.append(x)
            x = F.max_pool2d(x, 2, 2)
        fc7 = F.relu(self.fc7(F.relu(self.fc6(x))))
        f6 = F.relu(self.conv6_2(F.relu(self.conv6_1(fc7))))
        f7 = F.relu(self.conv7_2(F.relu(self.conv7_1(f6))))
        features = {"conv3_3_norm": self.conv3_3_norm(kept[2]), "conv4_3_norm": self.conv4_3_norm(kept[3]),
                    "conv5_3_norm": self.conv5_3_norm(kept[4]), "fc7": fc7, "conv6_2": f6, "conv7_2": f7}
        outputs = []
        for name, feature in features.items():
            outputs += [getattr(self, f"{name}_mbox_conf")(feature), getattr(self, f"{name}_mbox_loc")(feature)]
        # the finest head votes 3 background classes: their max is its background score
        first = outputs[0]
        outputs[0] = torch.cat([first[:, :3].max(dim=1, keepdim=True).values, first[:, 3:]], dim=1)
        return outputs


# Caffe's BGR means: Wav2Lip subtracts them from the RGB frame it hands the network, face-alignment from the BGR one
S3FD_MEAN = (104.0, 117.0, 123.0)


@torch.no_grad()
def detect_faces(detector: S3FD, images: np.ndarray, threshold: float = 0.5, release: str = "wav2lip") -> list[tuple | None]:
    """(N, H, W, 3) uint8 RGB frames -> each frame's most confident face box (x0, y0, x1, y1), or None below
    ``threshold``, decoded from the anchors as both releases' ``batch_detect`` do (the first box after their NMS is
    the most confident). ``release``: ``wav2lip``, the box its ``get_detections_for_batch`` returns (the RGB frame
    handed to the network, coordinates clipped at 0 and truncated to integers); ``face_alignment``, the box
    face-alignment's ``SFDDetector`` returns (the frame turned BGR first, float coordinates as decoded)."""
    if release not in ("wav2lip", "face_alignment"):
        raise ValueError(f"detect_faces: release must be wav2lip or face_alignment, got {release!r}")
    device = next(detector.parameters()).device
    pixels = images[..., ::-1] if release == "face_alignment" else images
    tensor = torch.from_numpy(pixels.astype(np.float32) - np.array(S3FD_MEAN, np.float32)).permute(0, 3, 1, 2).to(device)
    outputs = detector(tensor)
    best_scores = torch.full((len(images),), -1.0)
    best_boxes = torch.zeros(len(images), 4)
    for level in range(len(outputs) // 2):
        scores = F.softmax(outputs[2 * level], dim=1)[:, 1].cpu()
        offsets = outputs[2 * level + 1].cpu()
        stride = 2 ** (level + 2)
        b, h, w = scores.shape
        if h * w == 0:  # an image smaller than this head's stride
            continue
        flat = scores.view(b, -1)
        value, index = flat.max(dim=1)
        ys, xs = index // w, index % w
        centres = torch.stack([stride / 2 + xs * stride, stride / 2 + ys * stride], dim=1).float()
        loc = offsets.view(b, 4, -1).gather(2, index.view(b, 1, 1).expand(b, 4, 1)).squeeze(2)
        centre = centres + loc[:, :2] * 0.1 * stride * 4
        size = stride * 4 * torch.exp(loc[:, 2:] * 0.2)
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
        better = value > best_scores
        best_scores = torch.where(better, value, best_scores)
        best_boxes = torch.where(better.unsqueeze(1), boxes, best_boxes)
    if release == "face_alignment":
        return [tuple(box.tolist()) if score > threshold else None for box, score in zip(best_boxes.double(), best_scores)]
    return [tuple(int(v) for v in box.clamp(min=0).tolist()) if score > threshold else None for box, score in zip(best_boxes, best_scores)]


@register_model(family="face_detector")
def s3fd() -> S3FD:
    """The S3FD face detector of Wav2Lip's (and face-alignment's) release (``s3fd.pth``, a plain state dict)."""
    return S3FD()
