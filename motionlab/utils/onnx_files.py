"""ONNX files and onnxruntime sessions: the check every file gets before a session opens it, the metadata tying an
exported graph to its weights, and the CPU runner called like a network."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from motionlab.utils.errors import InputError

# the ONNX opset graphs are exported in (onnxruntime's static quantizer needs >= 13 for per-channel weights)
OPSET = 17

# the metadata entry tying an exported graph to the weights it was exported from (a SHA-256 prefix, and the adapter's)
SOURCE_KEY = "motionlab.source"


def tag_source(path: str | os.PathLike, source: str) -> None:
    """Record ``source`` (what the graph was exported from) in the ONNX file's metadata, in place."""
    import onnx

    model = onnx.load(str(path))
    entries = {entry.key: entry.value for entry in model.metadata_props}
    entries[SOURCE_KEY] = source
    del model.metadata_props[:]
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def export_graph(module, inputs: dict, output_names: list[str], out: str | os.PathLike, opset: int = OPSET) -> Path:
    """Write ``module`` (called on the tensors ``inputs``, by input name) as an ONNX graph with a dynamic batch axis on
    every input and output, atomically; returns the path. Names of inputs and outputs must differ (the exporter would
    rename the input and a runtime feeding it by name would fail)."""
    import warnings

    import torch

    from motionlab.utils.io import atomic_path

    shared = sorted(set(inputs) & set(output_names))
    if shared:
        raise ValueError(f"{type(module).__name__}: ONNX input and output names must differ; {shared} are both")
    out = Path(out)
    with atomic_path(out) as scratch, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input shape checks are constant under tracing
        torch.onnx.export(module, tuple(inputs.values()), str(scratch), input_names=list(inputs), output_names=list(output_names),
                          dynamic_axes={name: {0: "batch"} for name in [*inputs, *output_names]}, opset_version=opset, dynamo=False)
    return out


def check_onnx_file(path: str | os.PathLike, source: str | None = None) -> None:
    """Check an ONNX file before onnxruntime opens it: a readable model that passes ``onnx.checker``, whose external
    data files (if any) lie inside its own folder, and, with ``source``, that was exported from those weights (its
    :data:`SOURCE_KEY` metadata). Errors name the file and what is wrong."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf decode errors, truncated files
        raise InputError(f"{path} is not a readable ONNX model ({type(error).__name__}); export it again with motionlab-export onnx") from error
    folder = path.parent.resolve()
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
            target = (folder / location).resolve()
            if not location or Path(location).is_absolute() or folder not in target.parents:
                raise InputError(f"{path}: tensor {tensor.name} keeps its data in {location!r}, outside the model's folder; refused")
            if not target.is_file():
                raise InputError(f"{path}: tensor {tensor.name}'s external data file {location} is missing")
    try:
        onnx.checker.check_model(str(path))
    except Exception as error:
        raise InputError(f"{path} fails onnx.checker ({' '.join(str(error).split())[:200]}); export it again") from error
    if source is not None:
        found = {entry.key: entry.value for entry in model.metadata_props}.get(SOURCE_KEY)
        if found != source:
            raise InputError(f"{path} was exported from {'other weights (' + found + ')' if found else 'weights it does not name'}, "
                             f"not from these ({source}); leave onnx= unset to export the graph of this checkpoint")


def _in_cache(path: Path) -> bool:
    from motionlab.utils.io import user_cache_dir

    return path.resolve().is_relative_to(user_cache_dir().resolve())


class OnnxRunner:
    """An onnxruntime CPU session called like the network on numpy arrays: ``runner(*inputs) -> array`` (the first
    output; :meth:`outputs` gives all). A file given by the user is checked first (:func:`check_onnx_file`); a graph
    motionlab compiled into its own cache (checked when it was written) only has its source tag read back, through
    onnxruntime: the ``onnx`` package takes ~1 s to import (its ml_dtypes extension), a third of a command's start-up."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, spinning: bool = True, source: str | None = None):
        """``spinning=False`` lets idle intra-op threads sleep instead of busy-waiting for work: slower between
        back-to-back calls, but it leaves the cores to the threads around the session (a pipeline's decoder and
        encoder); measured 5.2-5.6 -> 5.7 frames/s for lip-sync video on two cores. ``source``: the weights the graph
        must have been exported from."""
        import onnxruntime

        path = Path(path)
        cached = _in_cache(path) and path.is_file()
        if not cached:
            check_onnx_file(path, source)
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        if cached and source is not None:
            found = self.session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)
            if found != source:
                raise InputError(f"{path} was compiled from {'other weights (' + found + ')' if found else 'weights it does not name'}, not "
                                 f"from these ({source}); delete it to compile it again")
        self.input_names = [i.name for i in self.session.get_inputs()]

    def outputs(self, *inputs: np.ndarray) -> list[np.ndarray]:
        feeds = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in zip(self.input_names, inputs)}
        return self.session.run(None, feeds)

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        return self.outputs(*inputs)[0]


def quantize_int8(fp32: str | os.PathLike, out: str | os.PathLike, samples: list[dict[str, np.ndarray]], source: str,
                  reduce_range: bool) -> Path:
    """onnxruntime's static quantization of the graph ``fp32`` into ``out``: its pre-processing first (constant folding
    and shape inference: without it the exported convolutions' biases are not initializers and stay float), then QDQ
    format, per-channel int8 weights, uint8 activations (the pair VNNI's dot products take), MinMax ranges calibrated
    on ``samples`` (input name -> array, the run's own inputs); tagged with ``source`` and written atomically.
    ``reduce_range``: weights in 7 bits, for CPUs whose int8 path saturates at 8
    (:attr:`~motionlab.utils.machine.CpuProfile.int8_reduce_range`)."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from motionlab.utils.io import atomic_path

    class Samples(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(samples)

        def get_next(self):
            return next(self.remaining, None)

    out = Path(out)
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(prefix="motionlab-quantize-") as folder, atomic_path(out) as scratch:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        # the quantizer reports each tensor it handles on the root logger (per-channel axes of norm parameters, bias
        # copies): hundreds of lines that say nothing about the result
        root.setLevel(max(level, logging.ERROR))
        try:
            quantize_static(str(prepared), str(scratch), Samples(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, reduce_range=reduce_range)
        finally:
            root.setLevel(level)
        tag_source(scratch, source)
    return out
