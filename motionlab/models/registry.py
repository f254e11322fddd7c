"""Registered model variants (timm-style): each name is a function that builds the network from explicit
arguments, registered with the metadata inference and export need to call it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

ExampleInputs = Callable[[int, torch.Generator], dict[str, torch.Tensor]]
CheckpointFilter = Callable[[dict, str], dict]


@dataclass(frozen=True)
class ModelInfo:
    """What a built model is and how to call it; every model from :func:`create_model` carries one as ``model_info``.

    Args:
        name: the registered variant.
        family: what kind of network it is (``animator``, ``keypoint_animator``, ``lipsync_unet``, ``syncnet``,
            ``audio_encoder``, ``av_encoder``); predictors are chosen by it.
        input_size: (H, W) the model is trained and run at; inference resizes its inputs to it.
        value_range: range of image inputs and outputs.
        example_inputs: ``(batch, generator) -> {input name: tensor}`` realistic inputs for export and parity checks.
        output_names: names of the outputs in exported graphs.
        export_graphs: ``(model, batch, generator) -> {graph name: ExportGraph}`` for a model that exports as several
            graphs (LivePortrait's modules); without it a model with ``example_inputs`` exports as one graph.
        checkpoint_filter: ``(state_dict, source) -> state_dict`` mapping foreign key layouts (release files,
            other wrappers) onto this architecture's keys; lives beside the architecture.
        accepts_from: other variants whose motionlab checkpoints hold weights for this one (the filter extracts them).
        recognizes: ``(checkpoint) -> bool``, true for a foreign file only this variant reads (a LivePortrait release
            folder): such files load without naming the architecture.
        release_args: ``(checkpoint) -> args``, the builder's arguments a foreign file's own configs give (MuseTalk's
            folder carries its networks' configs), so the network is built to the file's sizes before loading.
        lora_targets: the default LoRA targets, a regular expression over module names (:mod:`motionlab.models.lora`).
        int8_modules: ``(model) -> names`` of the tensor-only sub-modules ``precision=int8`` runs as onnxruntime int8
            graphs (:mod:`motionlab.models.int8`): the convolution-heavy parts; keypoints, warps and soft masks stay fp32.
        float32_modules: ``(model) -> names`` of the sub-modules ``precision=bf16`` leaves in float32
            (:mod:`motionlab.models.bf16`): where bf16's rounding moves keypoints or warps, and so the whole render.
        published_settings: the predictor settings a foreign-format (published) file of this variant implies, where
            motionlab checkpoints record theirs (a SyncTalk_2D U-Net file runs in SyncTalk_2D's conventions).
        args: the explicit arguments it was built with; component: the sub-module taken from it, if any.
    """

    name: str
    family: str
    input_size: tuple[int, int] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    example_inputs: ExampleInputs | None = None
    output_names: tuple[str, ...] = ("output",)
    export_graphs: Callable[[nn.Module, int, torch.Generator | None], dict[str, "ExportGraph"]] | None = None
    checkpoint_filter: CheckpointFilter | None = None
    accepts_from: tuple[str, ...] = ()
    recognizes: Callable[[dict], bool] | None = None
    release_args: Callable[[dict], dict] | None = None
    lora_targets: str | None = None
    int8_modules: Callable[[nn.Module], tuple[str, ...]] | None = None
    float32_modules: Callable[[nn.Module], tuple[str, ...]] | None = None
    published_settings: dict = field(default_factory=dict)
    args: dict = field(default_factory=dict)
    component: str | None = None

    def spec(self) -> dict:
        """The plain-data recipe stored in checkpoints: rebuilt with :func:`motionlab.models.model_from_spec` only."""
        return {"name": self.name, "args": self.args, "component": self.component}


@dataclass(frozen=True)
class ExportGraph:
    """One graph a model exports as: the module called, example inputs by name, output names, opset, and the largest
    onnxruntime-vs-PyTorch difference it is held to when that must exceed the exporter's default (None: the default)."""

    module: nn.Module
    inputs: dict[str, torch.Tensor]
    output_names: tuple[str, ...]
    opset: int = 17
    tolerance: float | None = None


def model_graphs(model: nn.Module, batch: int = 1, generator: torch.Generator | None = None) -> dict[str, ExportGraph]:
    """The graphs ``model`` exports as, with example inputs of ``batch`` items: its family's own (``export_graphs``),
    or the model itself on its ``example_inputs``; a model that declares neither has no export (``TypeError``)."""
    info = model.model_info
    if info.export_graphs is not None:
        return info.export_graphs(model, batch, generator)
    if info.example_inputs is None:
        raise TypeError(f"{info.name} declares no example inputs or graphs: it has no ONNX export")
    return {info.name: ExportGraph(model, info.example_inputs(batch, generator), tuple(info.output_names))}


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    info: ModelInfo


_MODELS: dict[str, _Entry] = {}


def register_model(family: str, input_size: int | None = None, **info) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a variant builder under its function name, with its :class:`ModelInfo` fields.

    A builder that takes ``input_size`` records the value it was given as the model's input size.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        size = None if input_size is None else (input_size, input_size)
        _MODELS[name] = _Entry(builder, ModelInfo(name=name, family=family, input_size=size, **info))
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(_MODELS)


def _entry(name: str) -> _Entry:
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[name]


def recognize(checkpoint: dict) -> str | None:
    """The one variant whose ``recognizes`` accepts a foreign checkpoint, or None."""
    names = [name for name, entry in _MODELS.items() if entry.info.recognizes is not None and entry.info.recognizes(checkpoint)]
    return names[0] if len(names) == 1 else None


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` registered for ``name`` (before any build: no ``args``)."""
    return _entry(name).info


def model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name`` (its signature lists the variant's arguments)."""
    return _entry(name).builder


def _plain(value):
    """Config containers (Hydra passes OmegaConf nodes) as plain dicts and lists: what specs store and builders see."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# torch.nn.init's random fills, which every layer's reset_parameters calls
_RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_")


@contextmanager
def _random_init_skipped() -> Iterator[None]:
    """Layers built inside keep their parameters' allocated memory instead of drawing random values (the
    ``torch.nn.init`` fills are no-ops): for networks whose every parameter a strict load overwrites next. A vox-256
    FOMM builds in 0.02 s instead of 0.3 s, the release's MuseTalk U-Net in a fraction of its seconds."""
    saved = {name: getattr(nn.init, name) for name in _RANDOM_INITS}
    for name in _RANDOM_INITS:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def build(name: str, args: dict, initialize: bool = True) -> nn.Module:
    """Call the builder of ``name`` with ``args`` and attach its :class:`ModelInfo` as ``model_info``. With
    ``initialize=False`` the parameters are left uninitialised: only for a caller that loads all of them strictly
    right after (a checkpoint load; a missing key is an error there, so no uninitialised value survives)."""
    entry = _entry(name)
    args = {key: _plain(value) for key, value in args.items()}
    if initialize:
        model = entry.builder(**args)
    else:
        with _random_init_skipped():
            model = entry.builder(**args)
    info = replace(entry.info, args=dict(args))
    if "input_size" in args:
        info = replace(info, input_size=(int(args["input_size"]), int(args["input_size"])))
    model.model_info = info
    return model
