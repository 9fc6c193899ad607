"""Torch Langevin revisions of the cooperative model (Eq. 2 on Y, Eq. 7 on h), batched.

Both take gradients with ``torch.autograd.grad`` with respect to the chain variable only, so
they never write into any parameter's ``.grad``. A batch of B chains runs as one pass; the
chains are independent as long as the networks treat samples independently (the energy runs
with batch-norm in eval mode during Langevin, the generator's decoder has no batch norm).
The update itself is ``salkit.kernels.langevin.langevin_step``, the same kernel the runtime uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from salkit.kernels.langevin import langevin_step


@dataclass
class Chain:
    value: torch.Tensor  # the revised variable, detached
    bad_step: int | None  # first step (1-based) whose result was NaN/inf, if any


def revise_saliency(
    energy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    x: torch.Tensor,
    steps: int,
    step_size: float,
    noise: bool = True,
    noises: torch.Tensor | None = None,
) -> Chain:
    """K Langevin steps on U(Y, X) from logits ``y`` (B,1,S,S); ``noises`` (K,B,1,S,S) fixes the noise."""
    x = x.detach()
    y = y.detach()
    bad = None
    for k in range(steps):
        y.requires_grad_(True)
        with torch.enable_grad():
            # Sum over the batch: each chain's gradient is ∂U_b/∂y_b since samples are independent.
            (grad,) = torch.autograd.grad(energy(y, x).sum(), y)
        noise_k = noises[k] if noises is not None else (torch.randn_like(y) if noise else None)
        y = langevin_step(y.detach(), grad, step_size, noise_k)
        if bad is None and not bool(torch.isfinite(y).all()):
            bad = k + 1
    return Chain(y, bad)


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
    """K Langevin steps on −log p(Ỹ, h | X) = ‖Ỹ − G(X, h)‖²/(2σ²) + ‖h‖²/2 + const (Eq. 7).

    ``feats`` are the encoder features of X (detached: the encoder does not depend on h), so each
    step runs only the latent-conditioned decoder. The squared error is summed over pixels —
    the exact Gaussian log-likelihood of the observation model.
    """
    feats = [f.detach() for f in feats]
    target = target.detach()
    h = h.detach()
    bad = None
    for k in range(steps):
        h.requires_grad_(True)
        with torch.enable_grad():
            residual = target - decode(feats, h)  # (B,1,S,S)
            nll = residual.pow(2).sum() / (2.0 * sigma * sigma)
            (grad_nll,) = torch.autograd.grad(nll, h)
        grad = grad_nll + h.detach()  # the N(0, I) prior's gradient
        h = langevin_step(h.detach(), grad, step_size, torch.randn_like(h) if noise else None)
        if bad is None and not bool(torch.isfinite(h).all()):
            bad = k + 1
    return Chain(h, bad)
