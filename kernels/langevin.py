"""The Langevin update shared by training (torch) and the runtime (numpy / device arrays).

One step of unadjusted Langevin dynamics on an energy U with gradient ``grad = ∂U/∂y``::

    y' = y − step²/2 · grad + step · noise

``noise`` is a standard-normal array of y's shape, or None for the noise-free (gradient
descent) variant used at prediction time. Written with operators only, so the same code runs
on numpy arrays, torch tensors and anything else with arithmetic operators.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def langevin_step(y: T, grad: T, step: float, noise: T | None = None) -> T:
    """Return ``y − step²/2·grad (+ step·noise)``; y, grad and noise share one shape."""
    moved = y - (0.5 * step * step) * grad  # type: ignore[operator]
    if noise is None:
        return moved
    return moved + step * noise  # type: ignore[operator]
