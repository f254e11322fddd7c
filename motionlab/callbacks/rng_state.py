"""Save and restore every random number generator with the checkpoint, so a resumed run continues exactly."""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RNGStateCallback(Callback):
    """Puts the Python, NumPy and torch (CPU and CUDA) generator states into checkpoints.

    States are stored as tensors and plain lists so checkpoints stay ``weights_only`` loadable.
    """

    def state_dict(self) -> dict:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": {"kind": kind, "keys": keys.tolist(), "position": position, "has_gauss": has_gauss, "cached": cached},
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        n = state_dict["numpy"]
        np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["position"], n["has_gauss"], n["cached"]))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
