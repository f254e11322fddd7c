"""Low-rank adapters (LoRA) on any registered network, through peft.

A frozen base network gets LoRA layers on the modules whose names match a pattern (the variant's own
``ModelInfo.lora_targets`` unless the config gives one): ``Linear`` and ``Conv1d/2d/3d`` with ``groups == 1``.
peft's conv LoRA is a same-shape convolution to ``rank`` channels followed by a 1x1 convolution back.
Grouped / depthwise convolutions are refused by name: peft cannot merge them. Modules listed in
``modules_to_save`` (a BatchNorm, say) are trained as full copies.

Facts this module designs around:

- The adapter state (:func:`adapter_state_dict`) is the LoRA matrices and the ``modules_to_save`` copies; the
  base weights stay untouched, and frozen BatchNorm statistics are kept still by the task (eval mode).
- Merging adds ``B @ A * alpha / rank`` to the base weight's ``.data``. A weight recomputed by a hook or a
  parametrisation (legacy ``spectral_norm`` / ``weight_norm``, ``torch.nn.utils.parametrizations``) would drop
  that sum on the next forward. :func:`merge_lora` therefore first folds the reparametrisation into a plain
  weight (its eval-mode value), and refuses a layer carrying any other forward hook.
- An adapter belongs to one base: files record the SHA-256 of the base checkpoint they were trained on, and
  :func:`load_adapter` refuses another base, naming both digests.

peft is imported when LoRA is first used: it pulls in transformers, which costs seconds.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from motionlab.utils.checkpoint import CheckpointFormatError, check_state_dict
from motionlab.utils.config import check_stored
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_path

ADAPTER_FORMAT = "motionlab-lora"
ADAPTER_NAME = "default"
_ADAPTER_KEY = re.compile(r"(^|\.)(lora_[A-Za-z_]+|lora_magnitude_vector|modules_to_save)\.")
_LORA_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class LoraSpec:
    """What to adapt and how (the ``lora`` config group).

    Args:
        rank: the rank ``r`` of every adapter.
        alpha: scale numerator; the update is ``B @ A * alpha / rank``.
        dropout: dropout on the adapter's input (training only).
        target_modules: a regular expression matched against full module names (``decoder\\.\\d+\\.1\\.0``);
            ``None`` takes the variant's default (:attr:`ModelInfo.lora_targets`).
        modules_to_save: names (or name suffixes) of modules trained in full next to the adapters.
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str | None = None
    modules_to_save: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise InputError(f"lora.rank must be a positive integer, got {self.rank!r}")
        if not _is_number(self.alpha) or not self.alpha > 0:
            raise InputError(f"lora.alpha must be a number > 0, got {self.alpha!r}")
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise InputError(f"lora.dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.target_modules is not None and not isinstance(self.target_modules, str):
            raise InputError(f"lora.target_modules must be a regular expression (a string) or null, got {self.target_modules!r}")
        if not isinstance(self.modules_to_save, (list, tuple)) or not all(isinstance(name, str) for name in self.modules_to_save):
            raise InputError(f"lora.modules_to_save must be a list of module names, got {self.modules_to_save!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "modules_to_save", tuple(self.modules_to_save or ()))

    @classmethod
    def from_dict(cls, values: dict, where: str = "lora") -> "LoraSpec":
        if not isinstance(values, dict):
            raise InputError(f"{where}: LoRA settings must be a mapping of {sorted(f.name for f in fields(cls))}, got {values!r}"[:300])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{where}: unknown keys {unknown}; LoRA settings are {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["modules_to_save"] = list(self.modules_to_save)
        return values


def _peft():
    import peft
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import ModulesToSaveWrapper

    return peft, LoraLayer, ModulesToSaveWrapper


def lora_spec(net: nn.Module) -> LoraSpec | None:
    """The spec of the adapters on ``net`` (``None``: no LoRA)."""
    return getattr(net, "lora_spec", None)


def resolve_targets(net: nn.Module, spec: LoraSpec) -> LoraSpec:
    """``spec`` with ``target_modules`` filled from the variant's default; checks that the pattern names
    adaptable modules only."""
    pattern = spec.target_modules or getattr(getattr(net, "model_info", None), "lora_targets", None)
    if pattern is None:
        name = getattr(getattr(net, "model_info", None), "name", type(net).__name__)
        raise InputError(f"lora.target_modules is not set and {name} declares no default targets; give a regular expression over its module names")
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise InputError(f"lora.target_modules {pattern!r} is not a regular expression: {error}") from error
    modules = dict(net.named_modules())
    targets = [name for name in modules if name and regex.fullmatch(name)]
    if not targets:
        examples = ", ".join(name for name, m in modules.items() if isinstance(m, _LORA_TYPES))
        raise InputError(f"lora.target_modules {pattern!r} matches no module; Linear / Conv modules are: {examples[:600]}")
    wrong = [f"{name} ({type(modules[name]).__name__})" for name in targets if not isinstance(modules[name], _LORA_TYPES)]
    if wrong:
        raise InputError(f"lora.target_modules {pattern!r} matches modules LoRA cannot adapt: {', '.join(wrong[:10])}; "
                         "match Linear / Conv1d / Conv2d / Conv3d modules only")
    grouped = [name for name in targets if isinstance(modules[name], nn.modules.conv._ConvNd) and modules[name].groups > 1]
    if grouped:
        raise InputError(f"lora.target_modules {pattern!r} matches grouped / depthwise convolutions {', '.join(grouped[:10])}: "
                         "peft cannot merge LoRA into them; narrow the pattern")
    for saved in spec.modules_to_save:
        inside = [name for name in targets if name == saved or name.endswith("." + saved) or name.startswith(saved + ".")]
        if not any(name == saved or name.endswith("." + saved) for name in modules):
            raise InputError(f"lora.modules_to_save: {net.__class__.__name__} has no module named {saved!r}")
        if inside:
            raise InputError(f"lora.modules_to_save {saved!r} overlaps the LoRA targets {inside[:5]}; a module is adapted or saved, not both")
    return LoraSpec(spec.rank, spec.alpha, spec.dropout, pattern, spec.modules_to_save)


def add_lora(net: nn.Module, spec: LoraSpec) -> nn.Module:
    """Inject LoRA layers into ``net`` in place (base frozen, adapters trainable); returns ``net``.

    The adapters start as the identity (``B = 0``), so the network computes what the base did.
    """
    if lora_spec(net) is not None:
        raise InputError("this network already carries LoRA adapters; merge them (merge_lora) before adding others")
    spec = resolve_targets(net, spec)
    peft, _, _ = _peft()
    config = peft.LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=spec.target_modules,
                             modules_to_save=list(spec.modules_to_save) or None)
    peft.inject_adapter_in_model(config, net, adapter_name=ADAPTER_NAME)
    net.lora_spec = spec
    return net


def is_adapter_key(key: str) -> bool:
    """Whether a state-dict key belongs to the adapters (LoRA matrices, ``modules_to_save`` copies)."""
    return _ADAPTER_KEY.search(key) is not None


def adapter_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter entries of ``net``'s state dict (keys as in the network, e.g. ``up1.lora_A.default.weight``)."""
    if lora_spec(net) is None:
        raise InputError("this network has no LoRA adapters")
    return {key: value for key, value in net.state_dict().items() if is_adapter_key(key)}


def load_adapter_state_dict(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load adapter weights into a network carrying the same adapters; keys and shapes must match exactly."""
    check_state_dict(adapter_state_dict(net), state, f"the LoRA adapters of {net.model_info.name}", source)
    net.load_state_dict(state, strict=False)


def set_lora_enabled(net: nn.Module, enabled: bool) -> None:
    """Switch the adapters on or off (off: the base network's outputs) without touching any weight."""
    _, LoraLayer, ModulesToSaveWrapper = _peft()
    for module in net.modules():
        if isinstance(module, (LoraLayer, ModulesToSaveWrapper)):
            module.enable_adapters(enabled)


def _fold_weight_reparametrization(layer: nn.Module, name: str) -> None:
    """Turn a weight recomputed on every forward (spectral / weight norm, parametrisations) into a plain
    parameter holding its current eval-mode value, so that a merged update is not overwritten."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm, remove_spectral_norm
    from torch.nn.utils.weight_norm import WeightNorm, remove_weight_norm

    training = layer.training
    layer.eval()
    if parametrize.is_parametrized(layer, "weight"):
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    for hook in list(layer._forward_pre_hooks.values()):
        if isinstance(hook, SpectralNorm):
            remove_spectral_norm(layer, hook.name)
        elif isinstance(hook, WeightNorm):
            remove_weight_norm(layer, hook.name)
    layer.train(training)
    if layer._forward_pre_hooks or layer._forward_hooks:
        raise InputError(f"cannot merge LoRA into {name}: it carries forward hooks that may change its weight "
                         f"({list(layer._forward_pre_hooks.values()) + list(layer._forward_hooks.values())})")


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


@torch.no_grad()
def merge_lora(net: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights and remove the LoRA layers, in place; returns ``net`` with the
    base architecture's module names (a normal checkpoint of the variant loads into it strictly).

    A weight under spectral / weight norm is folded to a plain weight first (:func:`_fold_weight_reparametrization`):
    the merged network computes what the unmerged one does in eval mode.
    """
    if lora_spec(net) is None:
        raise InputError("this network has no LoRA adapters to merge")
    _, LoraLayer, ModulesToSaveWrapper = _peft()
    for name, module in list(net.named_modules()):
        if isinstance(module, LoraLayer):
            base = module.get_base_layer()
            _fold_weight_reparametrization(base, name)
            module.merge(safe_merge=True)
            _replace(net, name, base)
        elif isinstance(module, ModulesToSaveWrapper):
            _replace(net, name, module.modules_to_save[ADAPTER_NAME])
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    del net.lora_spec
    return net


def save_adapter(net: nn.Module, path: str | os.PathLike, base_sha256: str, base_name: str) -> Path:
    """Write the adapters of ``net`` as a safetensors file (atomically), with what they need as metadata: the LoRA
    spec, the base network's spec and the SHA-256 / file name of the base checkpoint."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"adapter files are safetensors: give a path ending in .safetensors, got {path}")
    metadata = {"format": ADAPTER_FORMAT, "lora": json.dumps(lora_spec(net).to_dict()), "base_sha256": base_sha256,
                "base_name": base_name, "model": json.dumps(net.model_info.spec())}
    tensors = {key: value.detach().contiguous().cpu() for key, value in adapter_state_dict(net).items()}
    with atomic_path(path) as scratch:
        save_file(tensors, str(scratch), metadata=metadata)
    return path


def read_adapter(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata (``lora`` spec, ``model`` spec, ``base_sha256``, ``base_name``) of an adapter file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA adapter {path} does not exist; write one with motionlab-export lora ckpt=<LoRA run> out={path.name}")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = dict(file.metadata() or {})
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except Exception as error:  # truncated files, other formats
        raise CheckpointFormatError(f"{path} is not a readable safetensors file ({type(error).__name__}: {error})") from error
    if metadata.get("format") != ADAPTER_FORMAT:
        raise CheckpointFormatError(f"{path} is not a motionlab LoRA adapter (metadata format {metadata.get('format')!r}, expected {ADAPTER_FORMAT!r})")
    try:
        meta = {"lora": json.loads(metadata["lora"]), "model": json.loads(metadata["model"]),
                "base_sha256": metadata["base_sha256"], "base_name": metadata.get("base_name", "")}
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointFormatError(f"{path}: adapter metadata is incomplete or malformed ({error})") from error
    for key, kind in (("lora", dict), ("model", dict), ("base_sha256", str), ("base_name", str)):
        if not isinstance(meta[key], kind):
            raise CheckpointFormatError(f"{path}: adapter metadata '{key}' must be a {kind.__name__}, got {str(meta[key])[:80]!r}; "
                                        "write the file again with motionlab-export lora")
    check_stored(meta, f"{path} [adapter metadata]")
    spec = LoraSpec.from_dict(meta["lora"], f"{path} [lora]")
    _check_adapter_ranks(tensors, spec.rank, path)
    return tensors, meta


def _check_adapter_ranks(tensors: dict[str, torch.Tensor], rank: int, path: Path) -> None:
    """The rank the metadata claims must be the rank of the file's matrices (``lora_A``: rank rows, ``lora_B``: rank
    columns), checked before any layer is built: a claimed rank is never allocated beyond what the file holds."""
    matrices = {key: value for key, value in tensors.items() if ".lora_A." in key or ".lora_B." in key}
    if not matrices:
        raise CheckpointFormatError(f"{path} holds no LoRA matrices (lora_A / lora_B tensors); it is not an adapter file")
    for key, value in matrices.items():
        found = value.shape[0] if ".lora_A." in key else value.shape[1] if value.dim() > 1 else None
        if found != rank:
            raise CheckpointFormatError(f"{path}: its metadata says rank {rank}, but {key} has shape {tuple(value.shape)}; "
                                        "the file is damaged or was edited")


def check_base(adapter_sha256: str, base_sha256: str, adapter_source: str, base_source: str, base_name: str = "") -> None:
    """Refuse an adapter trained on another base, naming both digests."""
    if adapter_sha256 != base_sha256:
        trained_on = f" ({base_name})" if base_name else ""
        raise CheckpointFormatError(
            f"{adapter_source} was trained on base sha256 {adapter_sha256}{trained_on}, but {base_source} has sha256 {base_sha256}: "
            "an adapter only fits the base it was trained on; give that base checkpoint"
        )


def load_adapter(net: nn.Module, path: str | os.PathLike, base_sha256: str, base_source: str) -> nn.Module:
    """Add the adapters of the file at ``path`` to ``net`` (unmerged: :func:`set_lora_enabled` switches them),
    after checking that ``net`` is the base they were trained on (``base_sha256``: its checkpoint's digest)."""
    tensors, meta = read_adapter(path)
    check_base(meta["base_sha256"], base_sha256, str(path), base_source, meta["base_name"])
    if meta["model"].get("name") != net.model_info.name:
        raise CheckpointFormatError(f"{path} adapts a {meta['model'].get('name')}, not a {net.model_info.name}")
    add_lora(net, LoraSpec.from_dict(meta["lora"], f"{path} [lora]"))
    load_adapter_state_dict(net, tensors, str(path))
    return net
