"""Fast-convolution inference on the CPU: each stride-1 convolution picks, per input shape, the faster of PyTorch's
direct convolution (oneDNN) and NNPACK's (Winograd F(6x6, 3x3) for 3x3 kernels, FFT for larger ones), by timing
both on its first input of that shape, as ``torch.backends.cudnn.benchmark`` does on a GPU.

Winograd does fewer multiplications than the direct convolution, so a network can run faster than the machine's
direct-convolution peak allows; the price is rounding: outputs differ from the direct convolution's by ~1e-5 of
their scale per layer (the test bounds a whole FOMM generator by 1e-4). Training, autograd, other devices and dtypes
always take the direct convolution; so do CPU autocast (reduced precision) and :func:`torch.onnx.export`.

Choices persist, like FFTW's wisdom: each timed choice is stored in ``<user cache>/fast_conv_wisdom.json`` under the
machine (CPU model, PyTorch version, threads) and the layer and input shape, so later processes on the same machine
take it without timing again (delete the file to re-time).
"""

from __future__ import annotations

import json
import logging
import time

import torch
from torch import nn

ALGORITHMS = ("auto", "nnpack")
WISDOM_FILE = "fast_conv_wisdom.json"
log = logging.getLogger(__name__)
# the wisdom of this process: machine key -> {layer and shape key -> "direct" | "nnpack"}, read once from the cache
_wisdom: dict[str, dict[str, str]] | None = None


def _machine_key() -> str:
    from motionlab.utils.machine import cpu_profile

    return f"{cpu_profile().model} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _wisdom_path():
    from motionlab.utils.io import user_cache_dir

    return user_cache_dir() / WISDOM_FILE


def _load_wisdom() -> dict[str, dict[str, str]]:
    global _wisdom
    if _wisdom is None:
        try:
            loaded = json.loads(_wisdom_path().read_text())
            _wisdom = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            _wisdom = {}
    return _wisdom


def remembered_choice(key: str) -> str | None:
    """The stored choice of ``key`` (:meth:`FastConv2d.wisdom_key`) on this machine, or None."""
    choice = _load_wisdom().get(_machine_key(), {}).get(key)
    return choice if choice in ("direct", "nnpack") else None


def remember_choice(key: str, choice: str) -> None:
    """Store ``choice`` for ``key`` on this machine (atomically; a cache that cannot be written is only logged)."""
    from motionlab.utils.io import atomic_write_text

    wisdom = _load_wisdom()
    wisdom.setdefault(_machine_key(), {})[key] = choice
    try:
        atomic_write_text(_wisdom_path(), json.dumps(wisdom, indent=1, sort_keys=True))
    except OSError as error:
        log.info("fast-convolution choices are not kept (%s)", error)


def forget_wisdom() -> None:
    """Drop this process's copy of the stored choices (the next lookup reads the file again)."""
    global _wisdom
    _wisdom = None


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

    def wisdom_key(self, shape: tuple[int, ...]) -> str:
        """What the choice depends on besides the machine: the layer's geometry and the input's shape."""
        return (f"{self.in_channels}->{self.out_channels} k{self.kernel_size} p{self.padding} bias={self.bias is not None} "
                f"input {tuple(shape)}")

    def _choose(self, x: torch.Tensor) -> torch.Tensor:
        """Time both algorithms on ``x`` (the second call of each: the first pays for allocations and NNPACK's
        workspace), record the faster for this shape (here and in the machine's wisdom) and return its output."""
        seconds, outputs = {}, {}
        for name, run in (("direct", super().forward), ("nnpack", self._nnpack)):
            run(x)
            started = time.perf_counter()
            outputs[name] = run(x)
            seconds[name] = time.perf_counter() - started
        choice = self.choices[tuple(x.shape)] = min(seconds, key=seconds.get)
        remember_choice(self.wisdom_key(tuple(x.shape)), choice)
        return outputs[choice]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu")
                or torch.onnx.is_in_onnx_export()):
            return super().forward(x)
        if self.algorithm == "nnpack":
            return self._nnpack(x)
        shape = tuple(x.shape)
        choice = self.choices.get(shape)
        if choice is None:
            choice = remembered_choice(self.wisdom_key(shape))
            if choice is None:
                return self._choose(x)
            self.choices[shape] = choice
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
