"""The recovery chains of Algorithm 2 (learning while recovering from partial labels), batched.

Scribbles observe Y′ only on the annotated pixels O (1 on a foreground or background stroke,
0 elsewhere). The observation model of the generator is the full-supervision one,
Y = G(X, h) + ε with ε ~ N(0, σ²) per pixel (logit space), restricted to what was seen::

    log p(Y′, h | X) = −‖O ∘ (Y′ − G(X, h))‖² / (2σ²) − ‖h‖²/2 + const
    ∂/∂h log p(Y′, h | X) = (1/σ²) (O ∘ (Y′ − G(X, h))) · ∂G/∂h − h

Unannotated pixels drop out of both: changing Y′ there changes neither value nor gradient.

* ``masked_latent_grad`` is that gradient, computed as the vector–Jacobian product of the
  decoder with the masked residual (one decoder pass, one backward, per Langevin step).
* ``infer_latent_observed``: K Langevin steps on −log p(Y′, h | X) from h₀ (h′ of Algorithm 2).
  The encoder features are computed once outside; each step runs only ``decode(feats, h)``.
* ``recover_saliency``: Ỹ′ from Ŷ′ = G(X, h′) by K Langevin steps on U(·, X) **conditioned on the
  observed pixels**: annotated pixels are set to their labels before the first step and after
  every step, so only the unknown pixels move — Langevin sampling of p(Y_unknown | Y′_O, X) ∝
  exp(−U). The recovered label therefore agrees with the scribble wherever one was drawn.

All gradients are taken with ``torch.autograd.grad`` with respect to h or Y only, so nothing
reaches a parameter's ``.grad``.
"""

from __future__ import annotations

from typing import Callable

import torch

from salkit.train.coop.langevin import Chain, energy_gradient, run_chain

Decode = Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor]


def masked_latent_grad(
    decode: Decode,
    feats: list[torch.Tensor],
    target: torch.Tensor,
    observed: torch.Tensor,
    h: torch.Tensor,
    sigma: float,
) -> torch.Tensor:
    """∂/∂h log p(Y′, h | X) for target logits Y′ (B,1,S,S), observed mask O (B,1,S,S) in {0, 1}, h (B,d)."""
    h = h.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = decode([f.detach() for f in feats], h)  # (B,1,S,S)
        # (1/σ²) O∘(Y′ − G): zero on unknown pixels whatever Y′ holds there (where, not a product,
        # so a NaN/inf placeholder on an unknown pixel cannot leak in as 0·inf).
        weighted = torch.where(observed > 0, target.detach() - logits.detach(), torch.zeros_like(logits)) / (sigma * sigma)
        (pullback,) = torch.autograd.grad(logits, h, grad_outputs=weighted)  # (O∘(Y′ − G)/σ²)·∂G/∂h, (B,d)
    return pullback - h.detach()


def infer_latent_observed(decode: Decode, feats: list[torch.Tensor], target: torch.Tensor, observed: torch.Tensor,
                          h: torch.Tensor, steps: int, step_size: float, sigma: float, noise: bool = True) -> Chain:
    """h′: K Langevin steps on −log p(Y′, h | X) from ``h`` (B,d), seeing Y′ only where ``observed``."""
    feats = [f.detach() for f in feats]
    # ∂/∂h of the negative log joint
    return run_chain(lambda v: -masked_latent_grad(decode, feats, target, observed, v, sigma), h, steps, step_size, noise)


def recover_saliency(energy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y: torch.Tensor, x: torch.Tensor,
                     observed: torch.Tensor, target: torch.Tensor, steps: int, step_size: float, noise: bool = True,
                     noises: torch.Tensor | None = None) -> Chain:
    """Ỹ′: K Langevin steps on U(·, X) from logits ``y`` (B,1,S,S) with the observed pixels held at ``target``."""
    keep = observed > 0
    target = target.detach()
    return run_chain(energy_gradient(energy, x), y, steps, step_size, noise, noises,
                     project=lambda v: torch.where(keep, target, v))
