"""The one shape-check idiom of the geometry functions (kornia's ``KORNIA_CHECK_SHAPE`` in spirit)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_shape(tensor: torch.Tensor, dims: Sequence[str | int], name: str) -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``len(dims)`` axes whose sizes match ``dims``.

    ``dims`` names each axis: an ``int`` must match exactly, a ``str`` ("B", "H", ...) matches any size;
    a leading ``"*"`` allows any number of leading axes. Example: ``check_shape(kp, ["B", "K", 2], "keypoints")``.
    """
    expected = list(dims)
    shape = tuple(tensor.shape)
    if expected and expected[0] == "*":
        expected = expected[1:]
        shape = shape[len(shape) - len(expected):] if len(shape) >= len(expected) else None
    ok = shape is not None and len(shape) == len(expected) and all(
        not isinstance(d, int) or d == size for d, size in zip(expected, shape)
    )
    if not ok:
        raise ValueError(f"{name} must have shape ({', '.join(map(str, dims))}), got {tuple(tensor.shape)}")
