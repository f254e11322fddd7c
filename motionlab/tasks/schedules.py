"""Learning-rate schedules built from config as partials taking ``(optimizer, total_steps)``."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from motionlab.utils.errors import InputError


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.05) -> LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` of the base rate at ``total_steps``."""
    if total_steps < 1:
        raise InputError(f"warmup_cosine: total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise InputError(f"warmup_cosine: min_lr_ratio must be in [0, 1], got {min_lr_ratio}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def multistep(optimizer: Optimizer, total_steps: int, milestones: tuple[float, ...] = (0.6, 0.9), gamma: float = 0.1) -> LambdaLR:
    """Multiply the rate by ``gamma`` at each milestone, given as a fraction of training (FOMM: epochs 60, 90 of 100)."""
    if any(not 0.0 < m < 1.0 for m in milestones):
        raise InputError(f"multistep: milestones are fractions of training in (0, 1), got {milestones}")
    steps = sorted(int(m * total_steps) for m in milestones)
    return LambdaLR(optimizer, lambda step: gamma ** sum(step >= s for s in steps))
