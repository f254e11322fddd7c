"""int8 inference for PyTorch networks: named sub-modules run as onnxruntime int8 graphs, calibrated on a run's inputs.

A network's heavy, convolution-only parts (FOMM's bottleneck and decoder, TPSMM's inpainting decoder, the dense-motion
hourglasses, LivePortrait's warping hourglass) are listed in its :attr:`~motionlab.models.ModelInfo.int8_modules`. Each is
a function of tensors alone, so it exports as one ONNX graph; what stays in PyTorch (keypoints, grid sampling, soft
masks, the thin-plate solve) is where int8 would cost fidelity for little time. :func:`quantize_modules` records the
inputs each listed module receives while the caller's calibration runs in fp32, exports the module, quantizes it
statically (QDQ, per-channel int8 weights, uint8 activations: the pair VNNI / AMX dot products take; 7-bit weights on
AVX2-only CPUs) on exactly those inputs, and puts an :class:`OnnxModule` in its place. Its session's idle threads sleep
rather than spin: PyTorch runs between the graphs, and spinning threads took its cores (FOMM vox-256 on two cores: 2.2x
fp32's frames/s with sleeping threads, 1.5x with spinning ones). The graphs live in a temporary folder only while sessions open:
they depend on the run's inputs and are rebuilt by every run (18-73 s at the releases' sizes on two cores, against
minutes of animation: docs/benchmarks.md).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


class OnnxModule(nn.Module):
    """Runs an onnxruntime session in place of a sub-module: tensors in, its outputs as tensors out (on the inputs'
    device and dtype; the session computes on the CPU), one tensor or a list of them as the module returned. Holds no
    parameters: the network's ``state_dict`` loses the replaced module's keys, so it cannot be saved as the original."""

    def __init__(self, runner, name: str, returns_list: bool = False):
        super().__init__()
        self.runner, self.name, self.returns_list = runner, name, returns_list

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        arrays = [value.detach().float().cpu().numpy() for value in inputs]
        outputs = [torch.from_numpy(array).to(device=inputs[0].device, dtype=inputs[0].dtype) for array in self.runner.outputs(*arrays)]
        return outputs if self.returns_list else outputs[0]

    def extra_repr(self) -> str:
        return f"int8 onnxruntime graph of {self.name}"


def _record_inputs(model: nn.Module, names: tuple[str, ...], calibrate: Callable[[], object]) -> tuple[dict[str, list[tuple[torch.Tensor, ...]]], dict[str, int]]:
    """The positional tensor inputs each named sub-module receives during ``calibrate()`` (run without gradients), and
    the number of tensors it returns (1 for a tensor, the length of a list)."""
    seen: dict[str, list[tuple[torch.Tensor, ...]]] = {name: [] for name in names}
    outputs: dict[str, int] = {}
    hooks = []
    for name in names:
        def record(module, args, name=name):
            if not args or not all(isinstance(value, torch.Tensor) for value in args):
                raise TypeError(f"{name} takes {[type(value).__name__ for value in args]}: only tensor-only sub-modules can run as int8 graphs")
            seen[name].append(tuple(value.detach().float().cpu().contiguous() for value in args))

        def count(module, args, output, name=name):
            outputs[name] = len(output) if isinstance(output, (list, tuple)) else 0
        hooks += [model.get_submodule(name).register_forward_pre_hook(record), model.get_submodule(name).register_forward_hook(count)]
    try:
        with torch.no_grad():
            calibrate()
    finally:
        for hook in hooks:
            hook.remove()
    return seen, outputs


def quantize_modules(model: nn.Module, names: tuple[str, ...], calibrate: Callable[[], object], source: str) -> dict[str, int]:
    """Replace each sub-module in ``names`` by an int8 onnxruntime graph (:class:`OnnxModule`), in place.

    ``calibrate()`` runs the fp32 network on the run's own inputs; the tensors each module receives there are both its
    export example and its calibration set (MinMax ranges). ``source`` tags the graphs with the weights they come from.
    Returns, per module, the number of calibration inputs it saw; a listed module the calibration never reached is an
    error (it would run uncalibrated)."""
    from motionlab.utils.machine import cpu_profile
    from motionlab.utils.onnx_files import OnnxRunner, export_graph, quantize_int8

    reduce_range = cpu_profile().int8_reduce_range
    seen, outputs = _record_inputs(model, names, calibrate)
    unreached = [name for name, inputs in seen.items() if not inputs]
    if unreached:
        raise ValueError(f"the int8 calibration never ran {unreached}; nothing to calibrate their ranges on")
    with tempfile.TemporaryDirectory(prefix="motionlab-int8-") as folder:
        for name, inputs in seen.items():
            input_names = [f"input{i}" for i in range(len(inputs[0]))]
            fp32, int8 = Path(folder) / f"{name}.onnx", Path(folder) / f"{name}.int8.onnx"
            with warnings.catch_warnings():
                # the exporter's notes (its legacy path, instance norm exported with input statistics) are about the
                # export, not the run: the int8 result is checked against fp32's by the caller
                warnings.simplefilter("ignore")
                export_graph(model.get_submodule(name), dict(zip(input_names, inputs[0])), [f"output{i}" for i in range(max(1, outputs[name]))], fp32)
            quantize_int8(fp32, int8, [{key: value.numpy() for key, value in zip(input_names, values)} for values in inputs], source, reduce_range)
            model.set_submodule(name, OnnxModule(OnnxRunner(int8, spinning=False, source=source), name, outputs[name] > 0))
    return {name: len(inputs) for name, inputs in seen.items()}
