"""The training side's Langevin chain (torch) and the cooperative model's two chains on it.

``run_chain`` is the one chain every trainer uses (Algorithm 1's chains on Y and h, the scribble
recovery chains of Algorithm 2, the latent-variable baseline): ``salkit.kernels.langevin``'s
``langevin_chain`` — the loop the runtime's and the Triton model's descent also run — with fresh
noise per step (or given noises), a NaN/inf watch and an optional projection after every step.

Gradients are taken with ``torch.autograd.grad`` with respect to the chain variable only
(``gradient``), so nothing is ever written into a parameter's ``.grad``. A batch of B chains
runs as one pass; the chains are independent as long as the networks treat samples
independently (the energy runs with batch-norm in eval mode during Langevin, the generator's
decoder has no batch norm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from salkit.kernels.langevin import langevin_chain

Grad = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Chain:
    value: torch.Tensor  # the revised variable, detached
    bad_step: int | None  # first step (1-based) whose result was NaN/inf, if any


def gradient(scalar: Callable[[torch.Tensor], torch.Tensor]) -> Grad:
    """v ↦ ∂ scalar(v) / ∂v by autograd, detached (a sum over the batch gives each row its own
    gradient when the rows are independent)."""

    def grad(v: torch.Tensor) -> torch.Tensor:
        v = v.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(scalar(v), v)
        return g

    return grad


def energy_gradient(energy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor) -> Grad:
    """y ↦ ∂U(y, x)/∂y for logits y (B,1,S,S) and images x (B,3,S,S)."""
    x = x.detach()
    return gradient(lambda y: energy(y, x).sum())


def run_chain(
    grad: Grad,
    start: torch.Tensor,
    steps: int,
    step_size: float,
    noise: bool = True,
    noises: torch.Tensor | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Chain:
    """K Langevin steps from ``start`` (detached); ``noises`` (K, *start.shape) fixes the noise,
    else ``noise`` draws a fresh standard normal per step. ``project`` (if any) is applied to the
    start and after every step; ``bad_step`` is the first step whose update was NaN/inf."""
    y = start.detach()
    if project is not None:
        y = project(y)
    source = noises if noises is not None else ((lambda k: torch.randn_like(y)) if noise else None)
    bad: list[int] = []

    def after_step(k: int, value: torch.Tensor) -> torch.Tensor:
        if not bad and not bool(torch.isfinite(value).all()):
            bad.append(k + 1)
        return value if project is None else project(value)

    y = langevin_chain(grad, y, steps, step_size, source, after_step=after_step)
    return Chain(y, bad[0] if bad else None)


def revise_saliency(
    energy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    x: torch.Tensor,
    steps: int,
    step_size: float,
    noise: bool = True,
    noises: torch.Tensor | None = None,
) -> Chain:
    """Eq. 2: K Langevin steps on U(Y, X) from logits ``y`` (B,1,S,S); ``noises`` (K,B,1,S,S) fixes the noise."""
    return run_chain(energy_gradient(energy, x), y, steps, step_size, noise, noises)


def revise_latent(
    decode: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor],
    feats: list[torch.Tensor],
    target: torch.Tensor,
    h: torch.Tensor,
    steps: int,
    step_size: float,
    sigma: float,
    noise: bool = True,
) -> Chain:
    """Eq. 7: K Langevin steps on −log p(Ỹ, h | X) = ‖Ỹ − G(X, h)‖²/(2σ²) + ‖h‖²/2 + const.

    ``feats`` are the encoder features of X (detached: the encoder does not depend on h), so each
    step runs only the latent-conditioned decoder. The squared error is summed over pixels —
    the exact Gaussian log-likelihood of the observation model.
    """
    feats = [f.detach() for f in feats]
    target = target.detach()
    nll = gradient(lambda v: (target - decode(feats, v)).pow(2).sum() / (2.0 * sigma * sigma))
    return run_chain(lambda v: nll(v) + v.detach(), h, steps, step_size, noise)  # + the N(0, I) prior's gradient
