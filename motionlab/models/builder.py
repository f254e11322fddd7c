"""Checkpoint -> ready model: the one door through which every network is built and given weights.

A motionlab checkpoint (written by ``motionlab-train``) stores, under ``"motionlab"``, the task name and a
*spec* of every network it holds: ``{"name": registered variant, "args": plain values, "component": None}``.
Rebuilding goes through :func:`model_from_spec` only (registered builders, explicit arguments, no
``instantiate``), so a checkpoint cannot name code to run. Foreign files (FOMM ``*.pth.tar``, SyncTalk_2D
state dicts) load through the checkpoint filter registered beside each architecture. Reads are weights-only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from torch import nn

from motionlab.models.lora import LoraSpec, add_lora, check_base, load_adapter_state_dict
from motionlab.models.registry import build, list_models, model_builder, model_info, recognize
from motionlab.utils.checkpoint import (
    CheckpointFormatError,
    load_checkpoint,
    load_state_dict_strict,
    submodule_state_dict,
)
from motionlab.utils.config import STORED_PLAIN_TYPES, check_stored
from motionlab.utils.io import file_digest


def motionlab_meta(checkpoint: Mapping, source: str | os.PathLike) -> dict | None:
    """The ``"motionlab"`` entry of a checkpoint written by ``motionlab-train``, or None for other files.

    Every reader of a checkpoint's specs, predictor settings and stored run config gets them here, checked as plain
    data (:func:`motionlab.utils.config.check_stored`): nothing in them is resolved or names code."""
    meta = checkpoint.get("motionlab")
    if not isinstance(meta, dict) or not isinstance(meta.get("models"), dict):
        return None
    check_stored(meta, f"{source} [motionlab]")
    return meta


def _check_plain(value, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("_"):
                raise CheckpointFormatError(f"{where}: key {key!r} is not a plain argument name (specs hold no '_target_'-style keys)")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, STORED_PLAIN_TYPES):
        raise CheckpointFormatError(f"{where}: {type(value).__name__} is not a plain value")


def model_from_spec(spec: Mapping, where: str = "model spec", initialize: bool = True) -> nn.Module:
    """Build the network a stored spec describes (registered name, plain arguments, optional component);
    ``initialize=False``: for weights loaded strictly next (:func:`motionlab.models.registry.build`)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("args", {}), Mapping):
        raise CheckpointFormatError(f"{where}: expected {{'name': str, 'args': dict, 'component': str|None}}, got {spec!r}")
    args = dict(spec.get("args", {}))
    _check_plain(args, f"{where}.args")
    try:
        model = build(spec["name"], args, initialize)
    except KeyError as error:
        raise CheckpointFormatError(f"{where}: {error.args[0]}") from error
    component = spec.get("component")
    if component is None:
        return model
    if not isinstance(component, str) or not isinstance(getattr(model, component, None), nn.Module):
        raise CheckpointFormatError(f"{where}: {spec['name']} has no sub-network {component!r}")
    return take_component(model, component)


def take_component(model: nn.Module, component: str) -> nn.Module:
    """The sub-network ``component`` of a built model, carrying the parent's spec with the component named."""
    part = getattr(model, component)
    part.model_info = replace(model.model_info, component=component)
    return part


def load_pretrained(model: nn.Module, path: str | os.PathLike, checkpoint: Mapping | None = None) -> nn.Module:
    """Load weights into a model built by :func:`create_model`, from a motionlab checkpoint or a foreign file.

    A motionlab checkpoint must hold this variant (or one listed in ``accepts_from``) as its ``net``; other
    files go through the variant's ``checkpoint_filter``. Keys and shapes must match exactly: otherwise a
    :class:`~motionlab.utils.checkpoint.WeightMismatchError` names the missing, unexpected and mis-shaped keys.
    """
    checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
    info = model.model_info
    meta = motionlab_meta(checkpoint, path)
    if meta is not None:
        stored = meta["models"].get("net", {})
        if stored.get("name") != info.name and stored.get("name") not in info.accepts_from:
            raise CheckpointFormatError(
                f"{path} holds a {stored.get('name')} (task {meta.get('task')}), not a {info.name}"
                + (f" (nor {', '.join(info.accepts_from)})" if info.accepts_from else "")
            )
        state = submodule_state_dict(checkpoint["state_dict"], "net")
    else:
        state = checkpoint["state_dict"] if isinstance(checkpoint.get("state_dict"), Mapping) else checkpoint
    if info.checkpoint_filter is not None:
        state = info.checkpoint_filter(dict(state), str(path))
    load_state_dict_strict(model, state, str(path))
    return model


def create_model(name: str, ckpt: str | os.PathLike | None = None, **overrides) -> nn.Module:
    """Build the registered variant ``name`` with ``overrides`` of its explicit arguments; with ``ckpt``
    (a checkpoint or release file), load its weights (see :func:`load_pretrained`). Unknown names list the known ones."""
    model = build(name, overrides, initialize=ckpt is None)
    if ckpt is not None:
        load_pretrained(model, ckpt)
    return model


# the config checker validates a create_model node against the variant builder named in it
create_model.signature_for = lambda node: model_builder(node.get("name"))


def stored_models(checkpoint: Mapping, source: str | os.PathLike, base: str | os.PathLike | None = None) -> dict[str, nn.Module]:
    """Every network a motionlab checkpoint holds (its ``net`` and frozen helpers), rebuilt from their specs,
    weights loaded strictly, in eval mode. A LoRA checkpoint holds adapters only: its networks are its base
    checkpoint's (``base``, or the path it recorded; the SHA-256 must match) with the adapters added to ``net``."""
    meta = motionlab_meta(checkpoint, source)
    if meta is None:
        raise CheckpointFormatError(f"{source} is not a motionlab checkpoint (no 'motionlab' entry with model specs)")
    if meta.get("lora") is not None:
        return _lora_checkpoint_models(checkpoint, meta, source, base)
    models = {}
    for attribute, spec in meta["models"].items():
        model = model_from_spec(spec, f"{source} [motionlab.models.{attribute}]", initialize=False)
        load_state_dict_strict(model, submodule_state_dict(checkpoint["state_dict"], attribute), f"{source} [{attribute}]")
        models[attribute] = model.eval()
    return models


def _lora_checkpoint_models(checkpoint: Mapping, meta: dict, source: str | os.PathLike, base: str | os.PathLike | None) -> dict[str, nn.Module]:
    lora = meta["lora"]
    base_path = Path(base if base is not None else lora["base_path"])
    if not base_path.is_file():
        raise FileNotFoundError(f"{source} holds LoRA adapters trained on base {lora['base_path']} (sha256 {lora['base_sha256']}), "
                                "which is not there: give the base checkpoint with base=PATH")
    check_base(lora["base_sha256"], file_digest(base_path), str(source), str(base_path), Path(lora["base_path"]).name)
    models = checkpoint_models(load_checkpoint(base_path), base_path, meta["models"]["net"]["name"])
    add_lora(models["net"], LoraSpec.from_dict(lora["spec"], f"{source} [motionlab.lora.spec]"))
    load_adapter_state_dict(models["net"], submodule_state_dict(checkpoint["state_dict"], "net"), str(source))
    models["net"].eval()
    return models


def checkpoint_models(checkpoint: Mapping, source: str | os.PathLike, name: str | None = None,
                      base: str | os.PathLike | None = None) -> dict[str, nn.Module]:
    """The networks of an already-read checkpoint: a motionlab checkpoint's stored ones (``name`` may confirm its
    ``net``; ``base`` locates a LoRA checkpoint's base), or ``{"net": ...}`` for a foreign file, which needs
    ``name``, the registered variant it fits, unless a variant recognises it (a LivePortrait release folder)."""
    if motionlab_meta(checkpoint, source) is not None:
        models = stored_models(checkpoint, source, base)
        if name is not None and models["net"].model_info.name != name:
            raise CheckpointFormatError(f"{source} holds a {models['net'].model_info.name}, not a {name}")
        return models
    name = name if name is not None else recognize(checkpoint)
    if name is None:
        raise CheckpointFormatError(
            f"{source} is not a motionlab checkpoint (entries {sorted(checkpoint)[:8]}); for a published file say which "
            f"architecture it is with arch=NAME, one of: {', '.join(list_models())}"
        )
    release_args = model_info(name).release_args
    args = release_args(checkpoint) if release_args is not None else {}
    return {"net": load_pretrained(build(name, args, initialize=False), source, checkpoint).eval()}


def load_model(ckpt: str | os.PathLike, name: str | None = None, component: str | None = None) -> nn.Module:
    """A ready network (eval mode) from a checkpoint file: a motionlab checkpoint's ``net`` rebuilt from its spec,
    or a foreign file read as the registered variant ``name``. ``component`` takes a sub-network (the
    ``kp_detector`` of a descriptor model, say), which carries the spec with the component named."""
    model = checkpoint_models(load_checkpoint(ckpt), ckpt, name)["net"]
    return take_component(model, component) if component is not None else model


def from_pretrained(folder: str | os.PathLike, component: str | None = None) -> nn.Module:
    """The network of a pretrained folder (``model.safetensors`` + ``config.json`` + ``README.md``, written at the end
    of every training run as ``<run>/pretrained``: :func:`motionlab.utils.checkpoint.save_pretrained`). Every command's
    ``ckpt=`` takes the same folder."""
    from motionlab.utils.checkpoint import PRETRAINED_WEIGHTS

    if not (Path(folder) / PRETRAINED_WEIGHTS).is_file():
        raise CheckpointFormatError(f"{folder} is not a pretrained folder (no {PRETRAINED_WEIGHTS}); a run writes one as <run folder>/pretrained")
    return load_model(folder, component=component)


def freeze(module: nn.Module) -> nn.Module:
    """A frozen helper network: eval mode, no gradients (tasks keep it in eval mode while training)."""
    return module.eval().requires_grad_(False)

