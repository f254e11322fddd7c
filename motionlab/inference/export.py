"""ONNX export of the lip-sync U-Net and the ``ave`` audio encoder, with an onnxruntime parity check.

Exports use a dynamic batch axis. The parity check runs the exported graph in onnxruntime (CPU) on
random and, when given, real inputs and compares with eager PyTorch: the largest absolute difference
must stay within ``tolerance`` (1e-4), otherwise the export is refused and the file removed.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from motionlab.models.lipsync import AUDIO_SHAPES, AudioEncoder, LipSyncUNet
from motionlab.utils.io import atomic_path

log = logging.getLogger(__name__)
OPSET = 17


class ParityError(RuntimeError):
    """An exported graph whose outputs differ from PyTorch's by more than the tolerance."""


def example_inputs(net: nn.Module, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs named as in the exported graph.

    U-Net images are random but image-like: uniform noise on a 40 x 40 grid, bilinearly upsampled. Per-pixel
    white noise drives a trained U-Net's activations far outside what faces do, where float32 itself is off by
    ~1e-4 (PyTorch and onnxruntime each differ from a float64 run by ~9e-5 there), so it would measure
    rounding, not the export. ``ave`` audio features are non-negative (ReLU outputs); HuBERT / WeNet ones are normal.
    """
    generator = torch.Generator().manual_seed(seed)
    if isinstance(net, LipSyncUNet):
        coarse = torch.rand(batch, 6, 40, 40, generator=generator)
        audio = torch.randn(batch, *AUDIO_SHAPES[net.mode], generator=generator)
        return {"image": torch.nn.functional.interpolate(coarse, size=(320, 320), mode="bilinear", align_corners=False),
                "audio": audio.abs() if net.mode == "ave" else audio}
    if isinstance(net, AudioEncoder):
        return {"mel": torch.rand(batch, 1, 80, 16, generator=generator) * 8 - 4}
    raise TypeError(f"no ONNX export for {type(net).__name__}; exportable: LipSyncUNet, AudioEncoder")


def output_names(net: nn.Module) -> list[str]:
    return ["face"] if isinstance(net, LipSyncUNet) else ["features"]


def export_onnx(net: nn.Module, out: str | os.PathLike) -> Path:
    """Write ``net`` (eval mode, float32) as ONNX with a dynamic batch axis; returns the path."""
    net = net.eval().float()
    inputs = example_inputs(net)
    names = output_names(net)
    dynamic = {name: {0: "batch"} for name in [*inputs, *names]}
    out = Path(out)
    with atomic_path(out) as scratch, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input shape checks are constant under tracing
        torch.onnx.export(net, tuple(inputs.values()), str(scratch), input_names=list(inputs), output_names=names,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    return out


class OnnxRunner:
    """An onnxruntime CPU session called like the network on numpy arrays: ``runner(*inputs) -> array``."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        feeds = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in zip(self.input_names, inputs)}
        return self.session.run(None, feeds)[0]


@torch.no_grad()
def parity(net: nn.Module, path: str | os.PathLike, inputs: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between eager PyTorch and onnxruntime on ``inputs``."""
    expected = net.eval()(*inputs.values()).numpy()
    actual = OnnxRunner(path)(*(t.numpy() for t in inputs.values()))
    if actual.shape != expected.shape:
        raise ParityError(f"{path}: onnxruntime output {actual.shape} vs PyTorch {expected.shape}")
    return float(np.abs(actual - expected).max())


def check_parity(net: nn.Module, path: str | os.PathLike, real_inputs: dict[str, torch.Tensor] | None = None,
                 tolerance: float = 1e-4) -> dict[str, float]:
    """Parity on random inputs (batches 1 and 3: the batch axis is dynamic) and on ``real_inputs``; raises
    :class:`ParityError` beyond ``tolerance``."""
    report = {f"random_batch{b}": parity(net, path, example_inputs(net, batch=b, seed=b)) for b in (1, 3)}
    if real_inputs is not None:
        report["real"] = parity(net, path, real_inputs)
    worst = max(report.values())
    if worst > tolerance:
        raise ParityError(f"{path}: onnxruntime differs from PyTorch by {worst:.3g} (> {tolerance:g}): {report}")
    return report


def write_reference_outputs(net: nn.Module, inputs: dict[str, torch.Tensor], folder: str | os.PathLike) -> list[Path]:
    """Save ``inputs`` and PyTorch's outputs as ``.npy`` files, for validating other runtimes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        output = net.eval()(*inputs.values())
    written = []
    for name, value in {**inputs, output_names(net)[0]: output}.items():
        np.save(folder / f"{name}.npy", value.numpy().astype(np.float32))
        written.append(folder / f"{name}.npy")
    return written


def _real_inputs(part: str, net: nn.Module, template: str | os.PathLike, encoder: nn.Module | None, frames: int = 2) -> dict[str, torch.Tensor]:
    """The first ``frames`` frames of a template folder as the network's inputs (crops and their audio)."""
    from motionlab.data.audio import audio_input
    from motionlab.data.lipsync import TalkingClip, audio_features, encode_audio, face_tensor
    from motionlab.tasks.lipsync import mask_face

    clip = TalkingClip(template)
    if part == "audio_encoder":
        return {"mel": clip.mel[:frames]}
    if net.mode == "ave":
        features = torch.from_numpy(encode_audio(encoder, clip.mel))
    else:
        features = audio_features(clip, net.mode)
    faces = face_tensor(clip.crops[:frames])
    return {"image": torch.cat([faces, mask_face(faces)], dim=1),
            "audio": torch.stack([audio_input(features, i, net.mode) for i in range(frames)])}


def export_lipsync_onnx(ckpt: str, out: str, part: str = "unet", mode: str | None = None, audio_encoder_ckpt: str | None = None,
                        template: str | None = None, reference_outputs: str | None = None, tolerance: float = 1e-4) -> dict:
    """``motionlab-export onnx``: export, check parity (random and real inputs), optionally write reference outputs."""
    from motionlab.inference.lipsync import load_audio_encoder, load_lipsync_unet

    if part not in ("unet", "audio_encoder"):
        raise ValueError(f"part must be unet or audio_encoder, got {part!r}")
    if part == "audio_encoder" and audio_encoder_ckpt is None and mode is None:
        try:  # the encoder a U-Net run was trained with, or ckpt itself is an encoder
            unet_settings = load_lipsync_unet(ckpt)[1]
            audio_encoder_ckpt = unet_settings["audio_encoder_ckpt"]
        except ValueError:
            audio_encoder_ckpt = ckpt
    unet = load_lipsync_unet(ckpt, mode) if part == "unet" else None
    encoder = None
    if part == "audio_encoder" or (unet[0].mode == "ave" and template is not None):
        encoder_path = audio_encoder_ckpt or unet[1]["audio_encoder_ckpt"]
        if encoder_path is None:
            raise ValueError("give audio_encoder_ckpt=... (the ave encoder) for this export")
        encoder = load_audio_encoder(encoder_path)
    net = encoder if part == "audio_encoder" else unet[0]
    path = export_onnx(net, out)
    real = _real_inputs(part, net, template, encoder) if template is not None else None
    try:
        report = check_parity(net, path, real, tolerance)
    except ParityError:
        path.unlink(missing_ok=True)
        raise
    written = write_reference_outputs(net, real if real is not None else example_inputs(net), reference_outputs) if reference_outputs else []
    inputs = {name: ["batch", *value.shape[1:]] for name, value in example_inputs(net).items()}
    return {"out": str(path), "inputs": inputs, "parity": report, "reference_outputs": str(reference_outputs) if written else None}
