"""The Langevin update and the Langevin chain, shared by training (torch), the runtime (numpy /
device arrays) and the Triton model.

One step of unadjusted Langevin dynamics on an energy U with gradient ``grad = ∂U/∂y``::

    y' = y − step²/2 · grad + step · noise

``noise`` is a standard-normal array of y's shape, or None for the noise-free (gradient
descent) variant used at prediction time. Written with operators only, so the same code runs
on numpy arrays, torch tensors and anything else with arithmetic operators.

``langevin_chain`` is the one K-step loop: the cooperative predict/refine (``kernels/coop.py``)
and every training chain (``train/coop/langevin.py``) run it with their own gradient callable.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")


def langevin_step(y: T, grad: T, step: float, noise: T | None = None) -> T:
    """Return ``y − step²/2·grad (+ step·noise)``; y, grad and noise share one shape."""
    moved = y - (0.5 * step * step) * grad
    if noise is None:
        return moved
    return moved + step * noise


def langevin_chain(
    grad: Callable[[T], T],
    y: T,
    steps: int,
    step_size: float,
    noise: Any = None,
    *,
    update: Callable[[T, T, float, T | None], T] = langevin_step,
    after_step: Callable[[int, T], T] | None = None,
) -> T:
    """K Langevin steps from ``y``: ``y ← update(y, grad(y), step_size, ξ_k)``; returns y_K.

    ``noise`` gives ξ_k: None (noise-free), an array indexed by step (``noise[k]``, e.g. shape
    ``(K, *y.shape)``), or a callable ``k -> ξ_k`` (fresh draws). ``update`` has
    ``langevin_step``'s signature; an in-place form (``coop.BufferOps.step``) keeps the loop
    allocation-free. ``after_step(k, y)`` sees every new iterate and returns the one to continue
    from (a projection, a NaN watch).
    """
    for k in range(steps):
        xi = None if noise is None else (noise(k) if callable(noise) else noise[k])
        y = update(y, grad(y), step_size, xi)
        if after_step is not None:
            y = after_step(k, y)
    return y
