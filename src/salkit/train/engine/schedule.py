"""Per-step learning-rate schedules: a function of the optimiser step alone, so exact resume needs no
scheduler state (the rate is set before every step from each parameter group's ``base_lr``)."""

from __future__ import annotations


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """Multiplier of the base rate for optimiser step ``step`` (0-based): linear up over ``warmup``
    steps, then linear down to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    return max(0.0, 1.0 - (step - warmup) / (total - warmup))
