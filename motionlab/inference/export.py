"""Export: ONNX of any registered network that declares example inputs (the lip-sync U-Net, the ``ave`` audio
encoder), with an onnxruntime parity check; LoRA runs as adapter files or merged checkpoints.

Inputs and outputs are named from the model's :class:`~motionlab.models.ModelInfo` (``example_inputs``,
``output_names``); the batch axis is dynamic. The parity check runs the exported graph in onnxruntime (CPU) on
random and, when given, real inputs and compares with eager PyTorch: the largest absolute difference must stay
within ``tolerance`` (1e-4), otherwise the export is refused and the file removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from motionlab.models import checkpoint_models, model_graphs, motionlab_meta
from motionlab.models.lora import load_adapter, merge_lora, read_adapter, save_adapter
from motionlab.tasks import load_predictor
from motionlab.utils.checkpoint import CheckpointFormatError, atomic_torch_save, load_checkpoint
from motionlab.utils.errors import InputError, MotionlabError
from motionlab.utils.io import atomic_dir, atomic_path, file_digest
from motionlab.utils.onnx_files import OPSET, OnnxRunner, export_graph, tag_source

log = logging.getLogger(__name__)


class ParityError(MotionlabError, RuntimeError):
    """An exported graph whose outputs differ from PyTorch's by more than the tolerance."""


def example_inputs(net: nn.Module, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's own example inputs (named as in the exported graph), or a clear error for non-exportable ones."""
    make = net.model_info.example_inputs
    if make is None:
        raise TypeError(f"{net.model_info.name} declares no example inputs: it has no ONNX export "
                        "(exportable: the lip-sync U-Nets and the ave audio encoder)")
    return make(batch, torch.Generator().manual_seed(seed))


def export_onnx(net: nn.Module, out: str | os.PathLike, inputs: dict[str, torch.Tensor] | None = None,
                output_names: tuple[str, ...] | None = None, opset: int = OPSET) -> Path:
    """Write ``net`` (eval mode, float32) as ONNX with a dynamic batch axis; returns the path. Inputs and output
    names default to the model's own (:class:`~motionlab.models.ModelInfo`); modules without that metadata (one
    graph of a multi-graph model) pass theirs."""
    net = net.eval().float()
    inputs = example_inputs(net) if inputs is None else inputs
    names = list(net.model_info.output_names if output_names is None else output_names)
    return export_graph(net, inputs, names, out, opset)


@torch.no_grad()
def parity(net: nn.Module, runner: OnnxRunner, inputs: dict[str, torch.Tensor], path: str | os.PathLike) -> float:
    """Largest absolute difference between eager PyTorch and the onnxruntime session ``runner`` (of the file ``path``)
    on ``inputs``, over every output."""
    expected = net.eval()(*inputs.values())
    expected = [t.numpy() for t in (expected if isinstance(expected, (tuple, list)) else (expected,))]
    actual = runner.outputs(*(t.numpy() for t in inputs.values()))
    if [a.shape for a in actual] != [e.shape for e in expected]:
        raise ParityError(f"{path}: onnxruntime outputs {[a.shape for a in actual]} vs PyTorch {[e.shape for e in expected]}")
    return max(float(np.abs(a - e).max()) for a, e in zip(actual, expected))


def check_parity(net: nn.Module, path: str | os.PathLike, real_inputs: dict[str, torch.Tensor] | None = None,
                 tolerance: float = 1e-4) -> dict[str, float]:
    """Parity on random inputs (batches 1 and 3: the batch axis is dynamic) and on ``real_inputs``; raises
    :class:`ParityError` beyond ``tolerance``."""
    runner = OnnxRunner(path)
    report = {f"random_batch{b}": parity(net, runner, example_inputs(net, batch=b, seed=b), path) for b in (1, 3)}
    if real_inputs is not None:
        report["real"] = parity(net, runner, real_inputs, path)
    worst = max(report.values())
    if worst > tolerance:
        raise ParityError(f"{path}: onnxruntime differs from PyTorch by {worst:.3g} (> {tolerance:g}): {report}")
    return report


def export_checked(net: nn.Module, out: str | os.PathLike, source: str, real_inputs: dict[str, torch.Tensor] | None = None,
                   tolerance: float = 1e-4) -> dict:
    """Export to a temporary file, check parity there, tag it with ``source`` (:func:`tag_source`), and only then
    replace ``out``: a graph that fails the check never reaches ``out``, and a previous good export there stays."""
    out = Path(out)
    with atomic_path(out) as scratch:
        export_onnx(net, scratch)
        report = check_parity(net, scratch, real_inputs, tolerance)
        tag_source(scratch, source)
    return {"out": str(out), "parity": report}


def onnx_source(ckpt: str | os.PathLike, lora_ckpt: str | os.PathLike | None = None) -> str:
    """What a graph exported from ``ckpt`` (a file, or a release folder: its files' names and digests; with the
    adapters of ``lora_ckpt`` merged) is tagged with."""
    ckpt = Path(ckpt)
    if ckpt.is_dir():
        import hashlib

        listing = "\n".join(f"{path.relative_to(ckpt)} {file_digest(path)}" for path in sorted(ckpt.rglob("*")) if path.is_file())
        digest = hashlib.sha256(listing.encode()).hexdigest()
    else:
        digest = file_digest(ckpt)
    return digest[:12] + (f".lora-{file_digest(lora_ckpt)[:12]}" if lora_ckpt is not None else "")


def write_reference_outputs(net: nn.Module, inputs: dict[str, torch.Tensor], folder: str | os.PathLike) -> list[Path]:
    """Save ``inputs`` and PyTorch's outputs as ``.npy`` files, for validating other runtimes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        output = net.eval()(*inputs.values())
    written = []
    for name, value in {**inputs, net.model_info.output_names[0]: output}.items():
        np.save(folder / f"{name}.npy", value.numpy().astype(np.float32))
        written.append(folder / f"{name}.npy")
    return written


def export_predictor_onnx(ckpt: str, out: str, part: str = "net", arch: str | None = None, audio_encoder_ckpt: str | None = None,
                        template: str | None = None, reference_outputs: str | None = None, tolerance: float = 1e-4,
                        on_graph: Callable[[int, int], None] | None = None) -> dict:
    """``motionlab-export onnx``: export a network of a checkpoint's predictor (``part``: ``net``, or another of its
    networks, e.g. a lip-sync U-Net's ``audio_encoder``) as the graphs its model declares
    (:func:`motionlab.models.model_graphs`). One graph goes to the file ``out``, checked on random and (with
    ``template``, where the predictor assembles real inputs) real inputs, optionally with reference outputs; several
    go into the folder ``out`` (:func:`export_graph_folder`). Every graph is tagged with the weights it came from;
    ``on_graph(done, total)`` is called as each is written and checked (progress)."""
    predictor = load_predictor(ckpt, model=arch, audio_encoder_ckpt=audio_encoder_ckpt)
    if part not in predictor.networks:
        raise InputError(f"part must be one of {sorted(predictor.networks)} for {ckpt}, got {part!r}")
    net = predictor.networks[part]
    info = net.model_info
    if info.export_graphs is None and info.example_inputs is None:
        raise InputError(f"{ckpt} holds {info.name}: ONNX export serves models that declare their graphs (the lip-sync networks and "
                         "LivePortrait)")
    source = onnx_source(ckpt) if part == "net" else f"{onnx_source(audio_encoder_ckpt or ckpt)}.{part}"
    if info.export_graphs is not None:
        if template is not None or reference_outputs is not None:
            raise InputError(f"{info.name} exports as several graphs into a folder; template= and reference_outputs= apply to one-graph models")
        return export_graph_folder(net, out, source, tolerance, on_graph)
    if template is not None and not hasattr(predictor, "template_inputs"):
        raise InputError(f"template= gives real inputs to lip-sync networks; {info.name} takes none")
    real = predictor.template_inputs(template, part) if template is not None else None
    result = export_checked(net, out, source, real, tolerance)
    if on_graph is not None:
        on_graph(1, 1)
    written = write_reference_outputs(net, real if real is not None else example_inputs(net), reference_outputs) if reference_outputs else []
    inputs = {name: ["batch", *value.shape[1:]] for name, value in example_inputs(net).items()}
    return {**result, "inputs": inputs, "reference_outputs": str(reference_outputs) if written else None}


def export_graph_folder(net: nn.Module, out: str | os.PathLike, source: str, tolerance: float = 1e-4,
                        on_graph: Callable[[int, int], None] | None = None) -> dict:
    """Every graph of a model that exports as several (:func:`motionlab.models.model_graphs`, e.g. LivePortrait's
    modules) into the folder ``out`` (``<graph>.onnx``, each tagged with ``source``), each checked against PyTorch at
    batch 1 and 2. The folder is written whole beside ``out`` and swapped in at the end
    (:func:`motionlab.utils.io.atomic_dir`): a kill leaves the previous export or the new one, never graphs of two
    checkpoints; an ``out`` holding anything but graphs is refused."""
    folder = Path(out)
    if folder.suffix:
        raise InputError(f"out={out}: {net.model_info.name} exports as several graphs; give a folder (no suffix)")
    generator = torch.Generator().manual_seed(0)
    graphs = {batch: model_graphs(net, batch, generator) for batch in (1, 2)}
    report = {}
    with atomic_dir(folder, replaces=lambda existing: all(p.suffix == ".onnx" for p in existing.iterdir())) as scratch:
        for name, graph in graphs[1].items():
            path = scratch / f"{name}.onnx"
            export_onnx(graph.module, path, graph.inputs, graph.output_names, graph.opset)
            runner = OnnxRunner(path)
            worst = max(parity(graph.module, runner, graphs[batch][name].inputs, path) for batch in (1, 2))
            allowed = max(tolerance, graph.tolerance or 0.0)
            if worst > allowed:
                raise ParityError(f"{name}: onnxruntime differs from PyTorch by {worst:.3g} (> {allowed:g})")
            tag_source(path, source)
            report[name] = {"out": str(folder / path.name), "opset": graph.opset, "max_abs_difference": worst}
            if on_graph is not None:
                on_graph(len(report), len(graphs[1]))
    return {"out": str(folder), "graphs": report}


def _lora_run(ckpt: str | os.PathLike, base: str | os.PathLike | None) -> tuple[dict[str, nn.Module], dict]:
    """The networks of a LoRA run's checkpoint (adapters on ``net``) and its ``motionlab`` entry."""
    checkpoint = load_checkpoint(ckpt)
    meta = motionlab_meta(checkpoint, ckpt)
    if meta is None or meta.get("lora") is None:
        raise CheckpointFormatError(f"{ckpt} is not a LoRA run's checkpoint (no motionlab.lora entry): train one with lora=... init_ckpt=<base>")
    return checkpoint_models(checkpoint, ckpt, base=base), meta


def export_lora_adapter(ckpt: str | os.PathLike, out: str | os.PathLike, base: str | os.PathLike | None = None) -> dict:
    """``motionlab-export lora``: the adapters of a LoRA run's checkpoint as a safetensors file recording the base's SHA-256."""
    models, meta = _lora_run(ckpt, base)
    lora = meta["lora"]
    path = save_adapter(models["net"], out, lora["base_sha256"], Path(lora["base_path"]).name)
    return {"out": str(path), "bytes": path.stat().st_size, "tensors": len(read_adapter(path)[0]), "base_sha256": lora["base_sha256"]}


def merge_lora_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike, base: str | os.PathLike | None = None) -> dict:
    """``motionlab-export merge``: fold LoRA adapters into their base and write a normal motionlab checkpoint (loadable
    by every command, ONNX-exportable). ``ckpt`` is a LoRA run's checkpoint (its base found as recorded or at
    ``base``) or an adapter file (``base`` required: the checkpoint it was trained on)."""
    if str(ckpt).endswith(".safetensors"):
        if base is None:
            raise InputError(f"{ckpt} is an adapter file: give the base checkpoint it was trained on with base=PATH")
        base_checkpoint = load_checkpoint(base)
        meta = motionlab_meta(base_checkpoint, base)
        if meta is None:
            raise CheckpointFormatError(f"{base} is not a motionlab checkpoint: merging writes one, so the base must be one")
        models = checkpoint_models(base_checkpoint, base)
        load_adapter(models["net"], ckpt, file_digest(base), str(base))
        origin = {"adapter": str(ckpt), "adapter_sha256": file_digest(ckpt), "base_sha256": file_digest(base)}
    else:
        models, meta = _lora_run(ckpt, base)
        origin = {"lora_run": str(ckpt), "lora_run_sha256": file_digest(ckpt), "base_sha256": meta["lora"]["base_sha256"]}
    merge_lora(models["net"])
    state = {f"{attribute}.{key}": value for attribute, model in models.items() for key, value in model.state_dict().items()}
    payload = {"state_dict": state, "motionlab": {**{k: v for k, v in meta.items() if k != "lora"},
                                                  "models": {attribute: model.model_info.spec() for attribute, model in models.items()},
                                                  "merged_lora": origin}}
    out = Path(out)
    atomic_torch_save(payload, out)
    return {"out": str(out), "bytes": out.stat().st_size, **origin}
