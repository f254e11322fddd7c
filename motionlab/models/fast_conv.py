"""Fast-convolution inference on the CPU: each stride-1 convolution picks, per input shape, the faster of PyTorch's
direct convolution (oneDNN) and NNPACK's (Winograd F(6x6, 3x3) for 3x3 kernels, FFT for larger ones), by timing
both on its first input of that shape, as ``torch.backends.cudnn.benchmark`` does on a GPU.

Winograd does fewer multiplications than the direct convolution, so a network can run faster than the machine's
direct-convolution peak allows; the price is rounding: outputs differ from the direct convolution's by ~1e-5 of
their scale per layer (the test bounds a whole FOMM generator by 1e-4). Training, autograd, other devices and dtypes
always take the direct convolution; so do CPU autocast (reduced precision) and :func:`torch.onnx.export`.
"""

from __future__ import annotations

import time

import torch
from torch import nn

ALGORITHMS = ("auto", "nnpack")


def nnpack_available() -> bool:
    """Whether this PyTorch build has NNPACK for this CPU (the call also initialises it, which it needs once)."""
    return bool(torch._nnpack_available())


class FastConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same state-dict keys) that, in inference on CPU float32, runs whichever of
    the direct and the NNPACK convolution was faster on the first input of each shape.

    ``algorithm``: ``"auto"`` (timed per input shape; ``choices`` maps each shape seen to ``"direct"`` or
    ``"nnpack"``) or ``"nnpack"`` (always, e.g. for reproducible outputs or tests).
    """

    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.algorithm, self.choices = algorithm, {}

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, algorithm: str = "auto") -> "FastConv2d":
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm={algorithm!r}: expected one of {ALGORITHMS}")
        fast = cls.__new__(cls)
        fast.__dict__.update(conv.__dict__)  # shares the Parameters: the model's weights stay where they are
        fast.algorithm, fast.choices = algorithm, {}
        return fast

    def _nnpack(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias if self.bias is not None else x.new_zeros(self.out_channels)
        return torch._nnpack_spatial_convolution(x.contiguous(), self.weight, bias, list(self.padding))

    def _choose(self, x: torch.Tensor) -> torch.Tensor:
        """Time both algorithms on ``x`` (the second call of each: the first pays for allocations and NNPACK's
        workspace), record the faster for this shape and return its output."""
        seconds, outputs = {}, {}
        for name, run in (("direct", super().forward), ("nnpack", self._nnpack)):
            run(x)
            started = time.perf_counter()
            outputs[name] = run(x)
            seconds[name] = time.perf_counter() - started
        self.choices[tuple(x.shape)] = min(seconds, key=seconds.get)
        return outputs[self.choices[tuple(x.shape)]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu")
                or torch.onnx.is_in_onnx_export()):
            return super().forward(x)
        if self.algorithm == "nnpack":
            return self._nnpack(x)
        choice = self.choices.get(tuple(x.shape))
        if choice is None:
            return self._choose(x)
        return self._nnpack(x) if choice == "nnpack" else super().forward(x)


def _eligible(conv: nn.Module) -> bool:
    """NNPACK computes stride-1, undilated, ungrouped convolutions with symmetric zero padding."""
    return (type(conv) is nn.Conv2d and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple))


def use_fast_convolutions(model: nn.Module, algorithm: str = "auto") -> int:
    """Replace ``model``'s eligible ``nn.Conv2d`` layers (in place) by :class:`FastConv2d` (``algorithm`` ``"auto"``
    or ``"nnpack"``) sharing their parameters; returns how many. Does nothing (returns 0) where NNPACK is unavailable."""
    if not nnpack_available():
        return 0
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _eligible(child):
                setattr(parent, name, FastConv2d.from_conv(child, algorithm))
                replaced += 1
    return replaced
