"""The cooperative predict / refine written plainly with torch autograd: the independent reference
the tests compare ``salkit.kernels.coop`` and everything built on it against (it uses nothing of
salkit). One reference for every test, so the algorithm is written out once more, on purpose, here.

Per latent sample the whole generator, the mean probability, logit(clip(p, eps, 1 − eps)), K steps
``y ← y − δ²/2·∂U/∂y (+ δ·ξ_k)`` with the gradient from autograd, sigmoid.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

EPS = 1e-6


def cooperative_reference(
    generator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    energy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: Any,
    latents: Any | None,
    steps: int,
    step_size: float,
    noise: Any | None = None,
    start: Any | None = None,
) -> tuple[np.ndarray, torch.Tensor | None]:
    """(saliency (B,1,S,S) as numpy, the sample probabilities (N,B,1,S,S) or None when ``start``
    — probability maps (B,1,S,S) to refine — replaces the generator)."""
    x = torch.as_tensor(x)
    with torch.no_grad():
        if start is None:
            probs = torch.stack([torch.sigmoid(generator(x, torch.as_tensor(h))) for h in latents])  # N × (B,1,S,S)
            mean = probs.mean(0)
        else:
            probs, mean = None, torch.as_tensor(start)
        p = mean.clamp(EPS, 1 - EPS)
        y = torch.log(p) - torch.log1p(-p)
    for k in range(steps):
        y = y.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(y, x).sum(), y)
        y = y.detach() - 0.5 * step_size**2 * grad
        if noise is not None:
            y = y + step_size * torch.as_tensor(noise[k])
    return torch.sigmoid(y).detach().numpy(), probs
