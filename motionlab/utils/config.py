"""Validate a composed run config before anything is built or trained.

Every node with a ``_target_`` is checked against the signature of what it builds: a key that is not
a parameter, or a value whose type contradicts the parameter's annotation, is one :class:`ConfigError`
naming the dotted key. Missing mandatory values (``???``) are reported the same way.
"""

from __future__ import annotations

import inspect
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from motionlab.utils.errors import InputError

REQUIRED_KEYS = ("task_name", "seed", "data", "model", "trainer", "paths")
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


class ConfigError(InputError):
    """An invalid config value; the message names the dotted key."""


def _constructor(node: Mapping, path: str) -> tuple[Callable, set[str]]:
    """What ``node`` builds, and the keys its factory takes itself rather than passing on."""
    target = node["_target_"]
    try:
        constructor = get_object(target)
    except Exception as error:
        raise ConfigError(f"config key '{path}._target_': cannot import {target!r} ({error})") from error
    # a factory whose parameters depend on the node (create_model: the variant's builder) says so itself;
    # its own keys (create_model's name and ckpt) are not the builder's
    signature_for = getattr(constructor, "signature_for", None)
    if signature_for is None:
        return constructor, set()
    try:
        return signature_for(node), set(inspect.signature(constructor).parameters)
    except KeyError as error:
        raise ConfigError(f"config key '{path}.name': {error.args[0]}") from error


def _signature_of(constructor: Callable) -> tuple[inspect.Signature, dict]:
    function = constructor.__init__ if inspect.isclass(constructor) else constructor
    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # annotations that cannot be resolved here are simply not type-checked
        hints = {}
    return signature, hints


def _matches(value, annotation) -> bool:
    """Whether a plain config value can stand for a parameter annotated ``annotation``."""
    if annotation is inspect.Parameter.empty or annotation is typing.Any:
        return True
    if isinstance(value, Mapping) and "_target_" in value:
        return True  # built by instantiate; its own node is checked separately
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in args)
    if origin is typing.Literal:
        return value in args
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation in (Path, os.PathLike) or origin is os.PathLike:
        return isinstance(value, str)
    container = origin or annotation
    if container in (list, tuple, Sequence, typing.Sequence):
        if not isinstance(value, list):
            return False
        element = args[0] if args and (container is not tuple or len(args) == 2 and args[1] is Ellipsis or len(args) == 1) else None
        return element is None or all(_matches(v, element) for v in value)
    if container in (dict, Mapping, typing.Mapping):
        return isinstance(value, Mapping)
    return True  # objects, callables, ...: not expressible as plain values, nothing to check


def _describe(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _check_target(node: Mapping, path: str) -> None:
    constructor, factory_keys = _constructor(node, path)
    signature, hints = _signature_of(constructor)
    parameters = signature.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    name = getattr(constructor, "__qualname__", str(constructor))
    for key, value in node.items():
        if key in HYDRA_KEYS or key in factory_keys:
            continue
        if key not in parameters:
            if accepts_any:
                continue
            accepted = ", ".join(p for p in parameters if p not in ("self", "args", "kwargs"))
            raise ConfigError(f"config key '{path}.{key}' is not a parameter of {name} (it accepts: {accepted})")
        annotation = hints.get(key, parameters[key].annotation)
        if not _matches(value, annotation):
            raise ConfigError(
                f"config key '{path}.{key}' must be {_describe(annotation)} (parameter of {name}), "
                f"got {value!r} ({type(value).__name__})"
            )


def _walk(node, path: str) -> None:
    if isinstance(node, Mapping):
        if "_target_" in node:
            _check_target(node, path)
        for key, value in node.items():
            _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _walk(value, f"{path}[{index}]")


def resolved_container(cfg: DictConfig) -> dict:
    """The config as plain containers with interpolations resolved; missing values raise :class:`ConfigError`."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:
        raise ConfigError(f"config key '{error.full_key}' is required (???); set it on the command line, e.g. {error.full_key}=...") from error
    except InterpolationResolutionError as error:
        raise ConfigError(f"config key '{error.full_key}': {error.msg}") from error


# values whose type says too little: dotted key -> (rule, what the value must be)
VALUE_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "data.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "data.eval_batch_size": (lambda v: v >= 1, "an integer >= 1 (or null: data.batch_size)"),
    "data.num_workers": (lambda v: v >= 0, "an integer >= 0"),
    "data.image_size": (lambda v: v >= 16 and v % 8 == 0, "a multiple of 8, at least 16 (the networks downsample by 8)"),
    "model.optimizer.lr": (lambda v: v >= 0, "a learning rate >= 0"),
    "trainer.max_epochs": (lambda v: v == -1 or v >= 1, "an integer >= 1 (or -1: no limit)"),
    "trainer.max_steps": (lambda v: v == -1 or v >= 1, "an integer >= 1 (or -1: no limit)"),
}


def _check_values(container: Mapping) -> None:
    for key, (rule, expected) in VALUE_RULES.items():
        node = container
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, (int, float)) and not isinstance(node, bool) and not rule(node):
            raise ConfigError(f"config key '{key}' is {node}; it must be {expected}")


def validate_config(cfg: DictConfig, required: Sequence[str] = REQUIRED_KEYS) -> dict:
    """Check ``cfg`` and return it resolved as plain containers; raise :class:`ConfigError` on the first problem."""
    for key in required:
        if key not in cfg or cfg[key] is None:
            raise ConfigError(f"config key '{key}' is required but missing")
    container = resolved_container(cfg)
    _walk(container, "")
    _check_values(container)
    return container


STORED_PLAIN_TYPES = (str, int, float, bool, type(None))


def check_stored(value, where: str, path: str = "") -> None:
    """Require a value read from a file (a checkpoint's stored run config and specs, an adapter's or a profile's
    metadata) to be plain data: string keys, plain values, and no ``${...}``. Such values are never resolved, so an
    interpolation there can only be an attempt to make OmegaConf build something; it is refused, naming the key."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: key {key!r} at '{path or '.'}' is not a string; a stored config holds plain data")
            if "${" in key:
                raise ConfigError(f"{where}: key {key!r} at '{path or '.'}' holds an interpolation; a stored config is data and never resolved")
            check_stored(item, where, f"{path}.{key}" if path else key)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_stored(item, where, f"{path}[{index}]")
    elif isinstance(value, str):
        if "${" in value:
            raise ConfigError(f"{where}: '{path}' holds the interpolation {value[:80]!r}; a stored config is data, never resolved, "
                              "and may not hold ${...}")
    elif not isinstance(value, STORED_PLAIN_TYPES):
        raise ConfigError(f"{where}: '{path}' is a {type(value).__name__}, not a plain value")


def build_stored(node: Mapping, allowed: Sequence[str], where: str, path: str = "data", **overrides):
    """Build an object from a config read from a file, without Hydra or OmegaConf: the node's ``_target_`` (and that of
    every nested node) must be one of ``allowed``; its keys and value types are checked against the constructor's
    signature (:func:`validate_config`'s rules); nothing is resolved. ``overrides`` replace stored values (paths the
    command decides itself, such as a cache folder, are never taken from a file)."""
    check_stored(node, where, path)

    def build(value, at: str):
        if isinstance(value, Mapping) and "_target_" in value:
            target = value["_target_"]
            if target not in allowed:
                raise ConfigError(f"{where}: '{at}._target_' is {target!r}, which a stored config may not name "
                                  f"(allowed: {', '.join(allowed)})")
            extra = sorted(key for key in value if key in HYDRA_KEYS and key != "_target_")
            if extra:
                raise ConfigError(f"{where}: '{at}.{extra[0]}' is not allowed in a stored config")
            try:
                _check_target(value, at)
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from error
            constructor, _ = _constructor(value, at)
            return constructor(**{key: build(item, f"{at}.{key}") for key, item in value.items() if key != "_target_"})
        if isinstance(value, Mapping):
            return {key: build(item, f"{at}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [build(item, f"{at}[{index}]") for index, item in enumerate(value)]
        return value

    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError(f"{where}: '{path}' names nothing to build (no _target_)")
    node = dict(node)
    if node["_target_"] in allowed:  # an override applies where the constructor has that parameter; others fail in build
        parameters = _signature_of(_constructor(node, path)[0])[0].parameters
        node.update({key: value for key, value in overrides.items() if key in parameters})
    return build(node, path)
