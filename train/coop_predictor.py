"""Torch reference predictor for the cooperative model — the numbers the runtime must reproduce.

For a batch x (B,3,S,S) (normalised), latents (N,B,d) and K Langevin steps of size δ::

    feats    = encode(x)                              once: h never reaches the encoder
    logits_n = decode(feats, h_n)                     all N samples as one batched pass
    p        = mean_n sigmoid(logits_n)               Ŷ as probabilities (B,1,S,S)
    y_0      = logit(clip(p, 1e-6, 1 − 1e-6))
    y_{k+1}  = y_k − δ²/2·∂U/∂y(y_k, x) (+ δ·ξ_k)     noise-free unless ``noise`` (K,B,1,S,S) is given
    saliency = sigmoid(y_K)                           Ỹ

plus uncertainty maps from the N sample probabilities (``salkit.kernels.entropy``), and
``generator`` = p (Ŷ, before the energy descent). ``path="whole"`` runs the whole generator N
times (the authors' way); it equals the split path to float rounding. The model runs in eval
mode (batch-norm running statistics), as the exported graphs do.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

from salkit.kernels.entropy import uncertainty_maps
from salkit.kernels.errors import SalkitError
from salkit.train.coop_langevin import revise_saliency
from salkit.train.engine.checkpoint import build_model, load_checkpoint

LOGIT_EPS = 1e-6


def load_coop(path: str | Path) -> torch.nn.Module:
    return build_model(load_checkpoint(path, expect_kind="coop")).eval()


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def probs_to_logits(p: torch.Tensor, eps: float = LOGIT_EPS) -> torch.Tensor:
    q = p.clamp(eps, 1.0 - eps)
    return torch.log(q) - torch.log1p(-q)


def sample_probs(model: torch.nn.Module, x: torch.Tensor, latents: torch.Tensor, path: str = "split") -> torch.Tensor:
    """Sample probability maps (N,B,1,S,S) for latents (N,B,d)."""
    generator = model.generator
    if path == "split":
        logits = generator.decode_samples(generator.encode(x), latents)
    elif path == "whole":
        logits = torch.stack([generator(x, latents[n]) for n in range(latents.shape[0])])
    else:
        raise SalkitError(f"path must be 'split' or 'whole', got {path!r}")
    return torch.sigmoid(logits)


def descend(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, step_size: float, noise: torch.Tensor | None
) -> torch.Tensor:
    if noise is not None and tuple(noise.shape) != (steps, *y.shape):
        raise SalkitError(f"noise must have shape {(steps, *y.shape)}, got {tuple(noise.shape)}")
    return revise_saliency(model.energy, y, x, steps, step_size, noise=False, noises=noise).value


def predict_tensor(
    model: torch.nn.Module,
    x: torch.Tensor,
    latents: torch.Tensor,
    steps: int,
    step_size: float,
    noise: torch.Tensor | None = None,
    uncertainty: bool = True,
    path: str = "split",
) -> dict[str, torch.Tensor]:
    """Keys: "saliency" (Ỹ) and "generator" (Ŷ) probabilities (B,1,S,S); with ``uncertainty`` also
    "predictive", "aleatoric", "epistemic" (B,1,S,S)."""
    b = x.shape[0]
    if latents.ndim != 3 or latents.shape[1] != b or latents.shape[2] != model.generator.latent_dim:
        raise SalkitError(f"latents must be (N, {b}, {model.generator.latent_dim}), got {tuple(latents.shape)}")
    with _eval_mode(model):
        with torch.no_grad():
            probs = sample_probs(model, x, latents, path)  # (N,B,1,S,S)
            mean = probs.mean(0)  # (B,1,S,S)
        final = descend(model, x, probs_to_logits(mean), steps, step_size, noise)
    out = {"saliency": torch.sigmoid(final), "generator": mean}
    if uncertainty:
        out.update(uncertainty_maps(probs))
    return out


def refine_tensor(
    model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, steps: int, step_size: float,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Refine probability maps (B,1,S,S) by K Langevin steps on U; returns probabilities."""
    with _eval_mode(model):
        return torch.sigmoid(descend(model, x, probs_to_logits(maps), steps, step_size, noise))


def predict(
    model: torch.nn.Module, x: torch.Tensor, *, samples: int = 10, steps: int = 5, step_size: float = 0.4,
    seed: int | None = None, uncertainty: bool = True,
) -> dict[str, torch.Tensor]:
    """Draw ``samples`` latents ~ N(0, I) (from ``seed`` if given) and call ``predict_tensor``."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    latents = torch.randn(samples, x.shape[0], model.generator.latent_dim, generator=generator)  # (N,B,d)
    return predict_tensor(model, x, latents.to(x.device), steps, step_size, uncertainty=uncertainty)
