"""bf16 inference with float32 parts: named sub-modules of a network run in float32 inside a bfloat16 autocast region.

bf16 keeps 8 bits of mantissa. Where a network turns a heatmap into a position (FOMM's and TPSMM's keypoint detectors:
a softmax-weighted mean at temperature 0.1), or reads a feature volume through predicted offsets (LivePortrait's
appearance volume and warping module), that rounding moves every pixel of the render; in the dense decoders it does
not. A network's :attr:`~motionlab.models.ModelInfo.float32_modules` names the first kind: on a FOMM vox-256 with
BatchNorm statistics of real frames, bf16 everywhere rendered 32 dB from fp32 (below the 35 dB gate), bf16 with the
detector in float32 43 dB, and no slower (1.66-1.90x fp32's frames/s in three runs, against 1.65x: the detector's
small convolutions gain little in bf16 and pay for the casts; docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import types

import torch
from torch import nn


def as_float32(value):
    """``value`` with every floating-point tensor in it (in lists, tuples, dicts and dataclasses such as
    :class:`~motionlab.geometry.Keypoints`) as float32; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(as_float32(item) for item in value)
    if isinstance(value, dict):
        return {key: as_float32(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{field.name: as_float32(getattr(value, field.name)) for field in dataclasses.fields(value) if field.init})
    return value


def _float32_forward(module: nn.Module, *args, **kwargs):
    with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
        return type(module).forward(module, *as_float32(args), **as_float32(kwargs))


def keep_float32(model: nn.Module, names: tuple[str, ...]) -> None:
    """Make each named sub-module of ``model`` compute in float32 under autocast (in place, once per module): its
    floating-point inputs are cast to float32 and autocast is off while it runs. Outside autocast nothing changes.
    The forward is bound to the module, so a ``copy.deepcopy`` of the model keeps float32 parts of its own."""
    for name in names:
        module = model.get_submodule(name)
        if "forward" not in vars(module):  # not kept yet
            module.forward = types.MethodType(_float32_forward, module)
